//! Taints the pod does not tolerate (component-helpers scheduling/corev1
//! FindMatchingUntoleratedTaint and Toleration.ToleratesTaint). The kubelet's admission
//! looks only at NoExecute taints: a pod bound directly to a node (nodeName set, no
//! scheduler) is still kept off a node that would evict it at once.

use k8s_openapi::api::core::v1::{Taint, Toleration};

pub const NO_EXECUTE: &str = "NoExecute";

/// ToleratesTaint: the effect and key match when set (empty matches all), and the value
/// is equal (operator Equal or empty) or anything (Exists).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    fn set(s: &Option<String>) -> Option<&str> {
        s.as_deref().filter(|v| !v.is_empty())
    }
    if set(&t.effect).is_some_and(|e| e != taint.effect) {
        return false;
    }
    if set(&t.key).is_some_and(|k| k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// The first taint passing `filter` that no toleration tolerates.
pub fn find_untolerated<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|taint| !tolerations.iter().any(|tol| tolerates(tol, taint)))
}
