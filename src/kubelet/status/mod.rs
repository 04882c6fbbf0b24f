//! The pod status as the API shows it, computed as kubelet's generateAPIPodStatus does
//! (pkg/kubelet/kubelet_pods.go): container and init container statuses with their
//! states, reasons and last states ([`containers`]), the phase (getPhase, [`phase`]) and
//! the conditions ([`conditions`]). Pure: plain data in, a `PodStatus` out.

pub mod conditions;
pub mod containers;
pub mod manager;
pub mod patch;
pub mod phase;
pub mod store;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{HostIP, Pod, PodIP, PodStatus as ApiStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::kuberuntime::status::PodStatus;

/// A container's probe results as the status reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeView {
    pub container_id: String,
    pub ready: bool,
    pub started: bool,
}

/// Why a container waits, from the last sync (kubelet's reasonCache): CrashLoopBackOff,
/// ErrImagePull, ImagePullBackOff, CreateContainerConfigError, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// A pod-level end the worker decided (activeDeadlineSeconds: Failed / DeadlineExceeded).
#[derive(Debug, Clone, PartialEq)]
pub struct Terminal {
    pub phase: String,
    pub reason: String,
    pub message: String,
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub runtime: &'a PodStatus,
    pub probes: &'a BTreeMap<String, ProbeView>,
    pub waiting: &'a BTreeMap<String, Waiting>,
    pub previous: Option<&'a ApiStatus>,
    pub host_ips: &'a [String],
    /// The runtime's name, the scheme of container IDs (`containerd://...`).
    pub runtime_name: &'a str,
    pub terminal: Option<&'a Terminal>,
    pub start_time: Time,
    pub qos_class: &'a str,
    pub now: Time,
}

/// The pod's status.
pub fn generate(inp: &Inputs<'_>) -> ApiStatus {
    let spec = inp.pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    let init_statuses = containers::statuses(inp, &inits, true);
    let statuses = containers::statuses(inp, &spec.containers, false);
    let mut phase = phase::phase(inp.pod, &init_statuses, &statuses);
    let (mut reason, mut message) = (None, None);
    if let Some(t) = inp.terminal {
        phase = t.phase.clone();
        reason = Some(t.reason.clone());
        message = Some(t.message.clone());
    }
    // A pod that reached Succeeded or Failed stays there (a terminal phase is final).
    if let Some(prev) = inp.previous.and_then(|p| p.phase.as_deref())
        && matches!(prev, "Succeeded" | "Failed")
    {
        phase = prev.to_string();
        reason = inp.previous.and_then(|p| p.reason.clone()).or(reason);
        message = inp.previous.and_then(|p| p.message.clone()).or(message);
    }
    let host_network = spec.host_network == Some(true);
    // A host-network pod's IPs are the node's, as kubelet reports them.
    let pod_ips = match inp.runtime.ips() {
        ips if ips.is_empty() && host_network && !inp.runtime.sandboxes.is_empty() => {
            inp.host_ips.to_vec()
        }
        ips => ips,
    };
    let conds = conditions::conditions(inp, &phase, &init_statuses, &statuses);
    ApiStatus {
        phase: Some(phase),
        reason,
        message,
        conditions: Some(conds),
        host_ip: inp.host_ips.first().cloned(),
        host_ips: (!inp.host_ips.is_empty()).then(|| {
            inp.host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: Some(inp.start_time.clone()),
        qos_class: Some(inp.qos_class.to_string()),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

/// A CRI timestamp (nanoseconds) as an API time; 0 is none.
pub fn time(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        .map(|t| Time(truncate(t)))
}

/// API times are whole seconds.
fn truncate(t: k8s_openapi::jiff::Timestamp) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Now, as an API time.
pub fn now() -> Time {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    time(ns).unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

#[cfg(test)]
mod tests;
