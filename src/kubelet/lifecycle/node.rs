//! The Node admission judges against when no API server holds one (standalone mode): the
//! object berth would register, as far as admission reads it: the well-known labels,
//! allocatable cpu, memory and pods from the host's facts, no taints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::kubelet::cm::NodeFacts;

/// kubelet's default --max-pods.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// runtime.GOARCH for the architecture berth was built for (the `kubernetes.io/arch`
/// label's values).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The node `name` with the host's capacity as allocatable (standalone mode reserves
/// nothing for the system) and `max_pods` pods.
pub fn standalone_node(name: &str, facts: &NodeFacts, max_pods: i64) -> Node {
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", std::env::consts::OS),
        ("kubernetes.io/arch", go_arch()),
        ("beta.kubernetes.io/os", std::env::consts::OS),
        ("beta.kubernetes.io/arch", go_arch()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let allocatable: BTreeMap<String, Quantity> = [
        ("cpu", format!("{}m", facts.cpu_capacity_millis)),
        ("memory", facts.memory_capacity.to_string()),
        ("pods", max_pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let mut node = Node::default();
    node.metadata.name = Some(name.into());
    node.metadata.labels = Some(labels);
    node.spec = Some(NodeSpec::default());
    node.status = Some(NodeStatus {
        capacity: Some(allocatable.clone()),
        allocatable: Some(allocatable),
        ..Default::default()
    });
    node
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::lifecycle::admit;
    use crate::kubelet::lifecycle::tests::pod;

    #[test]
    fn standalone_node_admits_by_the_hosts_capacity() {
        let facts = NodeFacts {
            memory_capacity: 2 << 30,
            cpu_capacity_millis: 2000,
            can_lower_oom_score_adj: true,
            cgroup_v2: false,
            swap_controller: false,
            hugepage_sizes: vec![],
        };
        let n = standalone_node("node-1", &facts, 1);
        assert_eq!(
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/os"))
                .map(String::as_str),
            Some("linux")
        );
        assert_eq!(
            admit(&pod("a", &[("cpu", "2"), ("memory", "2Gi")]), &[], &n),
            Ok(())
        );
        let r = admit(&pod("b", &[]), &[&pod("a", &[])], &n).expect_err("one pod at most");
        assert_eq!(r.reason, "OutOfpods");
    }
}
