//! The loop against the recording fake API server: registration, patches only on
//! change, reconciliation of an existing Node, re-registration after a delete, and
//! failures that are retried, not fatal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cri_proto::v1 as cri;
use serde_json::json;

use super::fake_api::FakeApi;
use super::host::{HostInfo, PressureSignals};
use super::runtime_state::RuntimeState;
use super::setters::MachineInfo;
use super::sync::LoopState;
use super::*;
use crate::cri::api::{CriFuture, RuntimeApi};

/// A runtime whose network readiness the test switches.
#[derive(Default)]
struct FakeRuntime {
    network_down: AtomicBool,
    pod_cidrs: Mutex<Vec<String>>,
}

impl RuntimeApi for FakeRuntime {
    fn version(&self, _: cri::VersionRequest) -> CriFuture<'_, cri::VersionResponse> {
        Box::pin(async {
            Ok(cri::VersionResponse {
                runtime_name: "fake".into(),
                runtime_version: "1.2.3".into(),
                ..Default::default()
            })
        })
    }
    fn status(&self, _: cri::StatusRequest) -> CriFuture<'_, cri::StatusResponse> {
        let down = self.network_down.load(Ordering::SeqCst);
        Box::pin(async move {
            let c = |t: &str, ok: bool| cri::RuntimeCondition {
                r#type: t.into(),
                status: ok,
                reason: if ok {
                    String::new()
                } else {
                    "NetworkPluginNotReady".into()
                },
                message: if ok {
                    String::new()
                } else {
                    "no CNI config".into()
                },
            };
            Ok(cri::StatusResponse {
                status: Some(cri::RuntimeStatus {
                    conditions: vec![c("RuntimeReady", true), c("NetworkReady", !down)],
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
        req: cri::UpdateRuntimeConfigRequest,
    ) -> CriFuture<'_, cri::UpdateRuntimeConfigResponse> {
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr);
        self.pod_cidrs.lock().unwrap().extend(cidr);
        Box::pin(async { Ok(Default::default()) })
    }
}

struct FixedHost;

impl HostInfo for FixedHost {
    fn machine_info(&self) -> MachineInfo {
        MachineInfo {
            num_cores: 2,
            memory_capacity: 4 << 30,
            rootfs_capacity: Some(20 << 30),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            ..Default::default()
        }
    }
    fn pressure(&self) -> PressureSignals {
        PressureSignals::default()
    }
}

struct Harness {
    api: FakeApi,
    rt: Arc<FakeRuntime>,
    ns: NodeStatus,
    rx: NodeWatch,
    events: mpsc::UnboundedReceiver<NodeEvent>,
    ls: LoopState,
    state: Mutex<RuntimeState>,
}

fn harness(report: Duration) -> Harness {
    let api = FakeApi::default();
    let rt = Arc::new(FakeRuntime::default());
    let mut cfg = NodeStatusConfig::new("n1", "n1", vec!["10.0.0.5".parse().unwrap()]);
    cfg.registration
        .node_labels
        .insert("role".into(), "edge".into());
    cfg.report_frequency = report;
    let (tx, events) = mpsc::unbounded_channel();
    let (ns, rx) = NodeStatus::new(
        cfg,
        api.client(),
        rt.clone(),
        Arc::new(FixedHost),
        Arc::new(tx),
    );
    Harness {
        api,
        rt,
        ns,
        rx,
        events,
        ls: LoopState::default(),
        state: Mutex::new(RuntimeState::default()),
    }
}

impl Harness {
    async fn sync(&mut self) {
        self.ns.runtime_up(&self.state).await;
        self.ns.sync_node_status(&mut self.ls, &self.state).await;
    }

    fn calls(&self) -> Vec<String> {
        self.api
            .state()
            .seen
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    fn clear(&self) {
        self.api.state().seen.clear();
    }

    fn reasons(&mut self) -> Vec<&'static str> {
        let mut v = vec![];
        while let Ok(e) = self.events.try_recv() {
            v.push(e.reason);
        }
        v
    }

    fn ready(&self) -> serde_json::Value {
        let st = self.api.state();
        st.nodes["n1"]["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
            .clone()
    }
}

#[tokio::test(start_paused = true)]
async fn registers_then_patches_only_on_change() {
    let mut h = harness(Duration::from_secs(300));
    h.sync().await;
    assert_eq!(
        h.calls(),
        [
            "POST /api/v1/nodes",
            "GET /api/v1/nodes/n1",
            "PATCH /api/v1/nodes/n1/status"
        ],
        "registration, then the first report"
    );
    {
        let st = h.api.state();
        let n = &st.nodes["n1"];
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert_eq!(n["metadata"]["labels"]["role"], "edge");
        assert_eq!(n["status"]["capacity"]["pods"], "110");
        assert_eq!(
            n["status"]["nodeInfo"]["containerRuntimeVersion"],
            "fake://1.2.3"
        );
        assert_eq!(
            n["status"]["addresses"][0],
            json!({"type": "InternalIP", "address": "10.0.0.5"})
        );
    }
    assert_eq!(h.ready()["reason"], "KubeletReady");
    let reasons = h.reasons();
    assert_eq!(
        reasons,
        [
            "NodeHasSufficientMemory",
            "NodeHasNoDiskPressure",
            "NodeHasSufficientPID"
        ]
    );
    assert_eq!(
        h.rx.borrow().as_ref().unwrap().metadata.name.as_deref(),
        Some("n1")
    );

    h.clear();
    h.sync().await;
    assert_eq!(
        h.calls(),
        ["GET /api/v1/nodes/n1"],
        "nothing changed: no patch"
    );

    h.rt.network_down.store(true, Ordering::SeqCst);
    h.clear();
    h.sync().await;
    assert_eq!(
        h.calls(),
        ["GET /api/v1/nodes/n1", "PATCH /api/v1/nodes/n1/status"]
    );
    let ready = h.ready();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "KubeletNotReady");
    assert_eq!(
        ready["message"],
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:no CNI config"
    );
    assert_eq!(h.reasons(), ["NodeNotReady"]);
    // The patch carried only what changed.
    let patch = h.api.state().seen.last().unwrap().body.clone();
    assert!(patch["status"].get("capacity").is_none(), "{patch}");
    assert!(patch.get("spec").is_none(), "{patch}");
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_status_is_reported_when_the_period_passed() {
    let mut h = harness(Duration::ZERO);
    h.sync().await;
    h.clear();
    h.sync().await;
    assert_eq!(
        h.calls(),
        ["GET /api/v1/nodes/n1", "PATCH /api/v1/nodes/n1/status"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleted_node_is_registered_again() {
    let mut h = harness(Duration::from_secs(300));
    h.sync().await;
    let uid = h.api.state().nodes["n1"]["metadata"]["uid"].clone();
    h.api.state().nodes.clear();
    h.clear();
    h.sync().await;
    assert_eq!(h.calls(), ["GET /api/v1/nodes/n1", "POST /api/v1/nodes"]);
    assert_ne!(h.api.state().nodes["n1"]["metadata"]["uid"], uid);
}

#[tokio::test(start_paused = true)]
async fn an_existing_node_is_reconciled_not_replaced() {
    let mut h = harness(Duration::from_secs(300));
    h.api.state().nodes.insert(
        "n1".into(),
        json!({"metadata": {"name": "n1", "uid": "old", "resourceVersion": "1",
            "labels": {"kubernetes.io/hostname": "stale", "team": "a"}},
            "spec": {"podCIDR": "10.244.3.0/24", "taints": [{"key": "k", "effect": "NoSchedule"}]}}),
    );
    h.sync().await;
    let calls = h.calls();
    assert_eq!(
        &calls[..3],
        [
            "POST /api/v1/nodes",
            "GET /api/v1/nodes/n1",
            "PATCH /api/v1/nodes/n1/status"
        ]
    );
    let st = h.api.state();
    let n = &st.nodes["n1"];
    assert_eq!(n["metadata"]["uid"], "old");
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
    assert_eq!(n["metadata"]["labels"]["team"], "a");
    assert!(
        n["metadata"]["labels"].get("role").is_none(),
        "--node-labels only at creation"
    );
    assert_eq!(n["spec"]["taints"][0]["key"], "k");
    drop(st);
    assert_eq!(*h.rt.pod_cidrs.lock().unwrap(), ["10.244.3.0/24"]);
    let node = h.rx.borrow().clone().unwrap();
    assert_eq!(
        node.spec.as_ref().unwrap().pod_cidr.as_deref(),
        Some("10.244.3.0/24")
    );
}

#[tokio::test(start_paused = true)]
async fn api_failures_are_retried_not_fatal() {
    let mut h = harness(Duration::from_secs(300));
    h.api.state().fail_next = 3;
    h.sync().await;
    let calls = h.calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "POST /api/v1/nodes").count(),
        4,
        "{calls:?}"
    );
    assert!(h.api.state().nodes.contains_key("n1"));
    // Failing updates: five tries, then the next period.
    h.clear();
    h.api.state().fail_next = 5;
    h.sync().await;
    assert_eq!(h.calls().len(), 5);
    h.clear();
    h.sync().await;
    assert_eq!(
        h.calls(),
        ["GET /api/v1/nodes/n1"],
        "reported before the failures"
    );
}

#[tokio::test(start_paused = true)]
async fn run_says_starting_registers_and_keeps_going() {
    let h = harness(Duration::from_secs(300));
    let (tx, mut events) = mpsc::unbounded_channel();
    let (ns, _) = NodeStatus::new(
        NodeStatusConfig::new("n1", "n1", vec!["10.0.0.5".parse().unwrap()]),
        h.api.client(),
        h.rt.clone(),
        Arc::new(FixedHost),
        Arc::new(tx),
    );
    let mut rx = ns.subscribe();
    let task = tokio::spawn(ns.run());
    rx.changed().await.unwrap();
    assert!(h.api.state().nodes.contains_key("n1"));
    let first = events.recv().await.unwrap();
    assert_eq!(
        (first.reason, first.message.as_str()),
        ("Starting", "Starting kubelet.")
    );
    tokio::time::sleep(Duration::from_secs(35)).await;
    let gets = h
        .calls()
        .iter()
        .filter(|c| *c == "GET /api/v1/nodes/n1")
        .count();
    assert!(gets >= 3, "an update every 10 s: {gets}");
    task.abort();
}
