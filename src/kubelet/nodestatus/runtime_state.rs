//! What the kubelet last learned of the runtime's health (upstream pkg/kubelet/runtime.go
//! and updateRuntimeUp): the CRI Status call every 5 s sets the runtime and network
//! errors; a runtime not heard from for 30 s is down. The Ready condition reads them.

use std::time::{Duration, Instant};

use cri_proto::v1 as cri;

/// How often updateRuntimeUp asks the runtime for its status.
pub const RUNTIME_UP_PERIOD: Duration = Duration::from_secs(5);
/// maxWaitForContainerRuntime: a runtime silent for longer is down.
pub const MAX_WAIT_FOR_CONTAINER_RUNTIME: Duration = Duration::from_secs(30);

/// The runtime's state as the node status sees it.
#[derive(Debug, Clone, Default)]
pub struct RuntimeState {
    last_base_runtime_sync: Option<Instant>,
    runtime_error: Option<String>,
    network_error: Option<String>,
}

/// RuntimeCondition.String(): `NetworkReady=false reason:X message:Y`, or `<nil>`.
fn describe(c: Option<&cri::RuntimeCondition>) -> String {
    match c {
        Some(c) => format!(
            "{}={} reason:{} message:{}",
            c.r#type, c.status, c.reason, c.message
        ),
        None => "<nil>".into(),
    }
}

impl RuntimeState {
    /// updateRuntimeUp with the answer of one Status call. A failed call changes
    /// nothing: the runtime goes down only when it stays silent past the threshold.
    pub fn observe(&mut self, status: Option<&cri::StatusResponse>, now: Instant) {
        let Some(s) = status else { return };
        let conds: &[cri::RuntimeCondition] =
            s.status.as_ref().map_or(&[], |st| st.conditions.as_slice());
        let find = |t: &str| conds.iter().find(|c| c.r#type == t);
        let network = find("NetworkReady");
        self.network_error = (!network.is_some_and(|c| c.status))
            .then(|| format!("container runtime network not ready: {}", describe(network)));
        let runtime = find("RuntimeReady");
        if !runtime.is_some_and(|c| c.status) {
            self.runtime_error = Some(format!(
                "container runtime not ready: {}",
                describe(runtime)
            ));
            return;
        }
        self.runtime_error = None;
        self.last_base_runtime_sync = Some(now);
    }

    /// runtimeErrors then networkErrors, as the Ready condition aggregates them.
    pub fn errors(&self, now: Instant) -> Vec<String> {
        let mut errs = vec![];
        match self.last_base_runtime_sync {
            None => errs.push("container runtime status check may not have completed yet".into()),
            Some(t) if t + MAX_WAIT_FOR_CONTAINER_RUNTIME <= now => {
                errs.push("container runtime is down".into())
            }
            Some(_) => {}
        }
        errs.extend(self.runtime_error.clone());
        errs.extend(self.network_error.clone());
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(runtime: bool, network: bool) -> cri::StatusResponse {
        let c = |t: &str, ok: bool, reason: &str, msg: &str| cri::RuntimeCondition {
            r#type: t.into(),
            status: ok,
            reason: reason.into(),
            message: msg.into(),
        };
        cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    c("RuntimeReady", runtime, "", ""),
                    c(
                        "NetworkReady",
                        network,
                        "NetworkPluginNotReady",
                        "Network plugin returns error: cni plugin not initialized",
                    ),
                ],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn not_checked_yet() {
        let s = RuntimeState::default();
        assert_eq!(
            s.errors(Instant::now()),
            ["container runtime status check may not have completed yet"]
        );
    }

    #[test]
    fn network_not_ready_carries_the_condition() {
        let mut s = RuntimeState::default();
        let now = Instant::now();
        s.observe(Some(&status(true, false)), now);
        assert_eq!(
            s.errors(now),
            [
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
            ]
        );
        s.observe(Some(&status(true, true)), now);
        assert!(s.errors(now).is_empty());
    }

    #[test]
    fn runtime_not_ready_and_missing_conditions() {
        let mut s = RuntimeState::default();
        let now = Instant::now();
        s.observe(Some(&cri::StatusResponse::default()), now);
        assert_eq!(
            s.errors(now),
            [
                "container runtime status check may not have completed yet",
                "container runtime not ready: <nil>",
                "container runtime network not ready: <nil>",
            ]
        );
    }

    #[test]
    fn silent_runtime_goes_down_after_the_threshold() {
        let mut s = RuntimeState::default();
        let t0 = Instant::now();
        s.observe(Some(&status(true, true)), t0);
        s.observe(None, t0 + Duration::from_secs(10));
        assert!(s.errors(t0 + Duration::from_secs(29)).is_empty());
        assert_eq!(
            s.errors(t0 + MAX_WAIT_FOR_CONTAINER_RUNTIME),
            ["container runtime is down"]
        );
    }
}
