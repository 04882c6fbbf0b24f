//! The container RPCs that change state.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use tracing::Instrument;

use cri_proto::v1::{ContainerConfig as CriContainerConfig, PodSandboxConfig};

use super::{Containers, lock};
use crate::image::inroot::{open_dir_path, open_in_root};
use crate::runtime::error::{Result, RuntimeError};
use crate::runtime::holder::proto::{CreateContainer, SpecJson};
use crate::runtime::holder::{ContainerState, EventKind, ExecResult, PodDir};
use crate::runtime::meta::{ContainerRecord, Phase, ProcessUser, container_name, generate_id};
use crate::runtime::spec::container::localhost_seccomp_path;
use crate::runtime::spec::logs::container_log_path;
use crate::runtime::spec::namespaces::{CONTAINER, NODE, POD};
use crate::runtime::spec::{
    ContainerRequest, ImageView, LinuxHost, Ns, PodContext, PodNamespaces, UserDb, container_spec,
    object_name,
};

/// Reads `path` inside `root` without following a link out of it (an image's
/// /etc/passwd may be a symlink to anything).
fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let dir = open_dir_path(root).ok()?;
    let fd = open_in_root(&dir, path, OFlag::O_RDONLY).ok()?;
    let mut s = String::new();
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

/// The signal a stop starts with: the config's, else the image's, else SIGTERM.
fn stop_signal(cfg: &CriContainerConfig, image: &str) -> i32 {
    use cri_proto::v1::Signal;
    let named = |s: &str| crate::oci::lifecycle::parse_signal(s).map(|s| s as i32);
    match Signal::try_from(cfg.stop_signal) {
        Ok(Signal::RuntimeDefault) | Err(_) => named(image).unwrap_or(libc::SIGTERM),
        Ok(s) => named(s.as_str_name()).unwrap_or(libc::SIGTERM),
    }
}

