//! kubelet's registration flags as data: --node-labels (`key=value,...`, refusing the
//! kubernetes.io and k8s.io labels a kubelet may not set, as kubelet's option validation
//! does), --register-with-taints (`key=value:Effect` or `key:Effect`), --kube-reserved and
//! --system-reserved (`resource=quantity,...`) and --eviction-hard (`signal<value,...`, as
//! eviction's ParseThresholdConfig reads it).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

use super::resources::{EvictionHard, ThresholdValue};
use crate::kubelet::cm::quantity::Amount;

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
    /// A --kube-reserved or --system-reserved entry that is not `name=quantity`.
    #[error("{flag}: {entry:?} is not a resource=quantity pair")]
    Reserved { flag: &'static str, entry: String },
    #[error("--eviction-hard: {entry:?}: {reason}")]
    Eviction { entry: String, reason: String },
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

/// --kube-reserved / --system-reserved (`cpu=100m,memory=1Gi`) as amounts by resource.
pub fn parse_reserved(
    flag: &'static str,
    value: &str,
) -> Result<BTreeMap<String, Amount>, FlagError> {
    let mut out = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || FlagError::Reserved {
            flag,
            entry: entry.to_string(),
        };
        let (k, v) = entry.split_once('=').ok_or_else(bad)?;
        let a = Amount::parse(v).ok_or_else(bad)?;
        if k.trim().is_empty() || !(a.is_positive() || a.is_zero()) {
            return Err(bad());
        }
        out.insert(k.trim().to_string(), a);
    }
    Ok(out)
}

/// --eviction-hard (`memory.available<100Mi,nodefs.available<10%`): the hard thresholds.
/// As upstream, the flag replaces the defaults as a whole: a signal it leaves out has no
/// threshold. A value of zero (`0`, `0%`) sets none.
pub fn parse_eviction_hard(value: &str) -> Result<EvictionHard, FlagError> {
    let mut out = EvictionHard::default();
    let mut given = std::collections::BTreeSet::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |reason: &str| FlagError::Eviction {
            entry: entry.into(),
            reason: reason.into(),
        };
        let (signal, v) = entry
            .split_once('<')
            .ok_or_else(|| bad("invalid eviction threshold syntax, expected <signal><<value>"))?;
        let (signal, v) = (signal.trim(), v.trim());
        let slot = out.slot(signal).ok_or_else(|| {
            bad("unsupported eviction signal (berth evaluates memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree, pid.available)")
        })?;
        if !given.insert(signal) {
            return Err(bad("the signal is given twice"));
        }
        let t = if let Some(p) = v.strip_suffix('%') {
            let p: f32 = p
                .trim()
                .parse()
                .map_err(|_| bad("the percentage is not a number"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad(
                    "eviction percentage threshold must be >= 0% and <= 100%",
                ));
            }
            (p > 0.0).then_some(ThresholdValue::Percentage(p / 100.0))
        } else {
            let a = Amount::parse(v).ok_or_else(|| bad("the value is not a quantity"))?;
            if !(a.is_positive() || a.is_zero()) {
                return Err(bad("eviction threshold must be positive"));
            }
            (!a.is_zero()).then_some(ThresholdValue::Quantity(a))
        };
        *slot = t;
    }
    Ok(out)
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

    #[test]
    fn reserved_flags_parse_and_refuse_nonsense() {
        let m = parse_reserved("--kube-reserved", "cpu=100m, memory=1Gi,").unwrap();
        assert_eq!(m["cpu"].milli_value(), 100);
        assert_eq!(m["memory"].value(), 1 << 30);
        let e = parse_reserved("--system-reserved", "cpu").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--system-reserved: \"cpu\" is not a resource=quantity pair"
        );
        assert!(parse_reserved("--system-reserved", "cpu=lots").is_err());
        assert!(parse_reserved("--system-reserved", "cpu=-1").is_err());
    }

    #[test]
    fn eviction_hard_replaces_the_defaults_and_refuses_nonsense() {
        let e = parse_eviction_hard("memory.available<500Mi, nodefs.available<5%,pid.available<0")
            .unwrap();
        assert_eq!(
            e.memory_available,
            Amount::parse("500Mi").map(ThresholdValue::Quantity)
        );
        assert_eq!(e.nodefs_available, Some(ThresholdValue::Percentage(0.05)));
        // Left out, or zero: no threshold.
        assert_eq!(e.imagefs_available, None);
        assert_eq!(e.pid_available, None);
        for (bad, why) in [
            ("memory.available>1Gi", "syntax"),
            ("swap.available<1Gi", "unsupported eviction signal"),
            ("nodefs.available<120%", "<= 100%"),
            ("memory.available<-1", "positive"),
            ("memory.available<lots", "not a quantity"),
            ("pid.available<0,pid.available<5%", "twice"),
        ] {
            let err = parse_eviction_hard(bad).unwrap_err().to_string();
            assert!(err.starts_with("--eviction-hard: "), "{err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(parse_eviction_hard("").unwrap(), EvictionHard::default());
    }
}
