//! A pod worker's state machine (kubelet's pod_workers.go), as an enum and a pure step
//! function.
//!
//! ```text
//!  Syncing ──(pod removed, or it finished, or its deadline passed)──> Terminating
//!  Terminating ──(every container and the sandbox stopped)──> Terminated
//!  Terminated ──(pod removed)──> cleaned up: containers, sandbox, volumes, cgroup gone
//! ```
//!
//! A pod never goes back: an update to a terminating pod changes nothing but its grace
//! period, which can only shorten.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// Where a pod worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The pod should run: each sync brings the runtime to the spec.
    Syncing,
    /// The pod's containers are being stopped, within the grace period.
    Terminating,
    /// Nothing of the pod runs; its objects stay until the pod is removed.
    Terminated,
}

/// What reaches a worker.
#[derive(Debug, Clone)]
pub enum Update {
    /// The desired pod (new or changed).
    Sync(Arc<Pod>),
    /// The pod was removed from its source: terminate with this grace (None: the pod's).
    Remove { grace: Option<i64> },
    /// The sync found the pod finished (Succeeded, Failed, past its deadline).
    Finished,
    /// Every container and the sandbox are stopped.
    Killed,
}

/// A worker's state.
#[derive(Debug, Clone)]
pub struct State {
    pub phase: Phase,
    /// Shared with the desired set it came from.
    pub pod: Arc<Pod>,
    /// Removed from its source: clean up once terminated.
    pub removed: bool,
    /// The grace period of the termination, once it is decided.
    pub grace: Option<i64>,
}

impl State {
    pub fn new(pod: Arc<Pod>) -> Self {
        State {
            phase: Phase::Syncing,
            pod,
            removed: false,
            grace: None,
        }
    }
}

fn shorter(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The next state after an update.
pub fn step(s: &State, u: Update) -> State {
    let mut n = s.clone();
    match u {
        Update::Sync(pod) => {
            // A terminating or terminated pod keeps its course; only the spec it reports
            // changes.
            n.pod = pod;
        }
        Update::Remove { grace } => {
            n.removed = true;
            let spec_grace = s
                .pod
                .spec
                .as_ref()
                .and_then(|sp| sp.termination_grace_period_seconds);
            match s.phase {
                Phase::Syncing => {
                    n.phase = Phase::Terminating;
                    n.grace = grace.or(spec_grace);
                }
                Phase::Terminating => n.grace = shorter(s.grace, grace),
                Phase::Terminated => {}
            }
        }
        Update::Finished => {
            if s.phase == Phase::Syncing {
                n.phase = Phase::Terminating;
            }
        }
        Update::Killed => {
            if s.phase == Phase::Terminating {
                n.phase = Phase::Terminated;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(grace: i64) -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"terminationGracePeriodSeconds": grace, "containers": []}
        }))
        .expect("pod")
    }

    #[test]
    fn a_grace_period_can_only_shorten() {
        let s = State::new(Arc::new(pod(30)));
        let s = step(&s, Update::Remove { grace: None });
        assert_eq!((s.phase, s.grace), (Phase::Terminating, Some(30)));
        let s = step(&s, Update::Remove { grace: Some(5) });
        assert_eq!(s.grace, Some(5));
        let s = step(&s, Update::Remove { grace: Some(20) });
        assert_eq!(s.grace, Some(5));
    }

    #[test]
    fn a_terminating_pod_never_syncs_again() {
        let s = step(&State::new(Arc::new(pod(30))), Update::Finished);
        assert_eq!(s.phase, Phase::Terminating);
        assert!(!s.removed);
        let s = step(&s, Update::Sync(Arc::new(pod(10))));
        assert_eq!(s.phase, Phase::Terminating);
        let s = step(&s, Update::Killed);
        assert_eq!(s.phase, Phase::Terminated);
        let s = step(&s, Update::Sync(Arc::new(pod(10))));
        assert_eq!(s.phase, Phase::Terminated);
        let s = step(&s, Update::Remove { grace: None });
        assert!(s.removed);
        assert_eq!(s.phase, Phase::Terminated);
    }

    #[test]
    fn killed_only_ends_a_termination() {
        let s = step(&State::new(Arc::new(pod(30))), Update::Killed);
        assert_eq!(s.phase, Phase::Syncing);
    }
}
