//! The Node object of this kubelet, as upstream kubelet_node_status.go keeps it: register
//! it (creating it, or reconciling kubelet's fields of an existing one), then every 10 s
//! compute its status and PATCH nodes/status when it changed or when 5 minutes passed
//! since the last report; register again when the Node was deleted. The runtime's
//! readiness is asked over CRI Status every 5 s (updateRuntimeUp).
//!
//! It owns the Node's status and the labels and annotation kubelet reconciles; it never
//! writes the spec (podCIDR and taints belong to the control plane after registration).
//! The latest Node as the API holds it is published on a watch channel for admission
//! (labels, allocatable, taints) and the network (podCIDR). The Lease is
//! [`crate::kubelet::nodelease`].
//!
//! Pure parts: [`setters`], [`conditions`], [`register`], [`update`], [`patch`],
//! [`resources`], [`runtime_state`]; the host is read by [`host`]; the loop is `sync`.

pub mod conditions;
pub mod flags;
pub mod host;
pub mod patch;
pub mod register;
pub mod resources;
pub mod runtime_state;
pub mod setters;
mod sync;
pub mod update;

#[cfg(test)]
pub(crate) mod fake_api;
#[cfg(test)]
mod sync_tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference};
use tokio::sync::{mpsc, watch};

use crate::cri::api::RuntimeApi;
use crate::kubelet::EventKind;

pub use flags::{FlagError, parse_eviction_hard, parse_node_labels, parse_reserved, parse_taints};
pub use host::{Host, HostInfo, PressureSignals};
pub use register::Registration;
pub use resources::{EvictionHard, Reservation, ThresholdValue};
pub(crate) use sync::jittered;

/// nodeStatusUpdateFrequency: how often the status is computed.
pub const NODE_STATUS_UPDATE_FREQUENCY: Duration = Duration::from_secs(10);
/// nodeStatusReportFrequency: an unchanged status is still reported this often.
pub const NODE_STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(300);
/// nodeStatusUpdateRetry: tries per update before giving up until the next period.
pub const NODE_STATUS_UPDATE_RETRY: usize = 5;
/// The kubelet API's port (DaemonEndpoints).
pub const KUBELET_PORT: i32 = 10250;
/// maxPods' default.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// What the node status needs to know that is not read from the host or the runtime.
#[derive(Debug, Clone)]
pub struct NodeStatusConfig {
    /// Node name, hostname, --node-labels, --register-with-taints.
    pub registration: Registration,
    /// --node-ip (one, or one per family), else the host's first address.
    pub node_ips: Vec<IpAddr>,
    /// --max-pods.
    pub max_pods: i64,
    /// --kube-reserved, --system-reserved and the hard eviction thresholds.
    pub reservation: Reservation,
    /// The kubelet version the Node reports (`v` and a semantic version).
    pub kubelet_version: String,
    /// The runtime's name, for `<name>://Unknown` while its Version call fails.
    pub runtime_name: String,
    pub kubelet_port: i32,
    pub update_frequency: Duration,
    pub report_frequency: Duration,
}

impl NodeStatusConfig {
    /// Upstream's defaults for a node of this name and hostname.
    pub fn new(node_name: &str, hostname: &str, node_ips: Vec<IpAddr>) -> Self {
        NodeStatusConfig {
            registration: Registration {
                node_name: node_name.into(),
                hostname: hostname.into(),
                ..Default::default()
            },
            node_ips,
            max_pods: DEFAULT_MAX_PODS,
            reservation: Reservation::default(),
            kubelet_version: format!("v{}", crate::version::VERSION),
            runtime_name: String::new(),
            kubelet_port: KUBELET_PORT,
            update_frequency: NODE_STATUS_UPDATE_FREQUENCY,
            report_frequency: NODE_STATUS_REPORT_FREQUENCY,
        }
    }
}

/// What went wrong talking to the API about the Node; the loop logs it and carries on.
#[derive(Debug, thiserror::Error)]
pub enum NodeStatusError {
    #[error("node {node}: {verb}: {source}")]
    Api {
        node: String,
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("node {node}: {verb}: no answer within {after:?}")]
    Timeout {
        node: String,
        verb: &'static str,
        after: Duration,
    },
    /// The Node object is gone; it will be registered again.
    #[error("node {node} not found")]
    NotFound { node: String },
    #[error("node {node}: update node status exceeds retry count")]
    Retries { node: String },
}

/// A node event: `kind`, upstream's `reason` and message, on the Node
/// ([`node_reference`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub kind: EventKind,
    pub reason: &'static str,
    pub message: String,
}

/// Where node events go (the events sink posts them as Event objects on
/// [`node_reference`]).
pub trait NodeEventSink: Send + Sync + 'static {
    fn record(&self, event: NodeEvent);
}

impl NodeEventSink for mpsc::UnboundedSender<NodeEvent> {
    fn record(&self, event: NodeEvent) {
        // No receiver left: the event was already logged.
        let _ = self.send(event);
    }
}

/// The object node events are about, as kubelet's nodeRef: kind Node, the node's name,
/// and (as upstream) the name again as the UID.
pub fn node_reference(node_name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(node_name.into()),
        uid: Some(node_name.into()),
        ..Default::default()
    }
}

/// The latest Node as the API holds it; `None` until the first registration or read.
pub type NodeWatch = watch::Receiver<Option<Arc<Node>>>;

/// The node status loop; [`NodeStatus::run`] never returns (abort its task to stop it).
pub struct NodeStatus {
    cfg: NodeStatusConfig,
    nodes: kube::Api<Node>,
    runtime: Arc<dyn RuntimeApi>,
    host: Arc<dyn HostInfo>,
    events: Arc<dyn NodeEventSink>,
    tx: watch::Sender<Option<Arc<Node>>>,
}

impl std::fmt::Debug for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStatus")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl NodeStatus {
    /// The loop for `cfg`'s node, and the watch of the Node it keeps. `runtime` is the
    /// runtime's [`crate::kubelet::Runtime::info`].
    pub fn new(
        cfg: NodeStatusConfig,
        client: kube::Client,
        runtime: Arc<dyn RuntimeApi>,
        host: Arc<dyn HostInfo>,
        events: Arc<dyn NodeEventSink>,
    ) -> (Self, NodeWatch) {
        let (tx, rx) = watch::channel(None);
        let me = NodeStatus {
            cfg,
            nodes: kube::Api::all(client),
            runtime,
            host,
            events,
            tx,
        };
        (me, rx)
    }

    /// Another receiver of the latest Node.
    pub fn subscribe(&self) -> NodeWatch {
        self.tx.subscribe()
    }

    fn node_name(&self) -> &str {
        &self.cfg.registration.node_name
    }

    /// Records an event as recordNodeStatusEvent does ("Node n1 status is now: ...").
    fn record(&self, kind: EventKind, reason: &'static str, message: String) {
        tracing::info!(node = %self.node_name(), reason, "{message}");
        self.events.record(NodeEvent {
            kind,
            reason,
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_events_are_about_the_node_by_name() {
        let r = node_reference("n1");
        assert_eq!(
            (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("Node"), Some("n1"), Some("n1"))
        );
    }
}
