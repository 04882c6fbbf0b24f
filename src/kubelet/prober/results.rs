//! Probe results per container, keyed by container ID as upstream's results manager
//! keys them: a result stored for an older container ID never answers for a newer one.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::Container;

/// A container of the pod as the pod worker last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub name: String,
    /// The runtime's container ID; a new ID is a new container and resets its results.
    pub id: String,
    /// When the container started running (initialDelaySeconds counts from it).
    pub started_at: SystemTime,
    pub running: bool,
}

/// What the probes say about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerProbes {
    pub container_id: String,
    /// Readiness: true when running, started, and either no readiness probe or its last
    /// verdict was success. False until the first success.
    pub ready: bool,
    /// Startup: true when running and either no startup probe or it succeeded.
    pub started: bool,
    /// Some once the liveness probe failed failureThreshold times in a row.
    pub liveness: Option<ProbeFailure>,
    /// Some once the startup probe gave up (failureThreshold failures).
    pub startup: Option<ProbeFailure>,
    /// The output of the last failed readiness probe while not ready, for the view.
    pub readiness_last: Option<String>,
}

/// A liveness or startup probe that gave up: the container has to be restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// The last probe's output, e.g. `HTTP probe failed with statuscode: 500`.
    pub message: String,
    /// The probe-level terminationGracePeriodSeconds, which overrides the pod's for
    /// this kill.
    pub grace_period: Option<i64>,
}

/// One probe's verdict (upstream's results.Result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Failure,
}

/// A stored verdict, and the failure it reports when it is a threshold failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub verdict: Verdict,
    pub failure: Option<ProbeFailure>,
}

impl Slot {
    pub fn plain(verdict: Verdict) -> Self {
        Slot {
            verdict,
            failure: None,
        }
    }
}

/// The verdicts stored for one container ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerResults {
    pub id: String,
    pub liveness: Option<Slot>,
    pub readiness: Option<Slot>,
    pub startup: Option<Slot>,
    pub readiness_last: Option<String>,
}

impl ContainerResults {
    pub fn for_id(id: &str) -> Self {
        ContainerResults {
            id: id.to_string(),
            ..Default::default()
        }
    }

    pub fn slot_mut(&mut self, kind: super::ProbeKind) -> &mut Option<Slot> {
        match kind {
            super::ProbeKind::Liveness => &mut self.liveness,
            super::ProbeKind::Readiness => &mut self.readiness,
            super::ProbeKind::Startup => &mut self.startup,
        }
    }

    /// Whether the startup gate is open for `id`: no startup probe, or it succeeded.
    pub fn started(&self, spec: &Container, id: &str) -> bool {
        spec.startup_probe.is_none() || self.verdict(id, &self.startup) == Some(Verdict::Success)
    }

    fn verdict(&self, id: &str, slot: &Option<Slot>) -> Option<Verdict> {
        if self.id != id {
            return None;
        }
        slot.as_ref().map(|s| s.verdict)
    }

    fn failure(&self, id: &str, slot: &Option<Slot>) -> Option<ProbeFailure> {
        match slot {
            Some(s) if self.id == id && s.verdict == Verdict::Failure => s.failure.clone(),
            _ => None,
        }
    }

    /// The container's probe view, as upstream's UpdatePodStatus and isContainerStarted
    /// compute it: a container that is not running is neither started nor ready.
    pub fn view(&self, spec: &Container, target: &ProbeTarget) -> ContainerProbes {
        let started = target.running && self.started(spec, &target.id);
        let ready = started
            && (spec.readiness_probe.is_none()
                || self.verdict(&target.id, &self.readiness) == Some(Verdict::Success));
        ContainerProbes {
            container_id: target.id.clone(),
            ready,
            started,
            liveness: self.failure(&target.id, &self.liveness),
            startup: self.failure(&target.id, &self.startup),
            readiness_last: if ready || self.id != target.id {
                None
            } else {
                self.readiness_last.clone()
            },
        }
    }
}
