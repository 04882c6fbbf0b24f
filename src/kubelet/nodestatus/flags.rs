//! kubelet's registration flags as data: --node-labels (`key=value,...`, refusing the
//! kubernetes.io and k8s.io labels a kubelet may not set, as kubelet's option validation
//! does) and --register-with-taints (`key=value:Effect` or `key:Effect`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

/// A registration flag that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("--node-labels: {entry:?} is not key=value")]
    Label { entry: String },
    #[error(
        "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: {labels:?}\n--node-labels in the 'kubernetes.io' namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) or be in the specifically allowed set ({})",
        KUBELET_LABELS.join(", ")
    )]
    RestrictedLabels { labels: Vec<String> },
    #[error("--register-with-taints: invalid taint spec: {entry}")]
    Taint { entry: String },
}

/// The kubernetes.io labels a kubelet may set on its own Node (KubeletLabels).
const KUBELET_LABELS: [&str; 11] = [
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "kubernetes.io/arch",
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];

/// IsKubeletLabel: outside the kubernetes.io and k8s.io namespaces, or allowed there.
fn is_kubelet_label(key: &str) -> bool {
    let Some((ns, _)) = key.split_once('/') else {
        return true;
    };
    let ns = ns.to_ascii_lowercase();
    let in_ns = |d: &str| ns == d || ns.ends_with(&format!(".{d}"));
    if !in_ns("kubernetes.io") && !in_ns("k8s.io") {
        return true;
    }
    KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|allowed| ns == *allowed || ns.ends_with(&format!(".{allowed}")))
}

/// --node-labels entries (`key=value`) as labels.
pub fn parse_node_labels(entries: &[String]) -> Result<BTreeMap<String, String>, FlagError> {
    let mut labels = BTreeMap::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (k, v) = entry
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| FlagError::Label {
                entry: entry.into(),
            })?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    let restricted: Vec<String> = labels
        .keys()
        .filter(|k| !is_kubelet_label(k))
        .cloned()
        .collect();
    if !restricted.is_empty() {
        return Err(FlagError::RestrictedLabels { labels: restricted });
    }
    Ok(labels)
}

/// --register-with-taints entries as taints (ParseTaints): effect NoSchedule,
/// PreferNoSchedule or NoExecute; a key, and a value or none.
pub fn parse_taints(entries: &[String]) -> Result<Vec<Taint>, FlagError> {
    let mut taints: Vec<Taint> = vec![];
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let bad = || FlagError::Taint {
            entry: entry.into(),
        };
        let (kv, effect) = entry.rsplit_once(':').ok_or_else(bad)?;
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            return Err(bad());
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if key.is_empty() || taints.iter().any(|t| t.key == key && t.effect == effect) {
            return Err(bad());
        }
        taints.push(Taint {
            key: key.into(),
            value,
            effect: effect.into(),
            ..Default::default()
        });
    }
    Ok(taints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn labels_parse() {
        let l = parse_node_labels(&s(&[
            "a=1",
            "node.kubernetes.io/pool=x",
            "topology.kubernetes.io/zone=z",
        ]))
        .unwrap();
        assert_eq!(l["a"], "1");
        assert_eq!(l["node.kubernetes.io/pool"], "x");
        assert!(parse_node_labels(&s(&["novalue"])).is_err());
    }

    #[test]
    fn restricted_labels_are_refused_as_kubelet_does() {
        let e = parse_node_labels(&s(&["node-role.kubernetes.io/worker=", "x.k8s.io/y=1"]))
            .unwrap_err();
        assert_eq!(
            e,
            FlagError::RestrictedLabels {
                labels: vec!["node-role.kubernetes.io/worker".into(), "x.k8s.io/y".into()]
            }
        );
        assert!(
            e.to_string()
                .starts_with("unknown 'kubernetes.io' or 'k8s.io' labels")
        );
        assert!(parse_node_labels(&s(&["example.com/kubernetes.io=1"])).is_ok());
    }

    #[test]
    fn taints_parse() {
        let t = parse_taints(&s(&["dedicated=gpu:NoSchedule", "spot:PreferNoSchedule"])).unwrap();
        assert_eq!(
            (
                t[0].key.as_str(),
                t[0].value.as_deref(),
                t[0].effect.as_str()
            ),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        assert_eq!((t[1].key.as_str(), t[1].value.as_deref()), ("spot", None));
        assert!(parse_taints(&s(&["a=b"])).is_err());
        assert!(parse_taints(&s(&["a=b:Sometimes"])).is_err());
        assert!(parse_taints(&s(&["a:NoSchedule", "a=x:NoSchedule"])).is_err());
    }
}
