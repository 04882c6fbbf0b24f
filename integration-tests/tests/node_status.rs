//! The Node and its Lease against the test API server, as a cluster sees them: the Node
//! registers with capacity, addresses, nodeInfo and conditions; its status follows the
//! runtime's readiness; a deleted Node comes back; the Lease is created with the Node as
//! owner and renewed. The runtime is a small CRI status stand-in (the kubelet suite
//! drives real runtimes); the host facts are the machine's own, read only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth::cri::api::{CriFuture, RuntimeApi};
use berth::kubelet::nodelease::NodeLease;
use berth::kubelet::nodestatus::{EvictionHard, Host, NodeStatus, NodeStatusConfig};
use berth_integration_tests::apiserver::{ApiServer, Options};
use cri_proto::v1 as cri;
use serde_json::Value;

const NODE: &str = "node-status-1";

#[derive(Default)]
struct Runtime {
    network_down: AtomicBool,
}

impl RuntimeApi for Runtime {
    fn version(&self, _: cri::VersionRequest) -> CriFuture<'_, cri::VersionResponse> {
        Box::pin(async {
            Ok(cri::VersionResponse {
                runtime_name: "berth".into(),
                runtime_version: "0.1.0".into(),
                ..Default::default()
            })
        })
    }
    fn status(&self, _: cri::StatusRequest) -> CriFuture<'_, cri::StatusResponse> {
        let net = !self.network_down.load(Ordering::SeqCst);
        Box::pin(async move {
            let c = |t: &str, ok: bool| cri::RuntimeCondition {
                r#type: t.into(),
                status: ok,
                reason: if ok { "" } else { "NetworkPluginNotReady" }.into(),
                message: if ok { "" } else { "cni config uninitialized" }.into(),
            };
            Ok(cri::StatusResponse {
                status: Some(cri::RuntimeStatus {
                    conditions: vec![c("RuntimeReady", true), c("NetworkReady", net)],
                }),
                ..Default::default()
            })
        })
    }
    fn runtime_config(
        &self,
        _: cri::RuntimeConfigRequest,
    ) -> CriFuture<'_, cri::RuntimeConfigResponse> {
        Box::pin(async { Ok(Default::default()) })
    }
    fn update_runtime_config(
        &self,
        _: cri::UpdateRuntimeConfigRequest,
    ) -> CriFuture<'_, cri::UpdateRuntimeConfigResponse> {
        Box::pin(async { Ok(Default::default()) })
    }
}

async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn condition(node: &Value, t: &str) -> Value {
    node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == t).cloned())
        .unwrap_or(Value::Null)
}

struct Running {
    api: ApiServer,
    runtime: Arc<Runtime>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn start() -> Running {
    let api = ApiServer::start(Options::default())
        .await
        .expect("api server");
    api.ensure_namespace_defaults("kube-node-lease");
    let client = ApiServer::client_from(&api.node_kubeconfig(NODE).expect("kubeconfig"))
        .await
        .expect("client");
    let runtime = Arc::new(Runtime::default());
    let mut cfg = NodeStatusConfig::new(NODE, NODE, vec![std::net::IpAddr::from([127, 0, 0, 1])]);
    cfg.update_frequency = Duration::from_secs(1);
    cfg.runtime_name = "berth".into();
    cfg.registration
        .node_labels
        .insert("pool".into(), "a".into());
    let host = Arc::new(Host::new(
        std::env::temp_dir(),
        None,
        EvictionHard::upstream_default(),
    ));
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    let (ns, _watch) =
        NodeStatus::new(cfg, client.clone(), runtime.clone(), host, Arc::new(events));
    // A 4 s Lease is renewed every second.
    let lease = NodeLease::new(client, NODE, 4);
    let tasks = vec![tokio::spawn(ns.run()), tokio::spawn(lease.run())];
    Running {
        api,
        runtime,
        tasks,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_ready_with_its_facts() {
    let r = start().await;
    wait_for("a Ready node", Duration::from_secs(20), || {
        r.api
            .get("nodes", "", NODE)
            .is_some_and(|n| condition(&n, "Ready")["status"] == "True")
    })
    .await;
    let n = r.api.get("nodes", "", NODE).unwrap();
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], NODE);
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["pool"], "a");
    let cap = &n["status"]["capacity"];
    for r in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(cap[r].is_string(), "capacity {r}: {cap}");
    }
    assert_eq!(cap["pods"], "110");
    assert_eq!(n["status"]["addresses"][0]["address"], "127.0.0.1");
    assert_eq!(
        n["status"]["nodeInfo"]["containerRuntimeVersion"],
        "berth://0.1.0"
    );
    assert_eq!(
        n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        10250
    );
    assert_eq!(condition(&n, "Ready")["reason"], "KubeletReady");
    assert!(condition(&n, "MemoryPressure")["reason"].is_string());
    assert_eq!(
        condition(&n, "PIDPressure")["reason"],
        "KubeletHasSufficientPID"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_not_ready_then_ready_again() {
    let r = start().await;
    wait_for("a Ready node", Duration::from_secs(20), || {
        r.api
            .get("nodes", "", NODE)
            .is_some_and(|n| condition(&n, "Ready")["status"] == "True")
    })
    .await;
    r.runtime.network_down.store(true, Ordering::SeqCst);
    wait_for("NotReady", Duration::from_secs(20), || {
        r.api
            .get("nodes", "", NODE)
            .is_some_and(|n| condition(&n, "Ready")["status"] == "False")
    })
    .await;
    let n = r.api.get("nodes", "", NODE).unwrap();
    assert_eq!(
        condition(&n, "Ready")["message"],
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni config uninitialized"
    );
    r.runtime.network_down.store(false, Ordering::SeqCst);
    wait_for("Ready again", Duration::from_secs(20), || {
        r.api.get("nodes", "", NODE).is_some_and(|n| {
            let c = condition(&n, "Ready");
            c["status"] == "True" && c["reason"] == "KubeletReady"
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_node_comes_back_and_the_lease_renews() {
    let r = start().await;
    wait_for("the Lease", Duration::from_secs(20), || {
        r.api
            .get("leases.coordination.k8s.io", "kube-node-lease", NODE)
            .is_some()
    })
    .await;
    let node = r.api.get("nodes", "", NODE).unwrap();
    let lease = r
        .api
        .get("leases.coordination.k8s.io", "kube-node-lease", NODE)
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], NODE);
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 4);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(
        lease["metadata"]["ownerReferences"][0]["uid"],
        node["metadata"]["uid"]
    );
    let renewed = lease["spec"]["renewTime"].clone();
    wait_for("a renewal", Duration::from_secs(10), || {
        r.api
            .get("leases.coordination.k8s.io", "kube-node-lease", NODE)
            .is_some_and(|l| l["spec"]["renewTime"] != renewed)
    })
    .await;

    let uid = node["metadata"]["uid"].clone();
    r.api.remove("nodes", "", NODE);
    wait_for("the Node registered again", Duration::from_secs(20), || {
        r.api
            .get("nodes", "", NODE)
            .is_some_and(|n| n["metadata"]["uid"] != uid)
    })
    .await;
}
