//! The sandbox RPCs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cri_proto::v1::{
    LinuxPodSandboxStatus, Namespace, NamespaceOption, PodIp, PodSandbox, PodSandboxConfig,
    PodSandboxFilter, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
};

use super::holders::Holders;
use super::network::{attachment, pod_ips};
use super::{Sandboxes, lock};
use crate::runtime::error::{Result, RuntimeError};
use crate::runtime::holder::PodOptions;
use crate::runtime::holder::{ContainerState, EventKind, SpawnOptions, now_ns};
use crate::runtime::meta::{
    Phase, SandboxRecord, generate_id, labels_match, sandbox_matches, sandbox_name,
};
use crate::runtime::spec::sandbox::ResolvConf;
use crate::runtime::spec::{SandboxOptions, SandboxPlan, sandbox_plan};
use crate::store::Durability;
use tracing::Instrument;

/// The one runtime handler berth has; "" selects it too (the CRI default).
pub const RUNTIME_HANDLER: &str = "berth";

/// How long stopping waits for the containers' exits after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

fn namespace_options(cfg: &PodSandboxConfig) -> NamespaceOption {
    cfg.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// The sandbox settings berth plans with: containerd 2.x's defaults (a pod with its own
/// network gets the unprivileged-port and ping sysctls), with the oom_score_adj clamped
/// to what this process may set.
fn plan_options() -> SandboxOptions {
    SandboxOptions {
        restrict_oom_score_adj: true,
        ..Default::default()
    }
}

/// What the holder must make, from the checked plan (which has already refused what no
/// runtime could, e.g. a sysctl of a namespace the pod does not have).
pub fn pod_options(plan: &SandboxPlan) -> Result<PodOptions> {
    let ns = plan.holder_namespaces();
    Ok(PodOptions {
        hostname: ns.uts.then(|| plan.hostname.clone()),
        host_network: !ns.network,
        host_ipc: !ns.ipc,
        share_pid: ns.pid,
        sysctls: plan
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        cgroup: plan.cgroups_path.clone(),
        cpu_shares: plan.cgroups_path.as_ref().map(|_| plan.cpu_shares),
    })
}

/// The holder's cgroup of sandbox `rec` (`<cgroup parent>/<id>`), if it has a parent.
pub(super) fn holder_cgroup(rec: &SandboxRecord) -> Option<crate::cgroups::Cgroup> {
    let cfg = rec.config().ok()?;
    let parent = cfg.linux.map(|l| l.cgroup_parent).unwrap_or_default();
    let path =
        crate::runtime::spec::cgroups_path("sandbox", "linux.cgroup_parent", &parent, &rec.id)
            .ok()??;
    crate::cgroups::Cgroup::at(
        &crate::cgroups::Layout::detect(),
        std::path::Path::new(&path),
    )
    .ok()
}

fn check_handler(handler: &str) -> Result<String> {
    match handler {
        "" | RUNTIME_HANDLER => Ok(RUNTIME_HANDLER.into()),
        other => Err(RuntimeError::invalid(
            "runtime_handler",
            format!("no runtime handler {other:?} (berth has {RUNTIME_HANDLER:?})"),
        )),
    }
}

/// Releases a name when a run fails before it is recorded as the sandbox's.
struct NameGuard<'a> {
    sb: &'a Sandboxes,
    name: String,
    id: String,
    armed: bool,
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.sb.inner.table)
                .names
                .release(&self.name, &self.id);
        }
    }
}

