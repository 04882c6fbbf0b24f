//! The probe manager (upstream's prober_manager.go): one worker per container and probe
//! kind, kept in step with what the pod worker reports, and the results they store.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::probe::Env;
use super::results::{ContainerProbes, ContainerResults, Slot, Verdict};
use super::worker::Worker;
use super::{ProbeKind, ProbeTarget, http};
use crate::cri::api::PodApi;
use crate::kubelet::Recorder;

/// Runs the probes of every pod the pod workers report. Cloning shares it; when the last
/// clone is dropped every probe worker stops.
#[derive(Clone)]
pub struct ProbeManager {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for ProbeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeManager").finish_non_exhaustive()
    }
}

/// Stops the workers when the manager goes: they hold the shared state themselves.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.lock().clear();
    }
}

/// What the manager and its workers share.
pub(crate) struct Shared {
    pods: Arc<dyn PodApi>,
    recorder: Recorder,
    http: Result<reqwest::Client, String>,
    wake: mpsc::UnboundedSender<String>,
    state: Mutex<BTreeMap<String, PodEntry>>,
}

struct PodEntry {
    pod: Arc<Pod>,
    pod_ip: Option<IpAddr>,
    /// Boxed: a map's node holds room for eleven values, and a container's spec is
    /// kilobytes.
    containers: BTreeMap<String, Box<Tracked>>,
}

/// One container of a pod: its spec, what the pod worker last said of it, its results
/// and its probe workers.
struct Tracked {
    spec: Container,
    target: ProbeTarget,
    started_at: Instant,
    results: ContainerResults,
    workers: BTreeMap<ProbeKind, Box<WorkerHandle>>,
}

struct WorkerHandle {
    spec: Probe,
    trigger: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a worker sees of its container at one tick.
pub(crate) struct View {
    pub pod: Arc<Pod>,
    pub pod_ip: Option<IpAddr>,
    pub id: String,
    pub running: bool,
    /// startedAt on the tokio clock.
    pub started_at: Instant,
    /// The startup gate is open: no startup probe, or it succeeded for this ID.
    pub started: bool,
}

impl ProbeManager {
    pub fn new(
        pods: Arc<dyn PodApi>,
        recorder: Recorder,
        wake: mpsc::UnboundedSender<String>,
    ) -> Self {
        let http = http::client().map_err(|e| e.to_string());
        if let Err(e) = &http {
            tracing::error!(error = %e, "httpGet probes cannot run: no HTTP client");
        }
        let shared = Arc::new(Shared {
            pods,
            recorder,
            http,
            wake,
            state: Mutex::new(BTreeMap::new()),
        });
        ProbeManager {
            owner: Arc::new(Owner { shared }),
        }
    }

    /// Called by the pod worker after every sync: starts and stops probe workers so that
    /// each listed container with probes has them; a new container ID resets its results.
    /// Containers not listed lose their workers and results.
    pub fn update_pod(&self, pod: &Arc<Pod>, pod_ip: Option<IpAddr>, containers: &[ProbeTarget]) {
        let Some(uid) = pod.metadata.uid.clone().filter(|u| !u.is_empty()) else {
            tracing::warn!(pod = ?pod.metadata.name, "probes: pod without metadata.uid left alone");
            return;
        };
        let shared = &self.owner.shared;
        let mut state = shared.lock();
        let entry = state.entry(uid.clone()).or_insert_with(|| PodEntry {
            pod: pod.clone(),
            pod_ip,
            containers: BTreeMap::new(),
        });
        entry.pod = pod.clone();
        entry.pod_ip = pod_ip;
        entry.containers.retain(|name, _| {
            containers.iter().any(|t| &t.name == name) && container_spec(pod, name).is_some()
        });
        for target in containers {
            let Some(spec) = container_spec(pod, &target.name) else {
                continue;
            };
            let started_at = on_tokio_clock(target.started_at);
            let tracked = entry
                .containers
                .entry(target.name.clone())
                .or_insert_with(|| {
                    Box::new(Tracked {
                        spec: spec.clone(),
                        target: target.clone(),
                        started_at,
                        results: ContainerResults::for_id(&target.id),
                        workers: BTreeMap::new(),
                    })
                });
            if tracked.results.id != target.id {
                tracked.results = ContainerResults::for_id(&target.id);
            }
            tracked.spec = spec.clone();
            tracked.target = target.clone();
            tracked.started_at = started_at;
            for kind in ProbeKind::ALL {
                let want = kind.of(spec);
                if let (Some(p), Some(w)) = (want, tracked.workers.get(&kind))
                    && w.spec == *p
                {
                    // A running container not yet ready is probed at once at each status
                    // update, not at the next tick (upstream's UpdatePodStatus manual
                    // trigger). A new worker probes at its start anyway.
                    let ready = tracked
                        .results
                        .slot_mut(kind)
                        .as_ref()
                        .is_some_and(|s| s.verdict == Verdict::Success);
                    if kind == ProbeKind::Readiness && target.running && !ready {
                        w.trigger.notify_one();
                    }
                    continue;
                }
                if tracked.workers.remove(&kind).is_some() {
                    *tracked.results.slot_mut(kind) = None;
                }
                if let Some(probe) = want
                    && let Some(handle) = spawn(shared, &uid, spec, kind, probe)
                {
                    tracked.workers.insert(kind, Box::new(handle));
                }
            }
        }
    }

