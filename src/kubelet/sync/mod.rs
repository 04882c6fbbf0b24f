//! One pod's sync: kubelet's SyncPod (pkg/kubelet/kubelet.go) and the runtime manager's
//! SyncPod (kuberuntime_manager.go). It reads what the runtime holds, computes the
//! actions ([`crate::kubelet::kuberuntime::actions`]), and applies them: the pod's cgroup
//! and volumes (once every ConfigMap and Secret it references has been read, with its
//! service-account tokens fetched or renewed), the sandbox, init containers and sidecars
//! in order, then the regular containers; kills go first. Each container start goes
//! through back-off, the image policy (pulls with the pod's imagePullSecrets,
//! [`pull_secrets`]), the env and mounts, create, start and the postStart hook
//! ([`start`]); kills run the preStop hook within the grace period ([`kill`]).
//!
//! It owns no state of its own beyond back-off: what a sync needs to know it reads from
//! the runtime, so a sync after a restart of berth carries on from what is.

mod gc;
mod hooks;
mod images;
mod kill;
pub mod pull_secrets;
mod start;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::cm::{CgroupManager, NodeFacts};
use super::events::{Event, EventKind, Recorder};
use super::kuberuntime::actions::{self, ProbeState, Probes};
use super::kuberuntime::backoff::Backoff;
use super::kuberuntime::dns::HostDns;
use super::kuberuntime::labels;
use super::kuberuntime::sandbox::{self, SandboxInputs};
use super::kuberuntime::status::{self as rtstatus, PodStatus, State};
use super::objects::{Objects, refs};
use super::prober::{ProbeManager, ProbeTarget};
use super::runtime::Runtime;
use super::status::Waiting;
use super::token::TokenManager;
use super::volumes::VolumeManager;
use crate::cri::CriError;

/// What the node's sync needs: the runtime, the managers, and the node's settings.
#[derive(Debug)]
pub struct Syncer {
    pub runtime: Runtime,
    pub volumes: VolumeManager,
    pub cgroups: CgroupManager,
    pub probes: ProbeManager,
    pub recorder: Recorder,
    pub crash_backoff: Backoff,
    pub pull_backoff: Backoff,
    pub settings: Settings,
    /// Service-account tokens for projected volumes; None in standalone mode (a pod
    /// that projects a token then fails its volume setup, saying why).
    pub tokens: Option<Arc<TokenManager>>,
}

/// The node's settings a sync reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub node_name: String,
    pub host_ips: Vec<String>,
    pub pod_log_dir: PathBuf,
    pub dns: HostDns,
    pub seccomp_default: bool,
    pub node: NodeFacts,
    /// The CRI runtime handler for sandboxes ("" is the runtime's default).
    pub runtime_handler: String,
}

/// What one sync found and left to do.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The runtime's view after the sync's actions.
    pub status: PodStatus,
    /// Why containers wait (CrashLoopBackOff, ErrImagePull, ...).
    pub waiting: BTreeMap<String, Waiting>,
    /// When to sync again at the latest (a back-off that ends, a deadline).
    pub requeue: Option<Duration>,
}

/// An error that stops a sync; the worker retries the sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("pod {pod}: {what}: {source}")]
    Runtime {
        pod: String,
        what: &'static str,
        #[source]
        source: CriError,
    },
    #[error("pod {pod}: {message}")]
    Setup { pod: String, message: String },
    /// Objects the pod references have not been read from the API server yet; the sync
    /// is retried when they arrive (upstream waits for its object caches to sync).
    #[error("pod {pod}: waiting for {}", objects.join(", "))]
    ObjectsPending { pod: String, objects: Vec<String> },
}

impl SyncError {
    fn runtime(pod: &Pod, what: &'static str) -> impl FnOnce(CriError) -> SyncError {
        let pod = labels::full_name(pod);
        move |source| SyncError::Runtime { pod, what, source }
    }
}

/// When a sync that left a container waiting comes again: at once after a failed pull
/// (so the back-off shows as ImagePullBackOff, as upstream's status goes), after
/// upstream's 10 s backOffPeriod for a failed start; back-offs requeue themselves.
fn retry_after(reason: &str) -> Option<Duration> {
    match reason {
        "CrashLoopBackOff" | "ImagePullBackOff" => None,
        "ErrImagePull" => Some(Duration::from_secs(1)),
        _ => Some(Duration::from_secs(10)),
    }
}

