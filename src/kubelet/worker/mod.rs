//! Pod workers: one task per pod UID that drives the pod through its [`state`] machine.
//! Updates go into the worker's mailbox, where the newest replaces a pending one and a
//! wake (a container event, a probe result) merges with anything already pending; the
//! worker syncs from what the runtime holds each time, publishes the pod's status, and
//! requeues itself when a back-off or deadline ends.

pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::Instrument;

use self::state::{Phase, State, Update, step};
use super::cm::qos_class;
use super::kuberuntime::labels;
use super::kuberuntime::status::PodStatus;
use super::objects::Objects;
use super::status::store::{PodView, StatusStore};
use super::status::{self, Inputs, ProbeView, Terminal, Waiting};
use super::sync::Syncer;

/// kubelet's syncFrequency: a pod is synced at least this often.
const RESYNC: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Pending {
    pod: Option<Arc<Pod>>,
    remove: Option<Option<i64>>,
    wake: bool,
}

#[derive(Debug, Default)]
struct Mailbox {
    pending: Mutex<Pending>,
    notify: Notify,
}

impl Mailbox {
    fn put(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        self.notify.notify_one();
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Every pod worker of the node.
#[derive(Debug, Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    syncer: Arc<Syncer>,
    store: Arc<StatusStore>,
    objects: watch::Receiver<Arc<Objects>>,
    runtime_name: String,
    workers: Mutex<HashMap<String, Arc<Mailbox>>>,
    idle: Notify,
}

impl Workers {
    pub fn new(
        syncer: Arc<Syncer>,
        store: Arc<StatusStore>,
        objects: watch::Receiver<Arc<Objects>>,
        runtime_name: String,
    ) -> Self {
        Workers {
            inner: Arc::new(Inner {
                syncer,
                store,
                objects,
                runtime_name,
                workers: Mutex::new(HashMap::new()),
                idle: Notify::new(),
            }),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mailbox>>> {
        self.inner.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The desired pod: starts its worker, or hands the worker the new spec.
    pub fn update(&self, pod: Arc<Pod>) {
        let uid = labels::uid(&pod).to_string();
        let mut m = self.map();
        if let Some(mb) = m.get(&uid) {
            mb.put(|p| p.pod = Some(pod));
            return;
        }
        let mb = Arc::new(Mailbox::default());
        m.insert(uid.clone(), mb.clone());
        drop(m);
        self.spawn(uid, mb, State::new(pod));
    }

    /// A pod the runtime holds that no source wants (left by an earlier run): its worker
    /// starts terminating it at once, and removes it.
    pub fn remove_orphan(&self, pod: Pod) {
        let uid = labels::uid(&pod).to_string();
        let mut m = self.map();
        if m.contains_key(&uid) {
            return;
        }
        let mb = Arc::new(Mailbox::default());
        m.insert(uid.clone(), mb.clone());
        drop(m);
        let state = step(&State::new(Arc::new(pod)), Update::Remove { grace: None });
        self.spawn(uid, mb, state);
    }

    fn spawn(&self, uid: String, mb: Arc<Mailbox>, state: State) {
        let span = tracing::info_span!("pod", pod = %labels::full_name(&state.pod), uid = %uid);
        let inner = self.inner.clone();
        tokio::spawn(run(inner, uid, mb, state).instrument(span));
    }

    /// The pod is gone from its source: terminate it (grace None: the pod's own).
    pub fn remove(&self, uid: &str, grace: Option<i64>) {
        if let Some(mb) = self.map().get(uid) {
            mb.put(|p| {
                p.remove = Some(match p.remove {
                    Some(Some(old)) => Some(grace.map_or(old, |g| g.min(old))),
                    _ => grace,
                })
            });
        }
    }

    /// Something changed in the pod's containers or probes: sync it now.
    pub fn wake(&self, uid: &str) {
        if let Some(mb) = self.map().get(uid) {
            mb.put(|p| p.wake = true);
        }
    }

    /// Whether a worker owns this pod (housekeeping leaves such pods alone).
    pub fn has(&self, uid: &str) -> bool {
        self.map().contains_key(uid)
    }

    pub fn uids(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// Waits until every worker has finished.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.map().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// What a worker remembers between syncs for the status: nothing the runtime knows.
#[derive(Debug, Default)]
struct Memory {
    start_time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    previous: Option<k8s_openapi::api::core::v1::PodStatus>,
    terminal: Option<Terminal>,
    waiting: BTreeMap<String, Waiting>,
}

async fn run(inner: Arc<Inner>, uid: String, mb: Arc<Mailbox>, mut state: State) {
    let mut mem = Memory::default();
    // A pod the API already shows as Succeeded or Failed (reported before a restart of
    // berth) stays so: its containers are not started again.
    if let Some(st) = state.pod.status.as_ref()
        && matches!(st.phase.as_deref(), Some("Succeeded" | "Failed"))
    {
        mem.previous = Some(st.clone());
    }
    let mut next: Option<Instant> = Some(Instant::now());
    let mut failures: u32 = 0;
    loop {
        match next {
            Some(at) => {
                tokio::select! {
                    _ = mb.notify.notified() => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => mb.notify.notified().await,
        }
        let mail = mb.take();
        if let Some(p) = mail.pod {
            state = step(&state, Update::Sync(p));
        }
        if let Some(g) = mail.remove {
            state = step(&state, Update::Remove { grace: g });
        }
        let syncer = &inner.syncer;
        match state.phase {
            Phase::Syncing => {
                let objects = inner.objects.borrow().clone();
                // Boxed, here and below: a worker lives as long as its pod and waits most of
                // that time; the sync's state is kilobytes and only needed while it runs.
                match Box::pin(syncer.sync_pod(&state.pod, &objects)).await {
                    Ok(out) => {
                        failures = 0;
                        mem.waiting = out.waiting.clone();
                        let deadline = active_deadline(&state.pod, &mut mem, &out.status);
                        let st = publish(&inner, &uid, &state.pod, &out.status, &mut mem);
                        let done = matches!(st.phase.as_deref(), Some("Succeeded" | "Failed"));
                        if done {
                            state = step(&state, Update::Finished);
                            next = Some(Instant::now());
                        } else {
                            let wait = [out.requeue, deadline, Some(RESYNC)]
                                .into_iter()
                                .flatten()
                                .min()
                                .unwrap_or(RESYNC);
                            next = Some(Instant::now() + wait);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("sync failed: {e}");
                        if let Ok(rt) = syncer.runtime_status(&state.pod).await {
                            publish(&inner, &uid, &state.pod, &rt, &mut mem);
                        }
                        // Retried soon, then less often while it keeps failing.
                        let secs = 1u64 << failures.min(5);
                        next = Some(Instant::now() + Duration::from_secs(secs));
                    }
                }
            }
            Phase::Terminating => {
                let res = match Box::pin(syncer.runtime_status(&state.pod)).await {
                    Ok(rt) => Box::pin(syncer.kill_pod(&state.pod, &rt, state.grace)).await,
                    Err(e) => Err(e),
                };
                match res {
                    Ok(()) => {
                        state = step(&state, Update::Killed);
                        mem.waiting.clear();
                        if let Ok(rt) = syncer.runtime_status(&state.pod).await {
                            publish(&inner, &uid, &state.pod, &rt, &mut mem);
                        }
                        next = Some(Instant::now());
                    }
                    Err(e) => {
                        tracing::warn!("terminate: {e}");
                        next = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            Phase::Terminated => {
                if !state.removed {
                    next = None;
                    continue;
                }
                if let Err(e) = Box::pin(syncer.remove_pod(&state.pod)).await {
                    tracing::warn!("clean up: {e}");
                    next = Some(Instant::now() + Duration::from_secs(2));
                    continue;
                }
                tracing::info!("pod removed");
                inner.store.remove(&uid);
                let mut m = inner.workers.lock().unwrap_or_else(|p| p.into_inner());
                m.remove(&uid);
                // A pod that came back while it was cleaned up starts a new worker.
                let empty = m.is_empty();
                drop(m);
                if empty {
                    inner.idle.notify_waiters();
                }
                return;
            }
        }
    }
}

/// activeDeadlineSeconds: past it, the pod fails with DeadlineExceeded; before it, the
/// time left (to sync again then).
fn active_deadline(pod: &Pod, mem: &mut Memory, rt: &PodStatus) -> Option<Duration> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = start_time(mem, rt);
    let started = std::time::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(start.0.as_second()).unwrap_or(0));
    let elapsed = std::time::SystemTime::now()
        .duration_since(started)
        .unwrap_or_default();
    let limit = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    if elapsed >= limit {
        if mem.terminal.is_none() {
            mem.terminal = Some(Terminal {
                phase: "Failed".into(),
                reason: "DeadlineExceeded".into(),
                message: "Pod was active on the node longer than the specified deadline".into(),
            });
        }
        None
    } else {
        Some(limit - elapsed)
    }
}

fn start_time(
    mem: &mut Memory,
    rt: &PodStatus,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    mem.start_time
        .get_or_insert_with(|| {
            // An adopted pod started when its first sandbox did.
            rt.sandboxes
                .iter()
                .map(|s| s.created_at)
                .min()
                .and_then(status::time)
                .unwrap_or_else(status::now)
        })
        .clone()
}

fn publish(
    inner: &Inner,
    uid: &str,
    pod: &Pod,
    rt: &PodStatus,
    mem: &mut Memory,
) -> k8s_openapi::api::core::v1::PodStatus {
    let results = inner.syncer.probes.results(uid);
    let probes: BTreeMap<String, ProbeView> = results
        .iter()
        .map(|(n, r)| {
            (
                n.clone(),
                ProbeView {
                    container_id: r.container_id.clone(),
                    ready: r.ready,
                    started: r.started,
                },
            )
        })
        .collect();
    let start = start_time(mem, rt);
    let host_ips = inner.syncer.settings.host_ips.clone();
    let st = status::generate(&Inputs {
        pod,
        runtime: rt,
        probes: &probes,
        waiting: &mem.waiting,
        previous: mem.previous.as_ref(),
        host_ips: &host_ips,
        runtime_name: &inner.runtime_name,
        terminal: mem.terminal.as_ref(),
        start_time: start,
        qos_class: qos_class(pod).as_str(),
        now: status::now(),
    });
    mem.previous = Some(st.clone());
    let mut shown = pod.clone();
    shown.status = Some(st.clone());
    let probe_words = results
        .into_iter()
        .map(|(n, r)| {
            let w = if let Some(f) = r.liveness {
                format!("liveness failed: {}", f.message)
            } else if let Some(f) = r.startup {
                format!("startup failed: {}", f.message)
            } else if !r.started {
                "starting".into()
            } else if r.ready {
                "ready".into()
            } else {
                r.readiness_last
                    .map_or_else(|| "not ready".into(), |m| format!("not ready: {m}"))
            };
            (n, w)
        })
        .collect();
    inner.store.set(
        uid,
        PodView {
            pod: shown,
            probes: probe_words,
        },
    );
    st
}
