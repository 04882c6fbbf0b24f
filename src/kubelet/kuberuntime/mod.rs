//! The kubelet's side of the container runtime (upstream's pkg/kubelet/kuberuntime):
//! what the runtime holds of a pod ([`status`]), what a sync must do ([`actions`]), the
//! sandbox and container configs ([`sandbox`], [`container`], [`security`], [`dns`]),
//! the labels that are the kubelet's memory across restarts ([`labels`]), back-off
//! ([`backoff`]).

pub mod actions;
pub mod backoff;
pub mod container;
pub mod dns;
pub mod labels;
pub mod sandbox;
pub mod security;
pub mod status;
