use super::*;
use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

fn at(s: i64) -> Time {
    Time(Timestamp::from_second(1_700_000_000 + s).unwrap())
}

fn cond(t: &str, status: &str, hb: i64, tr: i64) -> NodeCondition {
    NodeCondition {
        type_: t.into(),
        status: status.into(),
        reason: Some(format!("R{status}")),
        message: Some("m".into()),
        last_heartbeat_time: Some(at(hb)),
        last_transition_time: Some(at(tr)),
    }
}

fn node() -> Node {
    let mut n = Node::default();
    n.metadata.name = Some("n1".into());
    n.metadata.resource_version = Some("5".into());
    n.metadata.labels = Some(BTreeMap::from([("a".to_string(), "1".to_string())]));
    n.spec = Some(NodeSpec {
        pod_cidr: Some("10.244.1.0/24".into()),
        ..Default::default()
    });
    n.status = Some(NodeStatus {
        conditions: Some(vec![
            cond("MemoryPressure", "False", 0, 0),
            cond("Ready", "True", 0, 0),
        ]),
        capacity: Some(BTreeMap::from([("cpu".to_string(), Quantity("2".into()))])),
        addresses: Some(vec![NodeAddress {
            type_: "InternalIP".into(),
            address: "10.0.0.5".into(),
        }]),
        ..Default::default()
    });
    n
}

#[test]
fn heartbeats_alone_are_no_change() {
    let old = node();
    let mut new = old.clone();
    let c = new.status.as_mut().unwrap().conditions.as_mut().unwrap();
    c[0].last_heartbeat_time = Some(at(10));
    c.reverse();
    assert!(!node_status_has_changed(
        old.status.as_ref(),
        new.status.as_ref()
    ));
    new.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
    assert!(node_status_has_changed(
        old.status.as_ref(),
        new.status.as_ref()
    ));
}

#[test]
fn quantities_compare_by_value() {
    let old = node();
    let mut new = old.clone();
    new.status.as_mut().unwrap().capacity = Some(BTreeMap::from([(
        "cpu".to_string(),
        Quantity("2000m".into()),
    )]));
    assert!(!node_status_has_changed(
        old.status.as_ref(),
        new.status.as_ref()
    ));
    new.status.as_mut().unwrap().capacity =
        Some(BTreeMap::from([("cpu".to_string(), Quantity("3".into()))]));
    assert!(node_status_has_changed(
        old.status.as_ref(),
        new.status.as_ref()
    ));
}

#[test]
fn no_difference_is_no_patch() {
    assert_eq!(node_status_patch(&node(), &node()), None);
}

#[test]
fn heartbeat_patch_carries_only_the_heartbeats() {
    let old = node();
    let mut new = old.clone();
    for c in new.status.as_mut().unwrap().conditions.as_mut().unwrap() {
        c.last_heartbeat_time = Some(at(10));
    }
    let p = node_status_patch(&old, &new).unwrap();
    let hb = "2023-11-14T22:13:30Z";
    assert_eq!(
        p,
        json!({"status": {
            "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
            "conditions": [
                {"type": "MemoryPressure", "lastHeartbeatTime": hb},
                {"type": "Ready", "lastHeartbeatTime": hb},
            ],
        }})
    );
}

#[test]
fn spec_is_never_patched_labels_are() {
    let old = node();
    let mut new = old.clone();
    new.spec.as_mut().unwrap().pod_cidr = Some("10.9.9.0/24".into());
    new.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("kubernetes.io/os".into(), "linux".into());
    new.metadata.labels.as_mut().unwrap().remove("a");
    let p = node_status_patch(&old, &new).unwrap();
    assert_eq!(
        p,
        json!({"metadata": {"labels": {"a": null, "kubernetes.io/os": "linux"}}})
    );
}

#[test]
fn changed_addresses_are_replaced_whole() {
    let old = node();
    let mut new = old.clone();
    new.status.as_mut().unwrap().addresses = Some(vec![
        NodeAddress {
            type_: "InternalIP".into(),
            address: "10.0.0.6".into(),
        },
        NodeAddress {
            type_: "Hostname".into(),
            address: "n1".into(),
        },
    ]);
    let p = node_status_patch(&old, &new).unwrap();
    assert_eq!(
        p["status"]["addresses"],
        json!([{"$patch": "replace"}, {"type": "InternalIP", "address": "10.0.0.6"}, {"type": "Hostname", "address": "n1"}])
    );
}

#[test]
fn new_and_removed_conditions() {
    let old = node();
    let mut new = old.clone();
    let c = new.status.as_mut().unwrap().conditions.as_mut().unwrap();
    c.remove(0);
    c.push(cond("PIDPressure", "False", 3, 3));
    let p = node_status_patch(&old, &new).unwrap();
    let list = p["status"]["conditions"].as_array().unwrap();
    assert_eq!(list[0]["type"], "PIDPressure");
    assert_eq!(list[0]["status"], "False");
    assert_eq!(
        list[1],
        json!({"$patch": "delete", "type": "MemoryPressure"})
    );
    assert_eq!(
        p["status"]["$setElementOrder/conditions"],
        json!([{"type": "Ready"}, {"type": "PIDPressure"}])
    );
}