impl Containers {
    /// CreateContainer: the container exists, stopped before its program, on return.
    pub async fn create(
        &self,
        sandbox_id: &str,
        cfg: CriContainerConfig,
        sandbox_cfg: Option<PodSandboxConfig>,
    ) -> Result<String> {
        let sb = self.inner.sandboxes.get(sandbox_id)?;
        let sb_rec = sb.snapshot();
        if sb_rec.phase != Phase::Ready {
            return Err(RuntimeError::NotReady {
                sandbox: sb_rec.id.clone(),
                reason: "it was stopped".into(),
            });
        }
        // The kubelet sends the sandbox config again; the one it ran with is authoritative.
        let sandbox_cfg = match sandbox_cfg {
            Some(c) if c.metadata.is_some() => c,
            _ => sb_rec.config().map_err(RuntimeError::Internal)?,
        };
        let meta = cfg
            .metadata
            .clone()
            .ok_or_else(|| RuntimeError::invalid("config.metadata", "is required"))?;
        let pod_meta = sandbox_cfg.metadata.clone().unwrap_or_default();
        let name = container_name(&meta, &pod_meta)?;
        let image = cfg
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| RuntimeError::invalid("config.image.image", "is required"))?;
        // Checked before anything is made, so a refusal leaves nothing behind.
        let object = object_name(&meta.name, Some(&pod_meta));
        let log_path = container_log_path(
            &object,
            "sandbox_config.log_directory",
            &sandbox_cfg.log_directory,
            &cfg.log_path,
        )?;
        let seccomp_file = localhost_seccomp_path(&cfg, &sandbox_cfg, &self.inner.cfg.options)?;
        let id = generate_id().map_err(|e| RuntimeError::Internal(format!("container id: {e}")))?;
        lock(&self.inner.table).names.reserve(&name, &id)?;
        let span = tracing::info_span!("create_container", container = %id, name = %name);
        let mut rec =
            ContainerRecord::new(id.clone(), sb_rec.id.clone(), name.clone(), now(), &cfg);
        if let Some(p) = log_path {
            rec.log_path = p.to_string_lossy().into_owned();
        }
        self.create_reserved(rec, &cfg, &sandbox_cfg, &image, seccomp_file, &sb)
            .instrument(span)
            .await
    }

    /// The rest of CreateContainer once the name is reserved: made, or rolled back and
    /// the name released.
    async fn create_reserved(
        &self,
        mut rec: ContainerRecord,
        cfg: &CriContainerConfig,
        sandbox_cfg: &PodSandboxConfig,
        image: &str,
        seccomp_file: Option<String>,
        sb: &std::sync::Arc<crate::runtime::sandbox::Entry>,
    ) -> Result<String> {
        let (id, name) = (rec.id.clone(), rec.name.clone());
        let made = async {
            self.inner
                .store
                .save_with(&id, &rec, crate::store::Durability::Replace)?;
            self.make(&mut rec, cfg, sandbox_cfg, image, seccomp_file, sb)
                .await
        }
        .await;
        if let Err(e) = made {
            tracing::warn!(error = %e, "CreateContainer failed; rolling back");
            self.unmake(&rec).await;
            let _ = self.inner.store.remove(&id);
            lock(&self.inner.table).names.release(&name, &id);
            return Err(e);
        }
        let mut t = lock(&self.inner.table);
        t.index.insert(&id);
        t.records.insert(id.clone(), rec);
        Ok(id)
    }

    async fn make(
        &self,
        rec: &mut ContainerRecord,
        cfg: &CriContainerConfig,
        sandbox_cfg: &PodSandboxConfig,
        image: &str,
        seccomp_file: Option<String>,
        sb: &std::sync::Arc<crate::runtime::sandbox::Entry>,
    ) -> Result<()> {
        let img = self
            .inner
            .images
            .find(image)
            .map_err(|e| RuntimeError::Image {
                image: image.into(),
                not_found: matches!(e, crate::image::Error::NotFound { .. }),
                reason: e.to_string(),
            })?;
        rec.image_id = img.id.to_string();
        let rootfs = self
            .inner
            .images
            .create_rootfs(&rec.id, &rec.image_id)
            .await
            .map_err(|e| RuntimeError::Image {
                image: image.into(),
                not_found: false,
                reason: format!("rootfs: {e}"),
            })?;
        let volumes = self.image_volumes(&rec.id, cfg).await?;
        let cfg = volumes.as_ref().map_or(cfg, |v| &v.spec);
        let ns_opts = sandbox_cfg
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        // Where the holder bound the pod's namespaces (RunPodSandbox checked the modes:
        // network and ipc are POD or NODE; UTS follows the network).
        let ns_dir = PodDir::new(self.inner.sandboxes.state_dir(), &rec.sandbox_id)
            .map_err(|e| RuntimeError::holder(&rec.sandbox_id, e))?
            .ns_dir();
        let pod_ns = |mode: i32, kind: &str| match mode {
            POD => Ns::Path(ns_dir.join(kind)),
            _ => Ns::Host,
        };
        let pod = PodContext {
            sandbox_id: rec.sandbox_id.clone(),
            namespaces: PodNamespaces {
                network: pod_ns(ns_opts.network, "net"),
                ipc: pod_ns(ns_opts.ipc, "ipc"),
                uts: pod_ns(ns_opts.network, "uts"),
                pid: match ns_opts.pid {
                    POD => Some(pod_ns(POD, "pid")),
                    NODE => Some(Ns::Host),
                    CONTAINER => None,
                    _ => None,
                },
            },
            files: self.inner.sandboxes.files(&rec.sandbox_id),
            target_pid_ns: None,
        };
        let users = UserDb {
            passwd: read_in_root(&rootfs, "etc/passwd"),
            group: read_in_root(&rootfs, "etc/group"),
        };
        let view = ImageView {
            entrypoint: img.config.entrypoint.clone(),
            cmd: img.config.cmd.clone(),
            env: img.config.env.clone(),
            working_dir: img.config.working_dir.clone(),
            user: img.config.user.clone(),
            volumes: img.config.volumes.clone(),
        };
        let localhost = seccomp_file
            .map(|path| {
                std::fs::read(&path).map_err(|e| {
                    RuntimeError::invalid(
                        "config.linux.security_context.seccomp.localhost_ref",
                        format!("{path}: {e}"),
                    )
                })
            })
            .transpose()?;
        let volumes_dir = self.inner.cfg.records.join(format!("{}.volumes", rec.id));
        let req = ContainerRequest {
            id: &rec.id,
            config: cfg,
            sandbox_config: sandbox_cfg,
            pod: &pod,
            image: &view,
            image_name: image,
            rootfs: rootfs.clone(),
            volumes_dir,
            users: &users,
            localhost_seccomp: localhost.as_deref(),
        };
        let built = container_spec(
            &req,
            &self.inner.cfg.options,
            self.inner.sandboxes.facts(),
            &LinuxHost,
        )?;
        rec.user = built.spec.process().as_ref().map(|p| {
            let u = p.user();
            ProcessUser {
                uid: u.uid(),
                gid: u.gid(),
                groups: u.additional_gids().clone().unwrap_or_default(),
            }
        });
        for w in &built.warnings {
            tracing::warn!(container = %rec.id, "{w}");
        }
        let spec = SpecJson::to_raw(&built.spec)
            .map_err(|e| RuntimeError::Internal(format!("spec to JSON: {e}")))?;
        if !rec.log_path.is_empty()
            && let Some(dir) = Path::new(&rec.log_path).parent()
        {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
                kind: "container",
                id: rec.id.clone(),
                op: "create log dir",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let create = CreateContainer {
            id: rec.id.clone(),
            spec,
            log_path: (!rec.log_path.is_empty()).then(|| PathBuf::from(&rec.log_path)),
            stdin: cfg.stdin,
            tty: cfg.tty,
            stdin_once: cfg.stdin_once,
        };
        self.inner
            .sandboxes
            .with_holder(sb, move |c| c.create_container(create))
            .await?;
        rec.phase = Phase::Ready;
        if let Some(v) = &volumes {
            rec.set_config(&v.record);
        }
        self.inner.store.save(&rec.id, rec)?;
        Ok(())
    }

    /// Undoes a create as far as it got (holder container, rootfs); errors are logged.
    pub(super) async fn unmake(&self, rec: &ContainerRecord) {
        if self.inner.sandboxes.holder_gone(&rec.sandbox_id) {
            // Nobody to ask: what is left of it (processes, cgroup, OCI state, the
            // holder's record) is removed here.
            let holders = self.inner.sandboxes.holders().clone();
            let (sid, cid) = (rec.sandbox_id.clone(), rec.id.clone());
            let r = tokio::task::spawn_blocking(move || holders.remove_dead(&sid, &cid)).await;
            if let Ok(Err(e)) = r {
                tracing::warn!(container = %rec.id, error = %e, "remove what its dead holder left");
            }
        } else if let Ok(sb) = self.inner.sandboxes.get(&rec.sandbox_id) {
            let id = rec.id.clone();
            if let Err(e) = self
                .inner
                .sandboxes
                .with_holder(&sb, move |c| c.remove_container(&id))
                .await
                && e.code() != crate::runtime::error::Code::NotFound
            {
                tracing::warn!(container = %rec.id, error = %e, "remove from the holder");
            }
        }
        if let Err(e) = self.inner.images.remove_rootfs(&rec.id) {
            tracing::warn!(container = %rec.id, error = %e, "remove rootfs");
        }
        if let Err(e) = self.inner.images.remove_views(&rec.id) {
            tracing::warn!(container = %rec.id, error = %e, "remove image volumes");
        }
        let _ = std::fs::remove_dir_all(self.inner.cfg.records.join(format!("{}.volumes", rec.id)));
    }

    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<()> {
        let rec = self.get(id)?;
        let sb = self.inner.sandboxes.get(&rec.sandbox_id)?;
        let cid = rec.id.clone();
        self.inner
            .sandboxes
            .with_holder(&sb, move |c| c.start_container(&cid))
            .await?;
        tracing::info!(container = %rec.id, "started");
        Ok(())
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` seconds (0: at once).
    /// Stopping a container that is not running succeeds, and so does stopping an
    /// unknown one (the CRI calls StopContainer idempotent) or one whose holder is gone
    /// (what is left of it is killed and it reads as exited).
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<()> {
        let rec = match self.get(id) {
            Ok(r) => r,
            Err(RuntimeError::Meta(crate::runtime::meta::MetaError::NotFound { .. })) => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if self.inner.sandboxes.holder_gone(&rec.sandbox_id) {
            self.dead_infos(&rec.sandbox_id).await;
            return Ok(());
        }
        match self.stop_running(&rec, timeout).await {
            // The holder died (or shut down with its pod) during the stop.
            Err(e)
                if e.lost_holder() && self.inner.sandboxes.holder_died(&rec.sandbox_id).await =>
            {
                self.dead_infos(&rec.sandbox_id).await;
                Ok(())
            }
            r => r,
        }
    }

    async fn stop_running(&self, rec: &ContainerRecord, timeout: i64) -> Result<()> {
        let cfg = rec.config().map_err(RuntimeError::Internal)?;
        let image_signal = self
            .inner
            .images
            .find(&rec.image_id)
            .map(|i| i.config.stop_signal)
            .unwrap_or_default();
        let signal = stop_signal(&cfg, &image_signal);
        let holders = self.inner.sandboxes.holders().clone();
        let (sid, cid) = (rec.sandbox_id.clone(), rec.id.clone());
        let grace = Duration::from_secs(timeout.max(0) as u64);
        tokio::task::spawn_blocking(move || -> crate::runtime::holder::Result<()> {
            let (now, mut events) = holders.connect(&sid)?.subscribe()?;
            let running = now
                .iter()
                .any(|c| c.id == cid && c.state == ContainerState::Running);
            if !running {
                return Ok(());
            }
            let mut calls = holders.connect(&sid)?;
            let wait = |events: &mut Box<dyn crate::runtime::sandbox::HolderEvents>,
                        d: Duration|
             -> crate::runtime::holder::Result<bool> {
                let deadline = std::time::Instant::now() + d;
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    events.set_timeout(Some(left))?;
                    match events.next_event() {
                        Ok(ev) if ev.id == cid && ev.kind == EventKind::Stopped => return Ok(true),
                        Ok(_) => {}
                        Err(crate::runtime::holder::HolderError::Io { source, .. })
                            if matches!(
                                source.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            return Ok(false);
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            if !grace.is_zero() {
                calls.signal(&cid, signal, false)?;
                if wait(&mut events, grace)? {
                    return Ok(());
                }
            }
            calls.signal(&cid, libc::SIGKILL, true)?;
            wait(&mut events, Duration::from_secs(10))?;
            Ok(())
        })
        .await
        .map_err(|e| RuntimeError::Internal(format!("stop panicked: {e}")))?
        .map_err(|e| RuntimeError::holder(&rec.sandbox_id, e))?;
        tracing::info!(container = %rec.id, "stopped");
        Ok(())
    }

    /// RemoveContainer: killed if running, then gone with its rootfs. An unknown id
    /// succeeds (the CRI asks for idempotence).
    pub async fn remove(&self, id: &str) -> Result<()> {
        let rec = match self.get(id) {
            Ok(r) => r,
            Err(RuntimeError::Meta(crate::runtime::meta::MetaError::NotFound { .. })) => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        self.unmake(&rec).await;
        self.inner.store.remove(&rec.id)?;
        let mut t = lock(&self.inner.table);
        t.index.remove(&rec.id);
        t.names.release(&rec.name, &rec.id);
        t.records.remove(&rec.id);
        tracing::info!(container = %rec.id, "removed");
        Ok(())
    }

    /// ExecSync: `cmd` in the container, its output (capped by the holder) and exit code.
    pub async fn exec_sync(&self, id: &str, cmd: Vec<String>, timeout: i64) -> Result<ExecResult> {
        if cmd.is_empty() {
            return Err(RuntimeError::invalid("cmd", "must not be empty"));
        }
        let rec = self.get(id)?;
        let sb = self.inner.sandboxes.get(&rec.sandbox_id)?;
        let t = Duration::from_secs(timeout.max(0) as u64);
        let cid = rec.id.clone();
        self.inner
            .sandboxes
            .with_holder(&sb, move |c| c.exec_sync(&cid, &cmd, t))
            .await
    }

    /// UpdateContainerResources: the new limits written to the container's cgroup, and
    /// kept in its record (ContainerStatus reports them).
    pub async fn update_resources(
        &self,
        id: &str,
        resources: cri_proto::v1::LinuxContainerResources,
    ) -> Result<()> {
        let mut rec = self.get(id)?;
        let mut cfg = rec.config().map_err(RuntimeError::Internal)?;
        let object = crate::runtime::spec::object_name(
            cfg.metadata.as_ref().map_or("", |m| m.name.as_str()),
            None,
        );
        let mut warnings = vec![];
        let oci = crate::runtime::spec::resources::update_resources(
            &object,
            &resources,
            &self.inner.sandboxes.facts().cgroups,
            &mut warnings,
        )?;
        for w in &warnings {
            tracing::warn!(container = %rec.id, "{w}");
        }
        let cg = self.cgroup_of(&rec).ok_or_else(|| RuntimeError::NotReady {
            sandbox: rec.sandbox_id.clone(),
            reason: format!("container {} has no cgroup (not running)", rec.id),
        })?;
        let layout = crate::cgroups::Layout::detect();
        let writes = crate::cgroups::plan(&layout, &oci)
            .and_then(|w| cg.apply(&w))
            .map_err(|e| RuntimeError::invalid("linux", e.to_string()));
        writes?;
        cfg.linux.get_or_insert_with(Default::default).resources = Some(resources);
        rec.set_config(&cfg);
        self.inner.store.save(&rec.id, &rec)?;
        lock(&self.inner.table).records.insert(rec.id.clone(), rec);
        Ok(())
    }

    /// ReopenContainerLog. A container that is not running is refused and no file is
    /// made (the CRI allows either; containerd refuses).
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let rec = self.get(id)?;
        let sb = self.inner.sandboxes.get(&rec.sandbox_id)?;
        let cid = rec.id.clone();
        let state = self
            .inner
            .sandboxes
            .with_holder(&sb, move |c| c.container_state(&cid))
            .await?;
        if state.state != ContainerState::Running {
            return Err(RuntimeError::NotRunning {
                container: rec.id.clone(),
            });
        }
        let cid = rec.id.clone();
        self.inner
            .sandboxes
            .with_holder(&sb, move |c| c.reopen_log(&cid))
            .await
    }
}

fn now() -> i64 {
    crate::runtime::holder::now_ns()
}
