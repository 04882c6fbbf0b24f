//! The admission decision (predicateAdmitHandler.Admit and generalFilter) and what a
//! rejection leaves on the pod (kubelet.rejectPod).
//!
//! Order, as upstream: the OS label and `spec.os` checks and SupplementalGroupsPolicy
//! first (eviction could not help them), then the scheduler's AdmissionCheck with every
//! failure collected (resources, NodeAffinity, NodeName, NodePorts), then untolerated
//! NoExecute taints for pods that are not static. Only the first failure is reported.
//!
//! Critical pods (static, mirror, or priority at or above system-critical): upstream's
//! CriticalPodAdmissionHandler waives resource shortages and evicts lower-priority pods
//! to make room. berth admits such a pod when resources are its only failures and does
//! not evict anything: the node is then over-committed until other pods end.

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};

use super::resources::{CPU, EPHEMERAL_STORAGE, Insufficient, MEMORY, PODS};
use super::{node_affinity, node_ports, resources, taints};
use crate::kubelet::cm::qos_class;
use crate::kubelet::events::{Event, EventKind};

/// Why a pod may not run here: `reason` and `message` as kubelet puts them in the pod's
/// status (with "Pod was rejected: " before the message) and in a Warning event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

impl Rejection {
    fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection {
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A PredicateFailureError: the plugin's name as the reason.
    fn predicate(name: &str, desc: &str) -> Self {
        Rejection::new(name, format!("Predicate {name} failed: {desc}"))
    }

    /// An InsufficientResourceError: OutOf<resource>.
    fn insufficient(i: &Insufficient) -> Self {
        let reason = match i.resource.as_str() {
            CPU => "OutOfcpu".to_string(),
            MEMORY => "OutOfmemory".to_string(),
            EPHEMERAL_STORAGE => "OutOfephemeral-storage".to_string(),
            PODS => "OutOfpods".to_string(),
            other => format!("OutOf{other}"),
        };
        Rejection::new(reason, i.message())
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

pub const NODE_AFFINITY: &str = "NodeAffinity";
pub const NODE_NAME: &str = "NodeName";
pub const NODE_PORTS: &str = "NodePorts";
pub const TAINT_TOLERATION: &str = "TaintToleration";
const NODE_AFFINITY_DESC: &str = "node(s) didn't match Pod's node affinity/selector";
const NODE_NAME_DESC: &str = "node(s) didn't match the requested node name";
const NODE_PORTS_DESC: &str = "node(s) didn't have free ports for the requested pod ports";
const TAINT_DESC: &str = "node(s) had taints that the pod didn't tolerate";

const OS_LABEL: &str = "kubernetes.io/os";
const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// scheduling.SystemCriticalPriority.
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// One failed check, before the first is chosen.
enum Failure {
    Resource(Insufficient),
    Predicate(&'static str, &'static str),
}

/// Whether `pod` may run on `node` next to the `admitted` pods (the pods this kubelet
/// already runs, terminated ones left out; the pod itself, if listed, is skipped).
pub fn admit(pod: &Pod, admitted: &[&Pod], node: &Node) -> Result<(), Rejection> {
    if rejects_os_label(pod) {
        return Err(Rejection::new(
            "PodOSSelectorNodeLabelDoesNotMatch",
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label",
        ));
    }
    if rejects_os_field(pod) {
        return Err(Rejection::new(
            "PodOSNotSupported",
            "Failed to admit pod as the OS field doesn't match node OS",
        ));
    }
    if rejects_supplemental_groups_policy(pod, node) {
        return Err(Rejection::new(
            "SupplementalGroupsPolicyNotSupported",
            "SupplementalGroupsPolicy=Strict is not supported in this node",
        ));
    }
    let uid = pod.metadata.uid.as_deref();
    let others: Vec<&Pod> = admitted
        .iter()
        .copied()
        .filter(|p| uid.is_none() || p.metadata.uid.as_deref() != uid)
        .collect();

    let mut failures: Vec<Failure> = resources::fits(pod, &others, node)
        .into_iter()
        .map(Failure::Resource)
        .collect();
    if !node_affinity::matches(pod, node) {
        failures.push(Failure::Predicate(NODE_AFFINITY, NODE_AFFINITY_DESC));
    }
    if !node_name_fits(pod, node) {
        failures.push(Failure::Predicate(NODE_NAME, NODE_NAME_DESC));
    }
    if !node_ports::fits(pod, &others) {
        failures.push(Failure::Predicate(NODE_PORTS, NODE_PORTS_DESC));
    }
    if !is_static(pod) && untolerated_no_execute(pod, node) {
        failures.push(Failure::Predicate(TAINT_TOLERATION, TAINT_DESC));
    }

    if is_critical(pod) && failures.iter().all(|f| matches!(f, Failure::Resource(_))) {
        // Upstream would evict to make room; see the module doc.
        return Ok(());
    }
    if is_critical(pod) {
        failures.retain(|f| !matches!(f, Failure::Resource(_)));
    }
    match failures.first() {
        None => Ok(()),
        Some(Failure::Resource(i)) => Err(Rejection::insufficient(i)),
        Some(Failure::Predicate(name, desc)) => Err(Rejection::predicate(name, desc)),
    }
}

/// The status kubelet's rejectPod sets: phase Failed, the reason, "Pod was rejected: "
/// and the message, and the QoS class the pod has.
pub fn rejected_status(pod: &Pod, r: &Rejection) -> PodStatus {
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(r.reason.clone()),
        message: Some(format!("Pod was rejected: {}", r.message)),
        qos_class: Some(qos_class(pod).as_str().into()),
        ..Default::default()
    }
}

/// The Warning event rejectPod records on the pod (the message without the prefix).
pub fn rejected_event(pod: &Pod, r: &Rejection) -> Event {
    Event::pod(pod, None, EventKind::Warning, &r.reason, r.message.clone())
}

/// rejectPodAdmissionBasedOnOSSelector: a pod labelled `kubernetes.io/os` must name the
/// OS berth runs on (upstream reads the node's label but replaces a missing or different
/// one with its own OS, so the label never decides).
fn rejects_os_label(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(OS_LABEL))
        .is_some_and(|want| want != std::env::consts::OS)
}

/// rejectPodAdmissionBasedOnOSField: `spec.os.name` must be this OS.
fn rejects_os_field(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.os.as_ref())
        .is_some_and(|os| os.name != std::env::consts::OS)
}

