//! The IO of the node status: registerWithAPIServer, updateNodeStatus and updateRuntimeUp
//! against the API and the runtime. Every error is logged and retried; nothing here
//! ends the loop.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::Node;
use kube::api::{GetParams, Patch, PatchParams, PostParams};
use tracing::Instrument;

use super::conditions::StatusEvent;
use super::patch::node_status_patch;
use super::register::{initial_node, reconcile_existing};
use super::runtime_state::{RUNTIME_UP_PERIOD, RuntimeState};
use super::setters::RuntimeVersion;
use super::update::{StatusInputs, pod_cidrs, set_node_status, update_node};
use super::{NODE_STATUS_UPDATE_RETRY, NodeStatus, NodeStatusError};
use crate::kubelet::EventKind;

/// registerWithAPIServer's backoff: from 100 ms, doubling, at most 7 s.
const REGISTER_FIRST_STEP: Duration = Duration::from_millis(100);
const REGISTER_MAX_STEP: Duration = Duration::from_secs(7);

/// What the status loop carries from one update to the next.
#[derive(Debug, Default)]
pub(super) struct LoopState {
    registered: bool,
    last_report: Option<Instant>,
    /// The pod CIDRs last handed to the runtime.
    pod_cidr: Option<String>,
    /// The runtime's name from its last Version answer.
    runtime_type: String,
}

/// `period` plus up to 4% (wait.JitterUntil with factor 0.04).
pub(crate) fn jittered(period: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        f64::from(u16::from_ne_bytes(b)) / f64::from(u16::MAX)
    } else {
        0.5
    };
    period + period.mul_f64(0.04 * r)
}

/// The facts of one update read from the host and the runtime.
struct Facts {
    machine: super::setters::MachineInfo,
    runtime_version: Option<RuntimeVersion>,
    pressure: super::host::PressureSignals,
    runtime_errors: Vec<String>,
}

impl NodeStatus {
    /// Runs until its task is aborted: the runtime check every 5 s and the node status
    /// every update period, the first right away.
    pub async fn run(self) {
        let span = tracing::info_span!("node_status", node = %self.node_name());
        async move {
            self.record(EventKind::Normal, "Starting", "Starting kubelet.".into());
            let state = Mutex::new(RuntimeState::default());
            // One Status call first, so the first report knows whether the runtime is up.
            self.runtime_up(&state).await;
            tokio::join!(self.runtime_up_loop(&state), self.status_loop(&state));
        }
        .instrument(span)
        .await
    }

    async fn runtime_up_loop(&self, state: &Mutex<RuntimeState>) {
        loop {
            tokio::time::sleep(RUNTIME_UP_PERIOD).await;
            self.runtime_up(state).await;
        }
    }

