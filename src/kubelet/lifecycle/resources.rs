//! Whether a pod's requests fit what the node has left (the scheduler's NodeResourcesFit
//! `Fits`, as the kubelet runs it on admission): the pod count against `pods`, then cpu,
//! memory, ephemeral-storage and the scalar resources (hugepages, extended, prefixed
//! native) against allocatable minus what the admitted pods request.
//!
//! A pod's request is PodRequests with overhead ([`crate::kubelet::cm::pod_requests`]):
//! the containers and sidecars add up, a classic init container counts with the sidecars
//! before it, the pod needs the larger of the two, pod-level requests replace cpu and
//! memory where set, and `spec.overhead` is added.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::kubelet::cm::pod_requests;
use crate::kubelet::cm::quantity::{ResourceList, list};

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// One resource the node lacks (InsufficientResource), in the units the scheduler
/// counts: millicores for cpu, whole units (`Value()`) for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

impl Insufficient {
    /// InsufficientResourceError.Error().
    pub fn message(&self) -> String {
        format!(
            "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
            self.resource, self.requested, self.used, self.capacity
        )
    }
}

/// A resource set as the scheduler's framework.Resource holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Resource {
    milli_cpu: i64,
    memory: i64,
    ephemeral_storage: i64,
    allowed_pods: i64,
    scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Resource.Add: cpu in millicores, the rest by `Value()`; names that are neither
    /// the four known ones nor scalar are not counted.
    fn add(&mut self, l: &ResourceList) {
        for (name, amount) in l {
            match name.as_str() {
                CPU => self.milli_cpu += amount.milli_value(),
                MEMORY => self.memory += amount.value(),
                EPHEMERAL_STORAGE => self.ephemeral_storage += amount.value(),
                PODS => self.allowed_pods += amount.value(),
                n if is_scalar(n) => {
                    *self.scalar.entry(n.to_string()).or_default() += amount.value()
                }
                _ => {}
            }
        }
    }
}

/// IsExtendedResourceName: a name with a domain other than kubernetes.io, not a quota
/// name (`requests.`).
pub fn is_extended(name: &str) -> bool {
    name.contains('/') && !is_prefixed_native(name) && !name.starts_with("requests.")
}

fn is_prefixed_native(name: &str) -> bool {
    name.contains("kubernetes.io/")
}

/// IsScalarResourceName: extended, hugepages-*, prefixed native or attachable volumes.
fn is_scalar(name: &str) -> bool {
    is_extended(name)
        || name.starts_with("hugepages-")
        || is_prefixed_native(name)
        || name.starts_with("attachable-volumes-")
}

fn allocatable(node: &Node) -> Resource {
    let mut r = Resource::default();
    r.add(&list(
        node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
    ));
    r
}

/// The pod's request as the admission sees it: extended resources the node does not
/// offer are dropped first (removeMissingExtendedResources: cluster-level resources
/// unknown to nodes).
fn request(pod: &Pod, node_alloc: &Resource) -> ResourceList {
    let mut l = pod_requests(pod, true);
    l.retain(|name, _| !is_extended(name) || node_alloc.scalar.contains_key(name));
    l
}

/// Fits: every resource the pod needs beyond what is left, the pod count first.
pub fn fits(pod: &Pod, admitted: &[&Pod], node: &Node) -> Vec<Insufficient> {
    let alloc = allocatable(node);
    let mut used = Resource::default();
    for p in admitted {
        // Each admitted pod counts with its own whole request, as NodeInfo.AddPod sums
        // them.
        used.add(&pod_requests(p, true));
    }
    let mut want = Resource::default();
    let req = request(pod, &alloc);
    want.add(&req);

    let mut out = Vec::new();
    let pods = i64::try_from(admitted.len()).unwrap_or(i64::MAX);
    if pods.saturating_add(1) > alloc.allowed_pods {
        out.push(Insufficient {
            resource: PODS.into(),
            requested: 1,
            used: pods,
            capacity: alloc.allowed_pods,
        });
    }
    if want.milli_cpu == 0
        && want.memory == 0
        && want.ephemeral_storage == 0
        && want.scalar.is_empty()
    {
        return out;
    }
    let mut check = |resource: &str, requested: i64, used: i64, capacity: i64| {
        if requested > 0 && requested > capacity.saturating_sub(used) {
            out.push(Insufficient {
                resource: resource.into(),
                requested,
                used,
                capacity,
            });
        }
    };
    check(CPU, want.milli_cpu, used.milli_cpu, alloc.milli_cpu);
    check(MEMORY, want.memory, used.memory, alloc.memory);
    check(
        EPHEMERAL_STORAGE,
        want.ephemeral_storage,
        used.ephemeral_storage,
        alloc.ephemeral_storage,
    );
    // Upstream walks a map; berth goes by name so the first reason is stable.
    for (name, q) in &want.scalar {
        let cap = alloc.scalar.get(name).copied().unwrap_or(0);
        let u = used.scalar.get(name).copied().unwrap_or(0);
        check(name, *q, u, cap);
    }
    out
}
