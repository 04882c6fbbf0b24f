//! A pod's QoS class (pkg/apis/core/v1/helper/qos GetPodQOS) and its summed requests and
//! limits (component-helpers/resource PodRequests and PodLimits), with pod-level resources
//! (the PodLevelResources feature, on by default since Kubernetes 1.34).

use k8s_openapi::api::core::v1::{Container, Pod};

use super::quantity::{Amount, ResourceList, add_list, list, max_list};

/// The QoS class of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The name the API uses in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "Guaranteed" => Some(QosClass::Guaranteed),
            "Burstable" => Some(QosClass::Burstable),
            "BestEffort" => Some(QosClass::BestEffort),
            _ => None,
        }
    }
}

const CPU: &str = "cpu";
const MEMORY: &str = "memory";

/// Only cpu and memory decide the class.
fn is_qos_resource(name: &str) -> bool {
    name == CPU || name == MEMORY
}

/// GetPodQOS: the class `status.qosClass` records (the API server sets it once and it
/// never changes), else ComputePodQOS.
pub fn qos_class(pod: &Pod) -> QosClass {
    pod.status
        .as_ref()
        .and_then(|s| s.qos_class.as_deref())
        .and_then(QosClass::parse)
        .unwrap_or_else(|| compute_qos(pod))
}

/// ComputePodQOS: from pod-level resources when the pod sets them, else from every
/// container, init containers included.
pub fn compute_qos(pod: &Pod) -> QosClass {
    let mut requests = ResourceList::new();
    let mut limits = ResourceList::new();
    let mut guaranteed = true;
    let positive = |r: &ResourceList| -> ResourceList {
        r.iter()
            .filter(|(k, v)| is_qos_resource(k) && v.is_positive())
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    if let Some(pr) = pod_level(pod) {
        requests = positive(&list(pr.requests.as_ref()));
        limits = positive(&list(pr.limits.as_ref()));
        // Guaranteed needs both cpu and memory limits at pod level.
        if limits.len() != 2 {
            guaranteed = false;
        }
    } else {
        for c in all_containers(pod) {
            let res = c.resources.as_ref();
            add_list(
                &mut requests,
                &positive(&list(res.and_then(|r| r.requests.as_ref()))),
            );
            let l = positive(&list(res.and_then(|r| r.limits.as_ref())));
            if !(l.contains_key(CPU) && l.contains_key(MEMORY)) {
                guaranteed = false;
            }
            add_list(&mut limits, &l);
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed && requests.iter().any(|(k, v)| limits.get(k) != Some(v)) {
        guaranteed = false;
    }
    if guaranteed && requests.len() == limits.len() {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// Regular containers, then init containers (the order upstream walks them in).
pub(crate) fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter().flat_map(|s| s.containers.iter()).chain(
        spec.into_iter()
            .flat_map(|s| s.init_containers.iter().flatten()),
    )
}

/// The pod-level `spec.resources` when it sets any request or limit
/// (IsPodLevelResourcesSet: only cpu and memory count).
pub(crate) fn pod_level(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ResourceRequirements> {
    let r = pod.spec.as_ref()?.resources.as_ref()?;
    let any = |m: Option<&std::collections::BTreeMap<String, _>>| {
        m.is_some_and(|m| m.keys().any(|k| is_pod_level_resource(k)))
    };
    (any(r.requests.as_ref()) || any(r.limits.as_ref())).then_some(r)
}

/// IsSupportedPodLevelResource.
fn is_pod_level_resource(name: &str) -> bool {
    name == CPU || name == MEMORY
}

/// A sidecar: an init container with `restartPolicy: Always`.
pub(crate) fn is_restartable_init(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Which side of a container's resources to sum.
#[derive(Clone, Copy)]
enum Side {
    Requests,
    Limits,
}

fn side(c: &Container, s: Side) -> ResourceList {
    let r = c.resources.as_ref();
    list(r.and_then(|r| match s {
        Side::Requests => r.requests.as_ref(),
        Side::Limits => r.limits.as_ref(),
    }))
}

/// AggregateContainerRequests / AggregateContainerLimits: the regular containers and
/// sidecars add up; a classic init container counts with the sidecars started before
/// it, and the pod needs the larger of the two. `each` sees every container's own list.
fn aggregate(pod: &Pod, s: Side, mut each: impl FnMut(&ResourceList)) -> ResourceList {
    let mut out = ResourceList::new();
    let Some(spec) = pod.spec.as_ref() else {
        return out;
    };
    for c in &spec.containers {
        let r = side(c, s);
        each(&r);
        add_list(&mut out, &r);
    }
    let mut sidecars = ResourceList::new();
    let mut init = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let r = side(c, s);
        each(&r);
        let need = if is_restartable_init(c) {
            add_list(&mut out, &r);
            add_list(&mut sidecars, &r);
            sidecars.clone()
        } else {
            let mut t = r.clone();
            add_list(&mut t, &sidecars);
            t
        };
        max_list(&mut init, &need);
    }
    max_list(&mut out, &init);
    out
}

/// AggregateContainerRequests.
pub fn container_requests(pod: &Pod) -> ResourceList {
    aggregate(pod, Side::Requests, |_| {})
}

/// PodRequests (overhead excluded unless `overhead`): pod-level requests replace the
/// containers' sum where set.
pub fn pod_requests(pod: &Pod, overhead: bool) -> ResourceList {
    let mut r = container_requests(pod);
    if let Some(pr) = pod_level(pod) {
        for (k, v) in list(pr.requests.as_ref()) {
            if is_pod_level_resource(&k) {
                r.insert(k, v);
            }
        }
    }
    if overhead {
        add_list(&mut r, &pod_overhead(pod));
    }
    r
}

/// PodLimits (overhead added to the limits that are set, unless `overhead` is false),
/// with whether every container declares a cpu and a memory limit (the pod-level limit
/// counts for all of them).
pub fn pod_limits(pod: &Pod, overhead: bool) -> (ResourceList, bool, bool) {
    let (mut cpu_all, mut mem_all) = (true, true);
    let mut l = aggregate(pod, Side::Limits, |r| {
        if r.get(CPU).is_none_or(|v| v.is_zero()) {
            cpu_all = false;
        }
        if r.get(MEMORY).is_none_or(|v| v.is_zero()) {
            mem_all = false;
        }
    });
    if let Some(pr) = pod_level(pod) {
        let pl = list(pr.limits.as_ref());
        for (k, v) in &pl {
            if is_pod_level_resource(k) {
                l.insert(k.clone(), *v);
            }
        }
        if pl.get(CPU).is_some_and(|v| !v.is_zero()) {
            cpu_all = true;
        }
        if pl.get(MEMORY).is_some_and(|v| !v.is_zero()) {
            mem_all = true;
        }
    }
    if overhead {
        for (k, v) in pod_overhead(pod) {
            if let Some(e) = l.get_mut(&k) {
                *e = *e + v;
            }
        }
    }
    (l, cpu_all, mem_all)
}

/// `spec.overhead` (set by the RuntimeClass admission).
pub fn pod_overhead(pod: &Pod) -> ResourceList {
    list(pod.spec.as_ref().and_then(|s| s.overhead.as_ref()))
}

/// The amount of `name` in `l`, zero when absent.
pub fn get(l: &ResourceList, name: &str) -> Amount {
    l.get(name).copied().unwrap_or_default()
}

#[cfg(test)]
#[path = "qos_tests.rs"]
pub(crate) mod tests;
