//! The predicates one by one: node affinity operators and fields, tolerations, host
//! port addresses.

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint,
    Toleration,
};

use super::*;
use crate::kubelet::lifecycle::{node_affinity, node_ports, taints};

fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.into(),
        operator: op.into(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

fn term(
    exprs: Vec<NodeSelectorRequirement>,
    fields: Vec<NodeSelectorRequirement>,
) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: (!exprs.is_empty()).then_some(exprs),
        match_fields: (!fields.is_empty()).then_some(fields),
    }
}

fn with_affinity(terms: Vec<NodeSelectorTerm>) -> Pod {
    let mut p = pod("web", &[]);
    spec(&mut p).affinity = Some(Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: terms,
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    p
}

fn labelled(extra: &[(&str, &str)]) -> Node {
    let mut n = node();
    let l = n.metadata.labels.get_or_insert_with(Default::default);
    for (k, v) in extra {
        l.insert(k.to_string(), v.to_string());
    }
    n
}

fn matches(exprs: Vec<NodeSelectorRequirement>) -> bool {
    let n = labelled(&[("zone", "a"), ("cores", "8")]);
    node_affinity::matches(&with_affinity(vec![term(exprs, vec![])]), &n)
}

#[test]
fn label_operators() {
    assert!(matches(vec![req("zone", "In", &["a", "b"])]));
    assert!(!matches(vec![req("zone", "In", &["b"])]));
    assert!(!matches(vec![req("missing", "In", &["a"])]));
    assert!(matches(vec![req("zone", "NotIn", &["b"])]));
    assert!(!matches(vec![req("zone", "NotIn", &["a"])]));
    assert!(
        matches(vec![req("missing", "NotIn", &["a"])]),
        "NotIn holds without the label"
    );
    assert!(matches(vec![req("zone", "Exists", &[])]));
    assert!(!matches(vec![req("missing", "Exists", &[])]));
    assert!(matches(vec![req("missing", "DoesNotExist", &[])]));
    assert!(!matches(vec![req("zone", "DoesNotExist", &[])]));
    assert!(matches(vec![req("cores", "Gt", &["4"])]));
    assert!(!matches(vec![req("cores", "Gt", &["8"])]));
    assert!(matches(vec![req("cores", "Lt", &["9"])]));
    assert!(
        !matches(vec![req("zone", "Gt", &["1"])]),
        "a label that is not a number"
    );
    assert!(!matches(vec![req("missing", "Lt", &["1"])]));
    // All expressions of a term must hold.
    assert!(!matches(vec![
        req("zone", "In", &["a"]),
        req("cores", "Lt", &["2"])
    ]));
}

#[test]
fn invalid_requirements_spoil_their_term_only() {
    for bad in [
        req("zone", "In", &[]),
        req("zone", "Exists", &["a"]),
        req("cores", "Gt", &["x"]),
        req("cores", "Gt", &["1", "2"]),
        req("zone", "Equals", &["a"]),
        req("", "Exists", &[]),
    ] {
        assert!(!matches(vec![bad.clone()]), "{bad:?}");
        // Even behind a requirement that already fails, and with a good term beside it.
        let n = labelled(&[("zone", "a")]);
        let p = with_affinity(vec![
            term(vec![req("zone", "In", &["a"]), bad], vec![]),
            term(vec![req("zone", "Exists", &[])], vec![]),
        ]);
        assert!(node_affinity::matches(&p, &n));
    }
}

#[test]
fn terms_are_ored_and_an_empty_term_matches_nothing() {
    let n = labelled(&[("zone", "a")]);
    let p = with_affinity(vec![
        term(vec![req("zone", "In", &["b"])], vec![]),
        term(vec![req("zone", "In", &["a"])], vec![]),
    ]);
    assert!(node_affinity::matches(&p, &n));
    assert!(!node_affinity::matches(
        &with_affinity(vec![term(vec![], vec![])]),
        &n
    ));
    assert!(!node_affinity::matches(&with_affinity(vec![]), &n));
}

#[test]
fn match_fields_compare_the_node_name() {
    let n = node();
    let by_name = |op: &str, v: &[&str]| {
        node_affinity::matches(
            &with_affinity(vec![term(vec![], vec![req("metadata.name", op, v)])]),
            &n,
        )
    };
    assert!(by_name("In", &["node-1"]));
    assert!(!by_name("In", &["node-2"]));
    assert!(by_name("NotIn", &["node-2"]));
    assert!(!by_name("In", &["node-1", "node-2"]), "one value only");
    assert!(!by_name("Exists", &[]));
}

#[test]
fn node_selector_and_affinity_must_both_hold() {
    let n = labelled(&[("zone", "a")]);
    let mut p = with_affinity(vec![term(vec![req("zone", "In", &["a"])], vec![])]);
    spec(&mut p).node_selector = Some(
        [("zone".to_string(), "b".to_string())]
            .into_iter()
            .collect(),
    );
    assert!(!node_affinity::matches(&p, &n));
}

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: (!value.is_empty()).then(|| value.into()),
        effect: effect.into(),
        ..Default::default()
    }
}

fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration {
        key: opt(key),
        operator: opt(op),
        value: opt(value),
        effect: opt(effect),
        ..Default::default()
    }
}

#[test]
fn tolerations_as_upstream_reads_them() {
    let t = taint("dedicated", "db", "NoExecute");
    assert!(taints::tolerates(
        &tol("dedicated", "Equal", "db", "NoExecute"),
        &t
    ));
    assert!(
        taints::tolerates(&tol("dedicated", "", "db", ""), &t),
        "empty operator is Equal"
    );
    assert!(!taints::tolerates(
        &tol("dedicated", "Equal", "web", ""),
        &t
    ));
    assert!(taints::tolerates(&tol("dedicated", "Exists", "", ""), &t));
    assert!(
        taints::tolerates(&tol("", "Exists", "", ""), &t),
        "empty key with Exists tolerates all"
    );
    assert!(!taints::tolerates(
        &tol("dedicated", "Exists", "", "NoSchedule"),
        &t
    ));
    assert!(!taints::tolerates(&tol("other", "Exists", "", ""), &t));
    assert!(!taints::tolerates(&tol("dedicated", "Gt", "1", ""), &t));

    let node_taints = vec![taint("a", "", "NoSchedule"), taint("b", "", "NoExecute")];
    let found = taints::find_untolerated(&node_taints, &[], |t| t.effect == taints::NO_EXECUTE);
    assert_eq!(found.map(|t| t.key.as_str()), Some("b"));
    let found = taints::find_untolerated(&node_taints, &[tol("b", "Exists", "", "")], |t| {
        t.effect == taints::NO_EXECUTE
    });
    assert!(found.is_none());
}

fn with_port(name: &str, port: i32, ip: Option<&str>, proto: Option<&str>) -> Pod {
    let mut p = pod(name, &[]);
    host_port(&mut p, port, ip, proto);
    p
}

#[test]
fn host_port_conflicts_by_address_and_protocol() {
    let any = with_port("a", 80, None, None);
    let on_one = with_port("b", 80, Some("10.0.0.1"), Some("TCP"));
    let fits = |p: &Pod, admitted: &[&Pod]| node_ports::fits(p, admitted);

    // 0.0.0.0 collides with anything on the port.
    assert!(!fits(&with_port("w", 80, Some("10.0.0.2"), None), &[&any]));
    assert!(!fits(&with_port("w", 80, None, None), &[&on_one]));
    // Two different addresses share the port; the same one does not.
    assert!(fits(
        &with_port("w", 80, Some("10.0.0.2"), None),
        &[&on_one]
    ));
    assert!(!fits(
        &with_port("w", 80, Some("10.0.0.1"), None),
        &[&on_one]
    ));
    // Another protocol or port is free.
    assert!(fits(&with_port("w", 80, None, Some("UDP")), &[&any]));
    assert!(fits(&with_port("w", 81, None, None), &[&any]));
    // A container port without a host port holds nothing.
    assert!(fits(
        &with_port("w", 0, None, None),
        &[&with_port("z", 0, None, None)]
    ));
}

#[test]
fn sidecars_hold_host_ports_classic_init_containers_do_not() {
    let mut a = pod("a", &[]);
    let mut side = container("proxy", &[]);
    side.ports = Some(vec![ContainerPort {
        container_port: 9000,
        host_port: Some(9000),
        ..Default::default()
    }]);
    let mut init = side.clone();
    init.name = "init".into();
    init.ports = Some(vec![ContainerPort {
        container_port: 9001,
        host_port: Some(9001),
        ..Default::default()
    }]);
    side.restart_policy = Some("Always".into());
    spec(&mut a).init_containers = Some(vec![side, init]);
    assert!(!node_ports::fits(&with_port("w", 9000, None, None), &[&a]));
    assert!(node_ports::fits(&with_port("w", 9001, None, None), &[&a]));
}