    /// Stops the pod's probe workers and forgets its results.
    pub fn remove_pod(&self, uid: &str) {
        self.owner.shared.lock().remove(uid);
    }

    /// The probe view of every container of the pod listed in its last update.
    pub fn results(&self, uid: &str) -> BTreeMap<String, ContainerProbes> {
        let state = self.owner.shared.lock();
        let Some(entry) = state.get(uid) else {
            return BTreeMap::new();
        };
        entry
            .containers
            .iter()
            .map(|(name, t)| (name.clone(), t.results.view(&t.spec, &t.target)))
            .collect()
    }
}

fn spawn(
    shared: &Arc<Shared>,
    uid: &str,
    container: &Container,
    kind: ProbeKind,
    probe: &Probe,
) -> Option<WorkerHandle> {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        tracing::error!(uid, container = %container.name, probe = %kind, "probe worker not started: no tokio runtime");
        return None;
    };
    let trigger = Arc::new(Notify::new());
    let worker = Worker::new(
        shared.clone(),
        uid.to_string(),
        container.clone(),
        kind,
        probe.clone(),
        trigger.clone(),
    );
    Some(WorkerHandle {
        spec: probe.clone(),
        trigger,
        task: rt.spawn(worker.run()),
    })
}

/// The pod's container or sidecar (an init container that keeps running, the only init
/// containers that may have probes) named `name`.
fn container_spec<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().find(|c| c.name == name).or_else(|| {
        spec.init_containers
            .iter()
            .flatten()
            .find(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    })
}

/// A wall-clock time as an instant of tokio's clock, so that initialDelaySeconds and
/// the jitter are measured on the clock the workers sleep on.
fn on_tokio_clock(t: SystemTime) -> Instant {
    let age = SystemTime::now().duration_since(t).unwrap_or_default();
    let now = Instant::now();
    now.checked_sub(age).unwrap_or(now)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, PodEntry>> {
        // A worker that panicked while holding the lock left plain data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn env(&self) -> Env<'_> {
        Env {
            pods: self.pods.as_ref(),
            http: &self.http,
            recorder: &self.recorder,
        }
    }

    pub(crate) fn view(&self, uid: &str, name: &str) -> Option<View> {
        let state = self.lock();
        let entry = state.get(uid)?;
        let t = entry.containers.get(name)?;
        Some(View {
            pod: entry.pod.clone(),
            pod_ip: entry.pod_ip,
            id: t.target.id.clone(),
            running: t.target.running,
            started_at: t.started_at,
            started: t.results.started(&t.spec, &t.target.id),
        })
    }

    /// Stores a worker's verdict for container `id`; a verdict for an ID that is no
    /// longer the container's is dropped. Wakes the pod worker when the container's
    /// view changed, and runs the readiness probe at once when startup just succeeded
    /// (upstream triggers it from the status update that follows).
    pub(crate) fn set(&self, uid: &str, name: &str, id: &str, kind: ProbeKind, slot: Slot) {
        let mut state = self.lock();
        let Some(t) = state.get_mut(uid).and_then(|e| e.containers.get_mut(name)) else {
            return;
        };
        if t.results.id != id {
            return;
        }
        let before = t.results.view(&t.spec, &t.target);
        let started = slot.verdict == Verdict::Success && kind == ProbeKind::Startup;
        *t.results.slot_mut(kind) = Some(slot);
        let after = t.results.view(&t.spec, &t.target);
        if started
            && !before.started
            && let Some(w) = t.workers.get(&ProbeKind::Readiness)
        {
            w.trigger.notify_one();
        }
        let changed = ContainerProbes {
            readiness_last: None,
            ..before
        } != ContainerProbes {
            readiness_last: None,
            ..after
        };
        drop(state);
        if changed {
            // No receiver means the kubelet is shutting down.
            let _ = self.wake.send(uid.to_string());
        }
    }

    /// Starts results afresh when the worker meets container `id` for the first time.
    pub(crate) fn reset_if_new(&self, uid: &str, name: &str, id: &str) {
        let mut state = self.lock();
        if let Some(t) = state.get_mut(uid).and_then(|e| e.containers.get_mut(name))
            && t.results.id != id
        {
            t.results = ContainerResults::for_id(id);
        }
    }

    /// Keeps the last readiness failure's output (None after a success), for the view.
    pub(crate) fn note_readiness(&self, uid: &str, name: &str, id: &str, last: Option<String>) {
        let mut state = self.lock();
        if let Some(t) = state.get_mut(uid).and_then(|e| e.containers.get_mut(name))
            && t.results.id == id
        {
            t.results.readiness_last = last;
        }
    }
}