impl Sandboxes {
    /// RunPodSandbox: the pod's namespaces (holder) and network (CNI), ready on return.
    pub async fn run(&self, cfg: PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        let handler = check_handler(runtime_handler)?;
        let meta = cfg
            .metadata
            .clone()
            .ok_or_else(|| RuntimeError::invalid("config.metadata", "is required"))?;
        let name = sandbox_name(&meta)?;
        let id = generate_id().map_err(|e| RuntimeError::Internal(format!("sandbox id: {e}")))?;
        let plan = sandbox_plan(&id, &cfg, &plan_options(), &self.inner.cfg.facts)?;
        let opts = pod_options(&plan)?;
        lock(&self.inner.table).names.reserve(&name, &id)?;
        let mut guard = NameGuard {
            sb: self,
            name: name.clone(),
            id: id.clone(),
            armed: true,
        };
        let span = tracing::info_span!("run_sandbox", sandbox = %id, pod = %name);
        let made = async {
            let mut rec = SandboxRecord::new(id.clone(), name, now_ns(), &cfg);
            rec.runtime_handler = handler;
            self.inner.store.save_with(&id, &rec, Durability::Replace)?;
            if let Err(e) = self.make(&mut rec, &cfg, opts, &plan).await {
                tracing::warn!(error = %e, "RunPodSandbox failed; rolling back");
                self.unmake(&rec, &cfg).await;
                if let Err(e) = self.inner.store.remove(&id) {
                    tracing::warn!(error = %e, "remove the record of a failed sandbox");
                }
                return Err(e);
            }
            {
                let mut t = lock(&self.inner.table);
                t.index.insert(&id);
                t.entries
                    .insert(id.clone(), Arc::new(super::Entry::new(rec)));
            }
            guard.armed = false;
            self.watch(&id).await;
            tracing::info!("sandbox ready");
            Ok(())
        };
        made.instrument(span).await?;
        Ok(id)
    }

    async fn make(
        &self,
        rec: &mut SandboxRecord,
        cfg: &PodSandboxConfig,
        pod: PodOptions,
        plan: &SandboxPlan,
    ) -> Result<()> {
        let host_network = pod.host_network;
        let spawn = SpawnOptions {
            state_dir: self.inner.cfg.state_dir.clone(),
            pod_id: rec.id.clone(),
            pod,
        };
        let id = rec.id.clone();
        let holders = self.inner.holders.clone();
        let spawned = tokio::task::spawn_blocking(move || holders.spawn(&spawn))
            .await
            .map_err(|e| RuntimeError::Internal(format!("holder spawn panicked: {e}")))?
            .map_err(|source| RuntimeError::holder(id.clone(), source))?;
        let info = spawned.info;
        rec.holder_pid = info.pid;
        rec.holder_start = spawned.start;
        let netns = info
            .namespaces
            .iter()
            .find(|(k, _)| k == "net")
            .map(|(_, p)| p.to_string_lossy().into_owned());
        rec.netns = if host_network { None } else { netns };
        // Recorded before CNI runs, so a crash during ADD is undone with the right netns.
        self.inner
            .store
            .save_with(&rec.id, rec, Durability::Replace)?;
        if let Some(ns) = &rec.netns {
            self.inner
                .cni
                .loopback_up(std::path::Path::new(ns))
                .map_err(|source| RuntimeError::Io {
                    kind: "sandbox",
                    id: rec.id.clone(),
                    op: "bring up lo in",
                    path: ns.into(),
                    source,
                })?;
            let att = attachment(&rec.id, Some(PathBuf::from(ns).as_path()), cfg);
            let result = self
                .inner
                .cni
                .add(&att)
                .await
                .map_err(|source| RuntimeError::network(rec.id.clone(), source))?;
            rec.ips = pod_ips(&result);
        }
        self.write_files(&rec.id, plan)?;
        rec.phase = Phase::Ready;
        self.inner.store.save(&rec.id, rec)?;
        Ok(())
    }

