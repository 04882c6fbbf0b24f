//! The labels and annotations kubelet puts on sandboxes and containers
//! (pkg/kubelet/kuberuntime/labels.go). They are the kubelet's only memory across a
//! restart: which pod a sandbox or container belongs to, its restart count, its spec hash
//! and the termination settings, all read back from the runtime.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
pub const POD_TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const POD_DELETION_GRACE: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
/// The only labels the kubelet needs of a sandbox list: the ones that select a pod.
pub const KUBERNETES_MANAGED: &str = "io.kubernetes.pod.uid";

/// The sandbox's labels: the pod's own labels plus the three that identify it.
pub fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    l.insert(POD_NAME.into(), name(pod).into());
    l.insert(POD_NAMESPACE.into(), namespace(pod).into());
    l.insert(POD_UID.into(), uid(pod).into());
    l
}

/// The sandbox's annotations: the pod's own.
pub fn sandbox_annotations(pod: &Pod) -> HashMap<String, String> {
    pod.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A container's labels: which pod and which container it is.
pub fn container_labels(pod: &Pod, container: &Container) -> HashMap<String, String> {
    HashMap::from([
        (POD_NAME.to_string(), name(pod).to_string()),
        (POD_NAMESPACE.to_string(), namespace(pod).to_string()),
        (POD_UID.to_string(), uid(pod).to_string()),
        (CONTAINER_NAME.to_string(), container.name.clone()),
        (CONTAINER_TYPE.to_string(), "container".to_string()),
    ])
}

/// A container's annotations: its hash, restart count, termination settings, preStop.
pub fn container_annotations(
    pod: &Pod,
    container: &Container,
    restart_count: i32,
) -> HashMap<String, String> {
    let mut a = HashMap::from([
        (
            CONTAINER_HASH.to_string(),
            format!("{:x}", container_hash(container)),
        ),
        (RESTART_COUNT.to_string(), restart_count.to_string()),
        (
            TERMINATION_MESSAGE_PATH.to_string(),
            container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            TERMINATION_MESSAGE_POLICY.to_string(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
    ]);
    if let Some(g) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        a.insert(POD_TERMINATION_GRACE.into(), g.to_string());
    }
    if let Some(g) = pod.metadata.deletion_grace_period_seconds {
        a.insert(POD_DELETION_GRACE.into(), g.to_string());
    }
    if let Some(h) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        && let Ok(j) = serde_json::to_string(h)
    {
        a.insert(PRE_STOP_HANDLER.into(), j);
    }
    if let Some(p) = container.ports.as_ref().filter(|p| !p.is_empty())
        && let Ok(j) = serde_json::to_string(p)
    {
        a.insert(CONTAINER_PORTS.into(), j);
    }
    a
}

/// A stable hash of the container's spec: a changed spec (a static pod's manifest edited
/// in place keeps its UID only if the content is the same, so this mostly guards
/// adoption) restarts the container. FNV-1a over the canonical JSON.
pub fn container_hash(container: &Container) -> u64 {
    let json = serde_json::to_vec(container).unwrap_or_default();
    json.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

pub fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

/// `namespace/name`, as kubelet's logs name a pod.
pub fn full_name(pod: &Pod) -> String {
    format!("{}/{}", namespace(pod), name(pod))
}

/// The restart count a container's annotations carry (0 when absent or unreadable).
pub fn restart_count(annotations: &HashMap<String, String>) -> i32 {
    annotations
        .get(RESTART_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