    /// updateRuntimeUp: one CRI Status call.
    pub(super) async fn runtime_up(&self, state: &Mutex<RuntimeState>) {
        let ans = tokio::time::timeout(
            RUNTIME_UP_PERIOD,
            self.runtime.status(cri::StatusRequest { verbose: false }),
        )
        .await;
        let status = match ans {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "Container runtime sanity check failed");
                None
            }
            Err(_) => {
                tracing::error!("Container runtime sanity check failed: no answer in time");
                None
            }
        };
        if let Ok(mut st) = state.lock() {
            st.observe(status.as_ref(), Instant::now());
        }
    }

    async fn status_loop(&self, state: &Mutex<RuntimeState>) {
        let mut ls = LoopState {
            runtime_type: self.cfg.runtime_name.clone(),
            ..LoopState::default()
        };
        loop {
            self.sync_node_status(&mut ls, state).await;
            tokio::time::sleep(jittered(self.cfg.update_frequency)).await;
        }
    }

    /// syncNodeStatus: register when not registered, then update; a Node found deleted
    /// is registered again at once.
    pub(super) async fn sync_node_status(&self, ls: &mut LoopState, state: &Mutex<RuntimeState>) {
        if !ls.registered {
            self.register(ls, state).await;
        }
        match self.update_node_status(ls, state).await {
            Ok(()) => {}
            Err(NodeStatusError::NotFound { .. }) => {
                tracing::warn!("Node object is gone, registering it again");
                ls.registered = false;
                self.register(ls, state).await;
            }
            Err(e) => tracing::error!(error = %e, "Unable to update node status"),
        }
    }

    /// One API call with the update period as its deadline.
    async fn call<T>(
        &self,
        verb: &'static str,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, NodeStatusError> {
        let node = self.node_name().to_string();
        let after = self.cfg.update_frequency;
        match tokio::time::timeout(after, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(kube::Error::Api(s))) if s.is_not_found() => {
                Err(NodeStatusError::NotFound { node })
            }
            Ok(Err(source)) => Err(NodeStatusError::Api { node, verb, source }),
            Err(_) => Err(NodeStatusError::Timeout { node, verb, after }),
        }
    }

    async fn facts(&self, ls: &mut LoopState, state: &Mutex<RuntimeState>) -> Facts {
        let req = cri::VersionRequest {
            version: "0.1.0".into(),
        };
        let runtime_version =
            match tokio::time::timeout(RUNTIME_UP_PERIOD, self.runtime.version(req)).await {
                Ok(Ok(v)) => {
                    ls.runtime_type = v.runtime_name.clone();
                    Some(RuntimeVersion {
                        name: v.runtime_name,
                        version: v.runtime_version,
                    })
                }
                _ => None,
            };
        let host = self.host.clone();
        let (machine, pressure) =
            tokio::task::spawn_blocking(move || (host.machine_info(), host.pressure()))
                .await
                .unwrap_or_default();
        let runtime_errors = state
            .lock()
            .map(|s| s.errors(Instant::now()))
            .unwrap_or_default();
        Facts {
            machine,
            runtime_version,
            pressure,
            runtime_errors,
        }
    }

    fn inputs<'a>(&'a self, f: &'a Facts, ls: &'a LoopState) -> StatusInputs<'a> {
        StatusInputs {
            hostname: &self.cfg.registration.hostname,
            node_ips: &self.cfg.node_ips,
            max_pods: self.cfg.max_pods,
            reservation: &self.cfg.reservation,
            kubelet_version: &self.cfg.kubelet_version,
            kubelet_port: self.cfg.kubelet_port,
            machine: &f.machine,
            runtime_version: f.runtime_version.as_ref(),
            runtime_type: &ls.runtime_type,
            runtime_errors: &f.runtime_errors,
            pressure: f.pressure,
            now: crate::kubelet::status::now(),
        }
    }

    fn record_status_events(&self, events: Vec<StatusEvent>) {
        for e in events {
            let message = format!("Node {} status is now: {}", self.node_name(), e.reason);
            self.record(e.kind, e.reason, message);
        }
    }

    fn publish(&self, node: Node) {
        self.tx.send_replace(Some(Arc::new(node)));
    }

    /// registerWithAPIServer: tries until the Node is registered, backing off.
    async fn register(&self, ls: &mut LoopState, state: &Mutex<RuntimeState>) {
        let mut step = REGISTER_FIRST_STEP;
        loop {
            tokio::time::sleep(step).await;
            step = (step * 2).min(REGISTER_MAX_STEP);
            match self.try_register(ls, state).await {
                Ok(()) => {
                    tracing::info!("Successfully registered node");
                    ls.registered = true;
                    return;
                }
                Err(e) => tracing::error!(error = %e, "Unable to register node with API server"),
            }
        }
    }

    /// tryRegisterWithAPIServer: create the Node; if it exists, reconcile kubelet's
    /// fields of it and patch them when they differ.
    async fn try_register(
        &self,
        ls: &mut LoopState,
        state: &Mutex<RuntimeState>,
    ) -> Result<(), NodeStatusError> {
        let facts = self.facts(ls, state).await;
        let mut node = initial_node(&self.cfg.registration);
        let events = set_node_status(&mut node, &self.inputs(&facts, ls));
        self.record_status_events(events);
        let name = self.node_name().to_string();
        match self
            .call("create", self.nodes.create(&PostParams::default(), &node))
            .await
        {
            Ok(created) => {
                self.publish(created);
                return Ok(());
            }
            Err(NodeStatusError::Api {
                source: kube::Error::Api(s),
                ..
            }) if s.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        let existing = self.call("get", self.nodes.get(&name)).await?;
        let mut wanted = existing.clone();
        if reconcile_existing(&node, &mut wanted) {
            let patched = self.patch_status(&existing, &wanted).await?;
            self.publish(patched);
        } else {
            self.publish(existing);
        }
        Ok(())
    }

    /// PatchNodeStatus with only what changed.
    async fn patch_status(&self, old: &Node, new: &Node) -> Result<Node, NodeStatusError> {
        let patch = node_status_patch(old, new).unwrap_or_else(|| serde_json::json!({}));
        let name = self.node_name();
        self.call(
            "patch status",
            self.nodes
                .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)),
        )
        .await
    }

    /// updateNodeStatus: up to five tries; a deleted Node ends them at once.
    async fn update_node_status(
        &self,
        ls: &mut LoopState,
        state: &Mutex<RuntimeState>,
    ) -> Result<(), NodeStatusError> {
        for try_number in 0..NODE_STATUS_UPDATE_RETRY {
            match self.try_update_node_status(ls, state, try_number).await {
                Ok(()) => return Ok(()),
                Err(e @ NodeStatusError::NotFound { .. }) => return Err(e),
                Err(e) => tracing::error!(error = %e, "Error updating node status, will retry"),
            }
        }
        Err(NodeStatusError::Retries {
            node: self.node_name().to_string(),
        })
    }

    /// tryUpdateNodeStatus: read the Node (the first try from the API server's cache),
    /// compute its status, and patch it when it changed or the report is due.
    async fn try_update_node_status(
        &self,
        ls: &mut LoopState,
        state: &Mutex<RuntimeState>,
        try_number: usize,
    ) -> Result<(), NodeStatusError> {
        let gp = if try_number == 0 {
            GetParams::any()
        } else {
            GetParams::default()
        };
        let original = self
            .call("get", self.nodes.get_with(self.node_name(), &gp))
            .await?;
        let cidr_changed = self.update_pod_cidr(ls, &original).await;
        let facts = self.facts(ls, state).await;
        let (node, changed, events) =
            update_node(&original, &self.inputs(&facts, ls), cidr_changed);
        self.record_status_events(events);
        let due = ls
            .last_report
            .is_none_or(|t| t.elapsed() >= self.cfg.report_frequency);
        if !changed && !due {
            self.publish(original);
            return Ok(());
        }
        let updated = self.patch_status(&original, &node).await?;
        ls.last_report = Some(Instant::now());
        self.publish(updated);
        Ok(())
    }

    /// updatePodCIDR: a new spec.podCIDRs is handed to the runtime (UpdateRuntimeConfig);
    /// true when it changed and was taken.
    async fn update_pod_cidr(&self, ls: &mut LoopState, node: &Node) -> bool {
        let Some(cidr) = pod_cidrs(node) else {
            return false;
        };
        if ls.pod_cidr.as_deref() == Some(cidr.as_str()) {
            return false;
        }
        let req = cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: cidr.clone(),
                }),
            }),
        };
        match self.runtime.update_runtime_config(req).await {
            Ok(_) => {
                tracing::info!(pod_cidr = %cidr, "Updated Pod CIDR");
                ls.pod_cidr = Some(cidr);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, pod_cidr = %cidr, "Failed to update pod CIDR");
                false
            }
        }
    }
}