    /// The pod's /etc/hostname, /etc/hosts (the node's, as containerd gives a sandbox; the
    /// kubelet mounts its managed file over it) and /etc/resolv.conf.
    fn write_files(&self, id: &str, plan: &SandboxPlan) -> Result<()> {
        use crate::store::{Durability, write_file};
        let files = self.files(id);
        let dir = self.inner.cfg.records.join(id);
        let io = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            let id = id.to_string();
            move |source| RuntimeError::Io {
                kind: "sandbox",
                id,
                op,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let resolv = match &plan.resolv_conf {
            ResolvConf::Content(c) => c.clone().into_bytes(),
            ResolvConf::CopyHost => std::fs::read("/etc/resolv.conf").unwrap_or_default(),
        };
        let hosts = std::fs::read("/etc/hosts").unwrap_or_default();
        if plan.ipc == crate::runtime::spec::sandbox::Mode::Pod {
            let shm = &dir.join("shm");
            std::fs::create_dir_all(shm).map_err(io("create", shm))?;
            let size = plan
                .shm_size
                .unwrap_or(crate::runtime::spec::sandbox::DEFAULT_SHM_SIZE);
            nix::mount::mount(
                Some("shm"),
                shm,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID
                    | nix::mount::MsFlags::MS_NODEV
                    | nix::mount::MsFlags::MS_NOEXEC,
                Some(format!("mode=1777,size={size}").as_str()),
            )
            .map_err(|e| io("mount tmpfs on", shm)(e.into()))?;
        }
        for (path, bytes) in [
            (files.hostname, plan.hostname_file.clone().into_bytes()),
            (files.hosts, hosts),
            (files.resolv_conf, resolv),
        ] {
            if let Some(p) = path {
                write_file(&p, &bytes, Durability::Replace).map_err(io("write", &p))?;
                // Containers read these through bind mounts, as any user.
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                    .map_err(io("chmod", &p))?;
            }
        }
        Ok(())
    }

    /// Undoes `make` as far as it got: CNI DEL, then the holder. Errors are logged; the
    /// caller reports the original failure.
    pub(super) async fn unmake(&self, rec: &SandboxRecord, cfg: &PodSandboxConfig) {
        if let Some(ns) = &rec.netns {
            let att = attachment(&rec.id, Some(PathBuf::from(ns).as_path()), cfg);
            if let Err(e) = self.inner.cni.del(&att).await {
                tracing::warn!(sandbox = %rec.id, error = %e, "CNI DEL");
            }
        }
        if let Err(e) = self.shutdown_holder(rec).await {
            tracing::warn!(sandbox = %rec.id, error = %e, "holder shutdown");
        }
        if let Err(e) = remove_files(&rec.id, &self.inner.cfg.records.join(&rec.id)) {
            tracing::warn!(error = %e, "remove the sandbox's files");
        }
    }

    /// The holder of `rec` shut down (or killed) and its files removed, on a blocking
    /// thread.
    pub(super) async fn shutdown_holder(&self, rec: &SandboxRecord) -> Result<()> {
        let holders = self.inner.holders.clone();
        let state_dir = self.inner.cfg.state_dir.clone();
        let r = rec.clone();
        tokio::task::spawn_blocking(move || shutdown_holder(holders.as_ref(), &state_dir, &r))
            .await
            .map_err(|e| RuntimeError::Internal(format!("holder shutdown panicked: {e}")))?
    }

    /// StopPodSandbox: every container killed, the network released. Idempotent: an
    /// unknown sandbox succeeds too (the CRI says so; the kubelet retries a stop of a pod
    /// already removed). Every step runs even when an earlier one failed (a pod whose
    /// containers cannot be reached still gives its IP back); the error names every
    /// failure, and the sandbox stays un-stopped so a retry does them again.
    pub async fn stop(&self, id: &str) -> Result<()> {
        let entry = match self.get(id) {
            Ok(e) => e,
            Err(RuntimeError::Meta(crate::runtime::meta::MetaError::NotFound { .. })) => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let _op = entry.op.lock().await;
        let rec = entry.snapshot();
        if rec.phase == Phase::Stopped {
            return Ok(());
        }
        let span = tracing::info_span!("stop_sandbox", sandbox = %rec.id);
        async {
            let mut failed = vec![];
            let died = if self.holder_alive(&rec) {
                match self.kill_containers(&rec).await {
                    Ok(()) => false,
                    Err(e) if e.lost_holder() && self.holder_died(&rec.id).await => true,
                    Err(e) => {
                        failed.push(e);
                        false
                    }
                }
            } else {
                true
            };
            if died {
                // A holder that died may leave containers running: finished as
                // containerd finishes a dead shim's.
                let holders = self.inner.holders.clone();
                let sid = rec.id.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || holders.finish_dead(&sid)).await
                {
                    failed.push(RuntimeError::Internal(format!("stop panicked: {e}")));
                }
            }
            if let Some(ns) = &rec.netns {
                match rec.config() {
                    Ok(cfg) => {
                        let att = attachment(&rec.id, Some(PathBuf::from(ns).as_path()), &cfg);
                        if let Err(source) = self.inner.cni.del(&att).await {
                            failed.push(RuntimeError::network(rec.id.clone(), source));
                        }
                    }
                    Err(e) => failed.push(RuntimeError::Internal(e)),
                }
            }
            if failed.is_empty() {
                let mut updated = rec.clone();
                updated.phase = Phase::Stopped;
                match self
                    .inner
                    .store
                    .save_with(&updated.id, &updated, Durability::Replace)
                {
                    Ok(()) => *lock(&entry.record) = updated,
                    Err(e) => failed.push(e.into()),
                }
            }
            RuntimeError::all(failed)?;
            tracing::info!("sandbox stopped");
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// SIGKILLs every running container of the sandbox and waits for the holder to report
    /// each exit (events, not polling).
    async fn kill_containers(&self, rec: &SandboxRecord) -> Result<()> {
        let holders = self.inner.holders.clone();
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || -> crate::runtime::holder::Result<()> {
            let (containers, mut events) = holders.connect(&id)?.subscribe()?;
            let mut running: Vec<String> = containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .map(|c| c.id.clone())
                .collect();
            if running.is_empty() {
                return Ok(());
            }
            let mut calls = holders.connect(&id)?;
            for c in &running {
                calls.signal(c, libc::SIGKILL, true)?;
            }
            events.set_timeout(Some(KILL_WAIT))?;
            while !running.is_empty() {
                let ev = events.next_event()?;
                if matches!(ev.kind, EventKind::Stopped | EventKind::Deleted) {
                    running.retain(|c| *c != ev.id);
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| RuntimeError::Internal(format!("stop panicked: {e}")))?
        .map_err(|source| RuntimeError::holder(rec.id.clone(), source))
    }

    /// RemovePodSandbox: stopped if needed, then the holder and every file are gone.
    /// Removing an unknown sandbox succeeds (the CRI asks for idempotence). As with stop,
    /// every step runs and the error names every failure; the sandbox is forgotten only
    /// once all succeeded, so a retry finishes what failed.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let entry = match self.get(id) {
            Ok(e) => e,
            Err(RuntimeError::Meta(crate::runtime::meta::MetaError::NotFound { .. })) => {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut failed = vec![];
        if let Err(e) = self.stop(id).await {
            failed.push(e);
        }
        let _op = entry.op.lock().await;
        let rec = entry.snapshot();
        lock(&entry.holder).clear();
        if let Err(e) = self.shutdown_holder(&rec).await {
            failed.push(e);
        }
        if let Err(e) = remove_files(&rec.id, &self.inner.cfg.records.join(&rec.id)) {
            failed.push(e);
        }
        RuntimeError::all(failed)?;
        self.inner.store.remove(&rec.id)?;
        let mut t = lock(&self.inner.table);
        t.index.remove(&rec.id);
        t.names.release(&rec.name, &rec.id);
        t.entries.remove(&rec.id);
        tracing::info!(sandbox = %rec.id, "sandbox removed");
        Ok(())
    }
    /// PodSandboxStatus.
    pub fn status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<(PodSandboxStatus, HashMap<String, String>)> {
        let entry = self.get(id)?;
        let rec = entry.snapshot();
        let cfg = rec.config().map_err(RuntimeError::Internal)?;
        let ready = rec.phase == Phase::Ready && self.holder_alive(&rec);
        let ns = namespace_options(&cfg);
        let status = PodSandboxStatus {
            id: rec.id.clone(),
            metadata: cfg.metadata.clone(),
            state: if ready {
                PodSandboxState::SandboxReady
            } else {
                PodSandboxState::SandboxNotready
            } as i32,
            created_at: rec.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: rec.ips.first().cloned().unwrap_or_default(),
                additional_ips: rec
                    .ips
                    .iter()
                    .skip(1)
                    .map(|ip| PodIp { ip: ip.clone() })
                    .collect(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption {
                        network: ns.network,
                        pid: ns.pid,
                        ipc: ns.ipc,
                        target_id: ns.target_id.clone(),
                        userns_options: ns.userns_options.clone(),
                    }),
                }),
            }),
            labels: cfg.labels.clone(),
            annotations: cfg.annotations.clone(),
            runtime_handler: rec.runtime_handler.clone(),
        };
        let mut info = HashMap::new();
        if verbose {
            let v = serde_json::json!({
                "pid": rec.holder_pid,
                "netNamespacePath": rec.netns,
                "phase": rec.phase,
                "holderAlive": self.holder_alive(&rec),
                "runtimeHandler": rec.runtime_handler,
            });
            info.insert("info".into(), v.to_string());
        }
        Ok((status, info))
    }

    /// ListPodSandbox.
    pub fn list(&self, filter: Option<PodSandboxFilter>) -> Vec<PodSandbox> {
        let mut filter = filter.unwrap_or_default();
        if !filter.id.is_empty()
            && let Ok(full) = self.resolve(&filter.id)
        {
            filter.id = full;
        }
        self.all()
            .iter()
            .filter_map(|e| {
                let rec = e.snapshot();
                if !filter.id.is_empty() && rec.id != filter.id {
                    return None;
                }
                let cfg = rec.config().ok()?;
                // The labels before the holder: asking whether a holder lives reads /proc,
                // and a kubelet lists one pod's sandboxes by label on every sync.
                if !labels_match(&filter.label_selector, &cfg.labels) {
                    return None;
                }
                let ready = rec.phase == Phase::Ready && self.holder_alive(&rec);
                Some(PodSandbox {
                    id: rec.id,
                    metadata: cfg.metadata,
                    state: if ready {
                        PodSandboxState::SandboxReady
                    } else {
                        PodSandboxState::SandboxNotready
                    } as i32,
                    created_at: rec.created_at,
                    labels: cfg.labels,
                    annotations: cfg.annotations,
                    runtime_handler: rec.runtime_handler,
                })
            })
            .filter(|s| sandbox_matches(&filter, s))
            .collect()
    }
}

/// Removes a sandbox's files dir, its /dev/shm tmpfs unmounted first.
fn remove_files(id: &str, dir: &std::path::Path) -> Result<()> {
    let shm = dir.join("shm");
    if shm.exists() {
        // Not mounted (a run that failed before the mount) is no error: removing the
        // dir below says whether anything is still in the way.
        let _ = nix::mount::umount2(&shm, nix::mount::MntFlags::MNT_DETACH);
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::Io {
            kind: "sandbox",
            id: id.into(),
            op: "remove",
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Asks the holder to shut down; if it cannot be reached, whatever still runs of it is
/// killed. Either way its cgroup and pod directory are removed.
pub(super) fn shutdown_holder(
    holders: &dyn Holders,
    state_dir: &std::path::Path,
    rec: &SandboxRecord,
) -> Result<()> {
    if let Err(e) = holders.connect(&rec.id).and_then(|c| c.shutdown()) {
        if holders.alive(rec.holder_pid, rec.holder_start) {
            tracing::warn!(sandbox = %rec.id, error = %e, "holder shutdown; killing it");
        } else {
            tracing::info!(sandbox = %rec.id, "the holder had died; cleaning up after it");
        }
        holders.kill(&rec.id, rec.holder_pid, rec.holder_start);
    }
    // The holder's cgroup goes once the holder has: whatever is still in it (a holder
    // on its way out, a pod init) is killed.
    if let Some(cg) = holder_cgroup(rec)
        && let Err(e) = cg.remove(true)
    {
        tracing::warn!(sandbox = %rec.id, error = %e, "remove the holder's cgroup");
    }
    let mut failed = vec![];
    // A holder that died leaves its namespace bind mounts and directory behind.
    let dir = state_dir.join("pods").join(&rec.id);
    if dir.exists() {
        if let Ok(ns) = std::fs::read_dir(dir.join("ns")) {
            for f in ns.flatten() {
                let _ = nix::mount::umount2(&f.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if let Err(source) = std::fs::remove_dir_all(&dir) {
            failed.push(RuntimeError::Io {
                kind: "sandbox",
                id: rec.id.clone(),
                op: "remove",
                path: dir,
                source,
            });
        }
    }
    RuntimeError::all(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_proto::v1::{
        LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, PodSandboxMetadata,
    };

    fn with_ns(ns: NamespaceOption) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web".into(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(ns),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn opts(cfg: &PodSandboxConfig) -> Result<PodOptions> {
        let facts = crate::runtime::spec::HostFacts::default();
        pod_options(&sandbox_plan("t", cfg, &plan_options(), &facts)?)
    }

    #[test]
    fn namespace_modes_map_to_holder_options() {
        let o = opts(&with_ns(NamespaceOption {
            pid: NamespaceMode::Container as i32,
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            o,
            PodOptions {
                hostname: Some("web".into()),
                host_network: false,
                host_ipc: false,
                share_pid: false,
                sysctls: vec![
                    ("net.ipv4.ip_unprivileged_port_start".into(), "0".into()),
                    ("net.ipv4.ping_group_range".into(), "0 2147483647".into()),
                ],
                cgroup: None,
                cpu_shares: None,
            }
        );
        let o = opts(&with_ns(NamespaceOption {
            network: NamespaceMode::Node as i32,
            ipc: NamespaceMode::Node as i32,
            pid: NamespaceMode::Pod as i32,
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(o.host_network && o.host_ipc && o.share_pid);
        assert!(o.sysctls.is_empty(), "no net sysctls on the host network");
        assert_eq!(
            o.hostname, None,
            "a host-network pod keeps the node's hostname"
        );
        let mut cfg = with_ns(NamespaceOption::default());
        if let Some(l) = cfg.linux.as_mut() {
            l.cgroup_parent = "/kubepods/podu1".into();
            l.sysctls
                .insert("net/ipv4/ip_unprivileged_port_start".into(), "1024".into());
            l.sysctls
                .insert("kernel.shm_rmid_forced".into(), "1".into());
        }
        let o = opts(&cfg).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            o.cgroup.as_deref(),
            Some("/kubepods/podu1/t"),
            "pause's cgroup"
        );
        assert_eq!(o.cpu_shares, Some(2));
        assert_eq!(
            o.sysctls,
            vec![
                ("kernel.shm_rmid_forced".into(), "1".into()),
                ("net.ipv4.ip_unprivileged_port_start".into(), "1024".into()),
                ("net.ipv4.ping_group_range".into(), "0 2147483647".into()),
            ],
            "dotted, the pod's value over the default"
        );
    }

    #[test]
    fn what_berth_cannot_honour_is_refused_by_field() {
        let bad = opts(&with_ns(NamespaceOption {
            network: NamespaceMode::Container as i32,
            ..Default::default()
        }))
        .unwrap_err();
        assert!(
            bad.to_string().contains("namespace_options.network"),
            "{bad}"
        );
        let mut cfg = with_ns(NamespaceOption {
            network: NamespaceMode::Node as i32,
            ..Default::default()
        });
        if let Some(l) = cfg.linux.as_mut() {
            l.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        }
        let e = opts(&cfg).unwrap_err();
        assert_eq!(e.code(), crate::runtime::error::Code::InvalidArgument);
        assert!(
            e.to_string().contains("linux.sysctls[net.ipv4.ip_forward]"),
            "{e}"
        );
        assert!(check_handler("kata").is_err());
        assert_eq!(check_handler("").ok().as_deref(), Some("berth"));
    }
}
