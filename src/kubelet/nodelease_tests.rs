use serde_json::json;

use super::*;
use crate::kubelet::nodestatus::fake_api::FakeApi;

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";

fn at(us: i64) -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::from_microsecond(1_700_000_000_000_000 + us).unwrap())
}

fn owner(uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: "n1".into(),
        uid: uid.into(),
        ..Default::default()
    }
}

#[test]
fn a_new_lease_is_held_by_the_node() {
    let l = new_lease(None, "n1", "n1", 40, at(0), Some(owner("u1")));
    assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
    let spec = l.spec.as_ref().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert_eq!(spec.renew_time, Some(at(0)));
    assert_eq!(l.metadata.owner_references, Some(vec![owner("u1")]));
    let v = serde_json::to_value(&l).unwrap();
    assert_eq!(v["spec"]["renewTime"], "2023-11-14T22:13:20.000000Z");
}

#[test]
fn renewal_keeps_the_base_and_its_owner() {
    let base = new_lease(None, "n1", "n1", 40, at(0), Some(owner("u1")));
    let l = new_lease(Some(&base), "x", "x", 1, at(5), Some(owner("u2")));
    assert_eq!(l.spec.as_ref().unwrap().renew_time, Some(at(5)));
    assert_eq!(
        l.spec.as_ref().unwrap().holder_identity.as_deref(),
        Some("n1")
    );
    assert_eq!(l.metadata.owner_references, Some(vec![owner("u1")]));
}

fn calls(api: &FakeApi) -> Vec<String> {
    let mut st = api.state();
    let v = st
        .seen
        .iter()
        .map(|s| format!("{} {}", s.method, s.path))
        .collect();
    st.seen.clear();
    v
}

fn add_node(api: &FakeApi) {
    api.state().nodes.insert(
        "n1".into(),
        json!({"metadata": {"name": "n1", "uid": "u1"}}),
    );
}

#[tokio::test(start_paused = true)]
async fn created_then_renewed_without_a_get() {
    let api = FakeApi::default();
    add_node(&api);
    let mut l = NodeLease::new(api.client(), "n1", DEFAULT_LEASE_DURATION_SECONDS);
    assert_eq!(l.renew_interval, Duration::from_secs(10));
    l.sync().await;
    assert_eq!(
        calls(&api),
        [
            format!("GET {LEASES}/n1"),
            "GET /api/v1/nodes/n1".into(),
            format!("POST {LEASES}")
        ]
    );
    let first = api.state().leases["n1"].clone();
    assert_eq!(first["metadata"]["ownerReferences"][0]["uid"], "u1");
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(first["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(first["spec"]["holderIdentity"], "n1");
    tokio::time::sleep(Duration::from_millis(1)).await;
    std::thread::sleep(Duration::from_millis(2));
    l.sync().await;
    assert_eq!(calls(&api), [format!("PUT {LEASES}/n1")]);
    let second = api.state().leases["n1"].clone();
    assert_ne!(second["spec"]["renewTime"], first["spec"]["renewTime"]);
}

#[tokio::test(start_paused = true)]
async fn a_conflict_reads_the_lease_again() {
    let api = FakeApi::default();
    add_node(&api);
    let mut l = NodeLease::new(api.client(), "n1", 40);
    l.sync().await;
    calls(&api);
    api.state().leases.get_mut("n1").unwrap()["metadata"]["resourceVersion"] = json!("999");
    l.sync().await;
    assert_eq!(
        calls(&api),
        [
            format!("PUT {LEASES}/n1"),
            format!("GET {LEASES}/n1"),
            format!("PUT {LEASES}/n1")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn no_node_no_lease_until_it_exists() {
    let api = FakeApi::default();
    let mut l = NodeLease::new(api.client(), "n1", 40);
    l.sync().await;
    assert!(
        api.state().leases.is_empty(),
        "the create waits for the owner"
    );
    add_node(&api);
    l.sync().await;
    assert_eq!(
        api.state().leases["n1"]["metadata"]["ownerReferences"][0]["uid"],
        "u1"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_back_off_and_recover() {
    let api = FakeApi::default();
    add_node(&api);
    api.state().fail_next = 3;
    let mut l = NodeLease::new(api.client(), "n1", 40);
    l.sync().await;
    assert!(api.state().leases.contains_key("n1"));
    // A lease deleted under us: the update fails, ensure creates it again.
    calls(&api);
    api.state().leases.clear();
    l.sync().await;
    let c = calls(&api);
    assert_eq!(
        c.iter().filter(|c| c.starts_with("PUT")).count(),
        5,
        "{c:?}"
    );
    assert!(api.state().leases.contains_key("n1"));
}