/// rejectPodAdmissionBasedOnSupplementalGroupsPolicy (the feature is beta): Strict needs
/// a node that reports support in `status.features`.
fn rejects_supplemental_groups_policy(pod: &Pod, node: &Node) -> bool {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.supplemental_groups_policy.as_deref());
    let supported = node
        .status
        .as_ref()
        .and_then(|s| s.features.as_ref())
        .and_then(|f| f.supplemental_groups_policy)
        .unwrap_or(false);
    policy == Some("Strict") && !supported
}

/// nodename.Fits: an empty nodeName or this node's name.
fn node_name_fits(pod: &Pod, node: &Node) -> bool {
    let want = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("");
    want.is_empty() || Some(want) == node.metadata.name.as_deref()
}

fn untolerated_no_execute(pod: &Pod, node: &Node) -> bool {
    let node_taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    taints::find_untolerated(node_taints, tolerations, |t| t.effect == taints::NO_EXECUTE).is_some()
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// IsStaticPod: a config source other than the API server.
fn is_static(pod: &Pod) -> bool {
    annotation(pod, SOURCE_ANNOTATION).is_some_and(|s| s != "api")
}

/// IsCriticalPod: static, mirror, or at system-critical priority.
fn is_critical(pod: &Pod) -> bool {
    is_static(pod)
        || annotation(pod, MIRROR_ANNOTATION).is_some()
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.priority)
            .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}
