//! Admission with upstream's reasons and messages (pkg/kubelet/lifecycle/predicate_test.go
//! and kubelet_test.go TestHandlePortConflicts, TestHandleNodeSelector,
//! TestHandleMemExceeded ...).

mod predicates;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;

pub(super) fn q(s: &str) -> Quantity {
    Quantity(s.into())
}

pub(super) fn list(items: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    items.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
}

/// A node named `node-1` with 1 cpu, 1Gi, 10 pods allocatable and the usual labels.
pub(super) fn node() -> Node {
    let mut n = Node::default();
    n.metadata.name = Some("node-1".into());
    n.metadata.labels = Some(
        [
            ("kubernetes.io/hostname", "node-1"),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    n.spec = Some(NodeSpec::default());
    n.status = Some(NodeStatus {
        allocatable: Some(list(&[
            ("cpu", "1"),
            ("memory", "1Gi"),
            ("pods", "10"),
            ("ephemeral-storage", "10Gi"),
        ])),
        ..Default::default()
    });
    n
}

pub(super) fn container(name: &str, requests: &[(&str, &str)]) -> Container {
    Container {
        name: name.into(),
        resources: Some(ResourceRequirements {
            requests: (!requests.is_empty()).then(|| list(requests)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn pod(name: &str, requests: &[(&str, &str)]) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.spec = Some(PodSpec {
        node_name: Some("node-1".into()),
        containers: vec![container("app", requests)],
        ..Default::default()
    });
    p
}

pub(super) fn spec(p: &mut Pod) -> &mut PodSpec {
    p.spec.get_or_insert_with(Default::default)
}

pub(super) fn host_port(p: &mut Pod, port: i32, ip: Option<&str>, proto: Option<&str>) {
    spec(p).containers[0]
        .ports
        .get_or_insert_with(Vec::new)
        .push(ContainerPort {
            container_port: 80,
            host_port: Some(port),
            host_ip: ip.map(String::from),
            protocol: proto.map(String::from),
            ..Default::default()
        });
}

pub(super) fn rejected(pod: &Pod, admitted: &[Pod], node: &Node) -> (String, String) {
    let admitted: Vec<&Pod> = admitted.iter().collect();
    match admit(pod, &admitted, node) {
        Ok(()) => ("admitted".into(), String::new()),
        Err(r) => (r.reason, r.message),
    }
}

fn pair(reason: &str, message: &str) -> (String, String) {
    (reason.into(), message.into())
}

#[test]
fn a_pod_that_fits_is_admitted() {
    let p = pod("web", &[("cpu", "500m"), ("memory", "128Mi")]);
    let other = pod("a", &[("cpu", "200m")]);
    assert_eq!(admit(&p, &[&other], &node()), Ok(()));
}

#[test]
fn out_of_cpu_with_upstreams_message() {
    let p = pod("web", &[("cpu", "2")]);
    let others = vec![pod("a", &[("cpu", "500m")])];
    assert_eq!(
        rejected(&p, &others, &node()),
        pair(
            "OutOfcpu",
            "Node didn't have enough resource: cpu, requested: 2000, used: 500, capacity: 1000"
        )
    );
}

#[test]
fn out_of_memory_counts_the_admitted_pods_requests() {
    let p = pod("web", &[("memory", "600Mi")]);
    let others = vec![pod("a", &[("memory", "512Mi")])];
    assert_eq!(
        rejected(&p, &others, &node()),
        pair(
            "OutOfmemory",
            "Node didn't have enough resource: memory, requested: 629145600, used: 536870912, capacity: 1073741824"
        )
    );
}

#[test]
fn out_of_pods_comes_first() {
    let p = pod("web", &[("cpu", "2")]);
    let others: Vec<Pod> = (0..10).map(|i| pod(&format!("p{i}"), &[])).collect();
    assert_eq!(
        rejected(&p, &others, &node()),
        pair(
            "OutOfpods",
            "Node didn't have enough resource: pods, requested: 1, used: 10, capacity: 10"
        )
    );
}

#[test]
fn extended_resources_the_node_offers_are_checked_others_dropped() {
    let mut n = node();
    if let Some(a) = n.status.as_mut().and_then(|s| s.allocatable.as_mut()) {
        a.insert("example.com/gpu".into(), q("1"));
    }
    let p = pod("web", &[("example.com/gpu", "2")]);
    assert_eq!(
        rejected(&p, &[], &n),
        pair(
            "OutOfexample.com/gpu",
            "Node didn't have enough resource: example.com/gpu, requested: 2, used: 0, capacity: 1"
        )
    );
    // A cluster-level resource the node does not know is not the node's to refuse.
    let p = pod("web", &[("example.com/licence", "5")]);
    assert_eq!(admit(&p, &[], &node()), Ok(()));
    // hugepages are scalar and checked even when the node has none.
    let p = pod("web", &[("hugepages-2Mi", "4Mi")]);
    assert_eq!(rejected(&p, &[], &node()).0, "OutOfhugepages-2Mi");
}

#[test]
fn effective_requests_take_init_containers_sidecars_and_overhead() {
    // containers 300m; init 800m alone; sidecar 200m runs beside both.
    let mut p = pod("web", &[("cpu", "300m")]);
    let mut sidecar = container("proxy", &[("cpu", "200m")]);
    sidecar.restart_policy = Some("Always".into());
    spec(&mut p).init_containers = Some(vec![sidecar, container("setup", &[("cpu", "800m")])]);
    // max(300 + 200, 200 + 800) = 1000: fits exactly.
    assert_eq!(admit(&p, &[], &node()), Ok(()));
    spec(&mut p).overhead = Some(list(&[("cpu", "1m")]));
    assert_eq!(
        rejected(&p, &[], &node()),
        pair(
            "OutOfcpu",
            "Node didn't have enough resource: cpu, requested: 1001, used: 0, capacity: 1000"
        )
    );
}

#[test]
fn terminated_or_same_uid_pods_are_the_callers_and_the_pod_itself_is_skipped() {
    let p = pod("web", &[("cpu", "800m")]);
    assert_eq!(admit(&p, &[&p], &node()), Ok(()));
}

#[test]
fn critical_pods_are_admitted_despite_resources_but_not_other_failures() {
    let mut p = pod("etcd", &[("cpu", "4")]);
    p.metadata.annotations = Some(
        [(
            "kubernetes.io/config.source".to_string(),
            "file".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(admit(&p, &[], &node()), Ok(()));
    spec(&mut p).node_selector = Some(
        [("disk".to_string(), "ssd".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(rejected(&p, &[], &node()).0, "NodeAffinity");

    let mut p = pod("dns", &[("cpu", "4")]);
    spec(&mut p).priority = Some(2_000_001_000);
    assert_eq!(admit(&p, &[], &node()), Ok(()));
    spec(&mut p).priority = Some(1_000_000_000);
    assert_eq!(rejected(&p, &[], &node()).0, "OutOfcpu");
}

#[test]
fn node_selector_mismatch_is_node_affinity() {
    let mut p = pod("web", &[]);
    spec(&mut p).node_selector = Some(
        [("disk".to_string(), "ssd".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(
        rejected(&p, &[], &node()),
        pair(
            "NodeAffinity",
            "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
        )
    );
    spec(&mut p).node_selector = Some(
        [("kubernetes.io/hostname".to_string(), "node-1".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(admit(&p, &[], &node()), Ok(()));
}

#[test]
fn another_nodes_name_is_node_name() {
    let mut p = pod("web", &[]);
    spec(&mut p).node_name = Some("node-2".into());
    assert_eq!(
        rejected(&p, &[], &node()),
        pair(
            "NodeName",
            "Predicate NodeName failed: node(s) didn't match the requested node name"
        )
    );
}

#[test]
fn a_host_port_taken_is_node_ports() {
    let mut taken = pod("a", &[]);
    host_port(&mut taken, 8080, None, None);
    let mut p = pod("web", &[]);
    host_port(&mut p, 8080, None, Some("TCP"));
    assert_eq!(
        rejected(&p, &[taken], &node()),
        pair(
            "NodePorts",
            "Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
        )
    );
}

#[test]
fn an_untolerated_no_execute_taint_is_taint_toleration() {
    let mut n = node();
    n.spec = Some(NodeSpec {
        taints: Some(vec![k8s_openapi::api::core::v1::Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoExecute".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let p = pod("web", &[]);
    assert_eq!(
        rejected(&p, &[], &n),
        pair(
            "TaintToleration",
            "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"
        )
    );
    // Static pods are not checked.
    let mut s = p.clone();
    s.metadata.annotations = Some(
        [(
            "kubernetes.io/config.source".to_string(),
            "file".to_string(),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(admit(&s, &[], &n), Ok(()));
    // NoSchedule is the scheduler's business, not the kubelet's.
    if let Some(t) = n.spec.as_mut().and_then(|s| s.taints.as_mut()) {
        t[0].effect = "NoSchedule".into();
    }
    assert_eq!(admit(&p, &[], &n), Ok(()));
}

#[test]
fn the_first_failure_is_reported() {
    // Resources come before affinity, affinity before the node name.
    let mut p = pod("web", &[("cpu", "2")]);
    spec(&mut p).node_selector = Some(
        [("disk".to_string(), "ssd".to_string())]
            .into_iter()
            .collect(),
    );
    spec(&mut p).node_name = Some("node-2".into());
    assert_eq!(rejected(&p, &[], &node()).0, "OutOfcpu");
    spec(&mut p).containers[0].resources = None;
    assert_eq!(rejected(&p, &[], &node()).0, "NodeAffinity");
    spec(&mut p).node_selector = None;
    assert_eq!(rejected(&p, &[], &node()).0, "NodeName");
}

#[test]
fn os_label_and_field_must_name_this_os() {
    let mut p = pod("web", &[]);
    p.metadata.labels = Some(
        [("kubernetes.io/os".to_string(), "windows".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(
        rejected(&p, &[], &node()),
        pair(
            "PodOSSelectorNodeLabelDoesNotMatch",
            "Failed to admit pod as the `kubernetes.io/os` label doesn't match node label"
        )
    );
    let mut p = pod("web", &[]);
    spec(&mut p).os = Some(k8s_openapi::api::core::v1::PodOS {
        name: "windows".into(),
    });
    assert_eq!(
        rejected(&p, &[], &node()),
        pair(
            "PodOSNotSupported",
            "Failed to admit pod as the OS field doesn't match node OS"
        )
    );
}

#[test]
fn strict_supplemental_groups_need_the_node_feature() {
    let mut p = pod("web", &[]);
    spec(&mut p).security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
        supplemental_groups_policy: Some("Strict".into()),
        ..Default::default()
    });
    assert_eq!(
        rejected(&p, &[], &node()),
        pair(
            "SupplementalGroupsPolicyNotSupported",
            "SupplementalGroupsPolicy=Strict is not supported in this node"
        )
    );
    let mut n = node();
    if let Some(s) = n.status.as_mut() {
        s.features = Some(k8s_openapi::api::core::v1::NodeFeatures {
            supplemental_groups_policy: Some(true),
        });
    }
    assert_eq!(admit(&p, &[], &n), Ok(()));
}

#[test]
fn a_rejected_pod_is_failed_as_reject_pod_marks_it() {
    let p = pod("web", &[("cpu", "2")]);
    let r = admit(&p, &[], &node()).expect_err("does not fit");
    let st = rejected_status(&p, &r);
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert_eq!(st.reason.as_deref(), Some("OutOfcpu"));
    assert_eq!(
        st.message.as_deref(),
        Some(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 0, capacity: 1000"
        )
    );
    assert_eq!(st.qos_class.as_deref(), Some("Burstable"));
    let e = rejected_event(&p, &r);
    assert_eq!(
        (
            e.kind,
            e.reason.as_str(),
            e.message.as_str(),
            e.object.name.as_str()
        ),
        (
            crate::kubelet::events::EventKind::Warning,
            "OutOfcpu",
            r.message.as_str(),
            "web"
        )
    );
}
