//! One probe worker: probes one container's liveness, readiness or startup every
//! periodSeconds, as upstream's worker.go. It counts consecutive verdicts against
//! successThreshold / failureThreshold, keeps liveness and readiness waiting until the
//! startup probe succeeded, and after a liveness or startup failure holds until the
//! container ID changes (the failed container is being restarted; probing it more would
//! only report the same failure again).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use super::ProbeKind;
use super::manager::Shared;
use super::probe::{self, Target};
use super::results::{ProbeFailure, Slot, Verdict};

pub(crate) struct Worker {
    shared: Arc<Shared>,
    uid: String,
    container: Container,
    kind: ProbeKind,
    spec: Probe,
    /// Runs the probe now instead of at the next tick.
    trigger: Arc<Notify>,
    /// The container ID the worker last saw.
    container_id: String,
    /// The last verdict and how many times in a row it came.
    last: Option<Verdict>,
    run: i32,
    /// Set after a liveness or startup failure: no probing until a new container ID.
    on_hold: bool,
}

/// periodSeconds (default 10).
fn period_of(spec: &Probe) -> Duration {
    Duration::from_secs(
        u64::try_from(spec.period_seconds.unwrap_or(10))
            .unwrap_or(10)
            .max(1),
    )
}

/// A uniform fraction in [0, 1) from the kernel's random source.
fn random_fraction() -> f64 {
    match getrandom::u64() {
        Ok(x) => (x >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

impl Worker {
    pub fn new(
        shared: Arc<Shared>,
        uid: String,
        container: Container,
        kind: ProbeKind,
        spec: Probe,
        trigger: Arc<Notify>,
    ) -> Self {
        Worker {
            shared,
            uid,
            container,
            kind,
            spec,
            trigger,
            container_id: String::new(),
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// Probes until the manager aborts the task (or the pod is being deleted).
    pub async fn run(mut self) {
        let period = period_of(&self.spec);
        // A worker that meets a container running for longer than a period was started
        // by a kubelet restart along with every other probe on the node: a random part
        // of a period spreads their first probes out (upstream's start jitter).
        if let Some(view) = self.shared.view(&self.uid, &self.container.name)
            && view.started_at.elapsed() > period
        {
            tokio::time::sleep(period.mul_f64(random_fraction())).await;
        }
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        // As Go's ticker: a tick missed by a slow probe is dropped, not caught up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        while self.do_probe().await {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.trigger.notified() => {}
            }
        }
    }

    fn set(&self, slot: Slot) {
        let (uid, name) = (&self.uid, &self.container.name);
        self.shared
            .set(uid, name, &self.container_id, self.kind, slot);
    }

    /// Probes once if the container is due; false ends the worker.
    async fn do_probe(&mut self) -> bool {
        let Some(view) = self.shared.view(&self.uid, &self.container.name) else {
            return true;
        };
        if view.id.is_empty() {
            return true;
        }
        if view.id != self.container_id {
            self.shared
                .reset_if_new(&self.uid, &self.container.name, &view.id);
            self.container_id = view.id.clone();
            self.on_hold = false;
        }
        if self.on_hold {
            return true;
        }
        if !view.running {
            self.set(Slot::plain(Verdict::Failure));
            return true;
        }
        // A pod being deleted is shut down quietly: no liveness or startup kill races
        // the graceful termination.
        if view.pod.metadata.deletion_timestamp.is_some()
            && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup)
        {
            self.set(Slot::plain(Verdict::Success));
            return false;
        }
        let since = view.started_at.elapsed().as_secs();
        let delay = u64::try_from(self.spec.initial_delay_seconds.unwrap_or(0)).unwrap_or(0);
        if since < delay {
            return true;
        }
        // Startup probes until the container started; the others only after.
        if view.started == (self.kind == ProbeKind::Startup) {
            return true;
        }

        let target = Target {
            pod: &view.pod,
            container: &self.container,
            container_id: &self.container_id,
            pod_ip: view.pod_ip,
        };
        let env = self.shared.env();
        // Boxed: the worker waits between probes for as long as the container lives, and an
        // HTTP or gRPC probe's state is kilobytes.
        let probed = Box::pin(probe::probe(&env, self.kind, &self.spec, &target)).await;
        let Ok((verdict, output)) = probed else {
            // The probe could not run: its result is thrown away.
            return true;
        };
        if self.kind == ProbeKind::Readiness {
            let last = (verdict == Verdict::Failure).then(|| output.clone());
            self.shared
                .note_readiness(&self.uid, &self.container.name, &self.container_id, last);
        }

        if self.last == Some(verdict) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(verdict);
            self.run = 1;
        }
        let failure_threshold = self.spec.failure_threshold.unwrap_or(3);
        let success_threshold = self.spec.success_threshold.unwrap_or(1);
        if (verdict == Verdict::Failure && self.run < failure_threshold)
            || (verdict == Verdict::Success && self.run < success_threshold)
        {
            return true;
        }
        let failure = (verdict == Verdict::Failure).then_some(ProbeFailure {
            message: output,
            grace_period: self.spec.termination_grace_period_seconds,
        });
        self.set(Slot { verdict, failure });
        if verdict == Verdict::Failure
            && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup)
        {
            self.on_hold = true;
            self.run = 0;
        }
        true
    }
}