/// `name_namespace(uid)`, kubelet's format.PodDesc in back-off messages.
pub fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        labels::name(pod),
        labels::namespace(pod),
        labels::uid(pod)
    )
}

fn ns_to_system(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// A wall-clock time as an Instant (for back-off, which counts on the monotonic clock).
fn instant_of(ns: i64) -> Instant {
    let now_i = Instant::now();
    let ago = SystemTime::now()
        .duration_since(ns_to_system(ns))
        .unwrap_or_default();
    now_i.checked_sub(ago).unwrap_or(now_i)
}

impl Syncer {
    pub(crate) fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventKind,
        reason: &str,
        message: String,
    ) {
        self.recorder
            .record(Event::pod(pod, container, kind, reason, message));
    }

    /// The probe results the actions read.
    fn probe_states(&self, uid: &str) -> Probes {
        self.probes
            .results(uid)
            .into_iter()
            .map(|(name, r)| {
                (
                    name,
                    ProbeState {
                        container_id: r.container_id,
                        started: r.started,
                        liveness_failed: r.liveness.map(|f| (f.message, f.grace_period)),
                        startup_failed: r.startup.map(|f| (f.message, f.grace_period)),
                    },
                )
            })
            .collect()
    }

    /// Tells the prober which containers run now.
    pub fn update_probes(&self, pod: &Arc<Pod>, status: &PodStatus) {
        let ip = status
            .ips()
            .first()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .or_else(|| {
                // A host-network pod is probed on the node's address.
                self.settings
                    .host_ips
                    .first()
                    .and_then(|ip| ip.parse().ok())
            });
        let mut seen = std::collections::HashSet::new();
        let targets: Vec<ProbeTarget> = status
            .containers
            .iter()
            .filter(|c| seen.insert(c.name.clone()))
            .map(|c| ProbeTarget {
                name: c.name.clone(),
                id: c.id.clone(),
                started_at: ns_to_system(c.started_at),
                running: c.state == State::Running,
            })
            .collect();
        self.probes.update_pod(pod, ip, &targets);
    }

    /// Reads the pod's runtime state.
    pub async fn runtime_status(&self, pod: &Pod) -> Result<PodStatus, SyncError> {
        rtstatus::pod_status(&self.runtime, labels::uid(pod))
            .await
            .map_err(SyncError::runtime(
                pod,
                "read the pod's state from the runtime",
            ))
    }

    /// The objects with the tokens of the pod's serviceAccountToken projections, fetched
    /// or renewed now (every sync, so the 60 s resync renews them in time).
    async fn with_tokens<'o>(
        &self,
        pod: &Pod,
        objects: &'o Objects,
    ) -> Result<Cow<'o, Objects>, SyncError> {
        let Some(tokens) = &self.tokens else {
            return Ok(Cow::Borrowed(objects));
        };
        if crate::kubelet::token::pod_token_keys(pod).is_empty() {
            return Ok(Cow::Borrowed(objects));
        }
        match tokens.tokens_for(pod).await {
            Ok(t) => {
                let mut o = objects.clone();
                o.tokens.extend(t);
                Ok(Cow::Owned(o))
            }
            Err(e) => {
                self.event(
                    pod,
                    None,
                    EventKind::Warning,
                    "FailedMount",
                    format!("MountVolume.SetUp failed: {e}"),
                );
                Err(SyncError::Setup {
                    pod: labels::full_name(pod),
                    message: e.to_string(),
                })
            }
        }
    }

    /// One sync of a pod that should run.
    pub async fn sync_pod(&self, pod: &Arc<Pod>, objects: &Objects) -> Result<Outcome, SyncError> {
        let uid = labels::uid(pod).to_string();
        let status = self.runtime_status(pod).await?;
        let probes = self.probe_states(&uid);
        let acts = actions::compute(pod, &status, &probes);
        let mut out = Outcome::default();
        tracing::debug!(?acts, "pod actions");

        // Nothing starts on objects not read yet: a pending one is neither there nor
        // missing, and taking it as missing would fail the pod for nothing.
        let pending = refs::pending_refs(pod, objects);
        if !pending.is_empty() {
            return Err(SyncError::ObjectsPending {
                pod: labels::full_name(pod),
                objects: pending
                    .iter()
                    .map(|r| match objects.pending_errors.get(r) {
                        Some(e) => format!("{r} ({e})"),
                        None => r.to_string(),
                    })
                    .collect(),
            });
        }
        let objects = self.with_tokens(pod, objects).await?;
        let objects = objects.as_ref();

        // The pod's cgroup and volumes come first: the sandbox goes into the one, the
        // containers mount the other.
        let cgroup_parent = self.cgroups.ensure_pod(pod).map_err(|e| SyncError::Setup {
            pod: labels::full_name(pod),
            message: format!("create the pod's cgroup: {e}"),
        })?;
        let vols = match self.volumes.setup_pod(pod, objects) {
            Ok(v) => v,
            Err(e) => {
                self.event(
                    pod,
                    None,
                    EventKind::Warning,
                    "FailedMount",
                    format!("MountVolume.SetUp failed: {e}"),
                );
                return Err(SyncError::Setup {
                    pod: labels::full_name(pod),
                    message: e.to_string(),
                });
            }
        };

        if acts.kill_pod {
            self.kill_pod(pod, &status, None).await?;
        } else {
            for k in &acts.containers_to_kill {
                if let Some(c) = status.containers.iter().find(|c| c.id == k.id) {
                    self.event(
                        pod,
                        Some(&k.name),
                        EventKind::Normal,
                        "Killing",
                        k.message.clone(),
                    );
                    self.kill_container(pod, c, k.grace_period, &status.ips())
                        .await?;
                }
            }
        }

        let mut sandbox_id = acts.sandbox_id.clone();
        let mut sb_status = status.clone();
        if acts.create_sandbox {
            let cfg = sandbox::config(
                pod,
                &SandboxInputs {
                    attempt: acts.attempt,
                    cgroup_parent: cgroup_parent.clone(),
                    pod_log_dir: &self.settings.pod_log_dir,
                    dns: &self.settings.dns,
                    seccomp_default: self.settings.seccomp_default,
                    resources: super::cm::sandbox_resources(pod, &self.settings.node),
                },
            );
            let id = match self
                .runtime
                .pods
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(cfg),
                    runtime_handler: self.settings.runtime_handler.clone(),
                })
                .await
            {
                Ok(r) => r.pod_sandbox_id,
                Err(e) => {
                    self.event(
                        pod,
                        None,
                        EventKind::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    return Err(SyncError::runtime(pod, "create the pod sandbox")(e));
                }
            };
            sandbox_id = Some(id);
            sb_status = self.runtime_status(pod).await?;
        }
        let Some(sandbox_id) = sandbox_id.filter(|_| acts.create_sandbox || !acts.kill_pod) else {
            out.status = self.runtime_status(pod).await?;
            return Ok(out);
        };
        let sandbox_cfg = sandbox::config(
            pod,
            &SandboxInputs {
                attempt: sb_status.sandboxes.first().map_or(0, |s| s.attempt),
                cgroup_parent,
                pod_log_dir: &self.settings.pod_log_dir,
                dns: &self.settings.dns,
                seccomp_default: self.settings.seccomp_default,
                resources: super::cm::sandbox_resources(pod, &self.settings.node),
            },
        );
        let ctx = start::StartContext {
            sandbox_id: &sandbox_id,
            sandbox_config: &sandbox_cfg,
            status: &sb_status,
            objects,
            volumes: &vols,
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let inits = spec.init_containers.clone().unwrap_or_default();
        for i in &acts.init_to_start {
            let Some(c) = inits.get(*i) else { continue };
            if let Err(w) = self.start_container(pod, c, &ctx, &mut out).await {
                out.waiting.insert(c.name.clone(), w);
                // Init containers go one at a time: the next waits for this one.
                break;
            }
        }
        for i in &acts.containers_to_start {
            let Some(c) = spec.containers.get(*i) else {
                continue;
            };
            if let Err(w) = self.start_container(pod, c, &ctx, &mut out).await {
                out.waiting.insert(c.name.clone(), w);
            }
        }
        for w in out.waiting.values() {
            if let Some(d) = retry_after(&w.reason) {
                out.requeue = Some(out.requeue.map_or(d, |r| r.min(d)));
            }
        }
        out.status = self.runtime_status(pod).await?;
        self.collect_garbage(pod, &out.status).await;
        self.update_probes(pod, &out.status);
        Ok(out)
    }
}
