//! How the kubelet treats a pod that comes from a file or a URL rather than from the API
//! server (pkg/kubelet/config/common.go applyDefaults): a UID hashed from the pod and its
//! origin, a name unique across nodes, the node it is bound to, the config annotations,
//! and for files the NoExecute toleration that keeps it on a node with problems.
//!
//! Pure: changes only the pod it is given.

use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use md5::{Digest, Md5};

use super::SOURCE_ANNOTATION;

/// The annotation holding the hash the UID was made from (kubelet's ConfigHashAnnotationKey).
pub const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// The annotation holding when the kubelet first saw the pod (ConfigFirstSeenAnnotationKey).
pub const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";

/// Where a manifest came from: it decides the UID's hash input, the source annotation and
/// whether the static pod toleration is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    File,
    Http,
}

impl SourceKind {
    /// A source named by an http(s) URL is `Http`, anything else is a file path.
    pub fn of(source: &str) -> SourceKind {
        let lower = source.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            SourceKind::Http
        } else {
            SourceKind::File
        }
    }

    /// The value of `kubernetes.io/config.source`, as kubelet names its sources.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::File => "file",
            SourceKind::Http => "http",
        }
    }
}

/// Applies the static pod treatment to a defaulted pod read from `source`.
///
/// The UID, when the manifest gives none, is the md5 of the pod and its origin, as
/// kubelet's: `host:<node>` and `file:<path>` for a file, `url:<url>` for a URL. kubelet
/// hashes the Go object with spew's deep printer; berth hashes the canonical JSON of the
/// defaulted pod (k8s-openapi serializes fields in a fixed order and maps sorted), so the
/// UID is stable for the same content but differs from the one upstream kubelet computes.
pub(crate) fn apply(pod: &mut Pod, source: &str, kind: SourceKind, node_name: &str) {
    if pod.metadata.uid.as_deref().unwrap_or("").is_empty() {
        let mut hasher = Md5::new();
        // Serializing a k8s-openapi Pod into memory cannot fail: every field is plain data.
        hasher.update(serde_json::to_vec(&*pod).unwrap_or_default());
        match kind {
            SourceKind::File => {
                hasher.update(format!("host:{node_name}"));
                hasher.update(format!("file:{source}"));
            }
            SourceKind::Http => hasher.update(format!("url:{source}")),
        }
        let uid: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        pod.metadata.uid = Some(uid);
    }
    // A pod without a name keeps none, so that validation says the name is required
    // rather than that "-<node>" is not a valid name.
    if let Some(name) = pod.metadata.name.as_mut().filter(|n| !n.is_empty()) {
        *name = format!("{name}-{}", node_name.to_lowercase());
    }
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some("default".to_string());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node_name.to_string());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let annotations = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(HASH_ANNOTATION.to_string(), uid);
    annotations.insert(SOURCE_ANNOTATION.to_string(), kind.as_str().to_string());
    if kind == SourceKind::File {
        add_or_update_toleration(
            spec.tolerations.get_or_insert_with(Vec::new),
            Toleration {
                operator: Some("Exists".to_string()),
                effect: Some("NoExecute".to_string()),
                ..Default::default()
            },
        );
    }
    pod.status.get_or_insert_with(PodStatus::default).phase = Some("Pending".to_string());
}

/// AddOrUpdateTolerationInPod: a toleration matching on key, effect, operator and value is
/// replaced, otherwise the new one is appended.
fn add_or_update_toleration(tolerations: &mut Vec<Toleration>, new: Toleration) {
    let same = |t: &Toleration| {
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        s(&t.key) == s(&new.key)
            && s(&t.effect) == s(&new.effect)
            && s(&t.value) == s(&new.value)
            && s(&t.operator) == s(&new.operator)
    };
    match tolerations.iter().position(same) {
        Some(i) => tolerations[i] = new,
        None => tolerations.push(new),
    }
}
