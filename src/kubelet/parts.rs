//! The kubelet's parts as `berth run` and `berth node` both build them: the runtime
//! (berth's own in-process, or a CRI endpoint), then the syncer with its cgroups,
//! volumes, probes and settings. Only wiring: each part owns its own logic.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use super::cm::{CgroupManager, NodeFacts};
use super::events::Recorder;
use super::kuberuntime::backoff::Backoff;
use super::kuberuntime::dns::HostDns;
use super::prober::ProbeManager;
use super::runtime::Runtime;
use super::standalone::host;
use super::sync::{Settings, Syncer};
use super::token::TokenManager;
use super::volumes::VolumeManager;
use crate::cri::inprocess::{InProcess, Prepared, RuntimeArgs};

/// Runs `kubelet` on a new async runtime with the runtime it drives (berth's own, or the
/// CRI `endpoint`), its name, and a future that resolves at SIGTERM or SIGINT.
pub fn run<F, Fut>(endpoint: Option<String>, args: RuntimeArgs, kubelet: F) -> anyhow::Result<()>
where
    F: FnOnce(Runtime, String, Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // berth's runtime is prepared before any async thread exists (it forks its zygote).
    let prepared = match endpoint {
        None => Some(InProcess::prepare(&args)?),
        Some(_) => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let stop = crate::cri::cli::stop_signal().context("install SIGTERM/SIGINT handlers")?;
        let release = tokio::spawn(release_memory());
        let (runtime, name) = open_runtime(endpoint.as_deref(), &args, prepared).await?;
        let r = kubelet(runtime, name, Box::pin(stop)).await;
        release.abort();
        r
    })
}

/// How often the daemon gives back what it no longer uses (kubelet's housekeeping period).
const RELEASE_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// Every [`RELEASE_PERIOD`], on the blocking pool: the heap freed since, and the code
/// mapped but not run lately, go back to the kernel ([`crate::sys::memory`]). With 100
/// probed pods the kubelet runs about 5 MiB of its code; start-up and pod creation map
/// most of the binary's 20 MiB.
async fn release_memory() {
    let mut tick = tokio::time::interval(RELEASE_PERIOD);
    loop {
        tick.tick().await;
        let _ = tokio::task::spawn_blocking(|| {
            crate::sys::memory::trim_heap();
            crate::sys::memory::release_code();
        })
        .await;
    }
}

/// Opens the runtime: berth's own (prepared before the async runtime started) or the CRI
/// endpoint. Returns it with its name, the scheme of container IDs.
async fn open_runtime(
    endpoint: Option<&str>,
    args: &RuntimeArgs,
    prepared: Option<Prepared>,
) -> anyhow::Result<(Runtime, String)> {
    match (prepared, endpoint) {
        (Some(p), None) => {
            let r = InProcess::open(args, p).await?;
            let runtime = Runtime {
                images: Arc::new(r.images),
                info: Arc::new(r.info),
                pods: Arc::new(r.pods),
            };
            Ok((runtime, "berth".to_string()))
        }
        (_, Some(endpoint)) => {
            let remote = crate::cri::remote::RemoteRuntime::connect(endpoint)
                .await
                .with_context(|| format!("connect to the CRI runtime at {endpoint}"))?;
            let runtime = Runtime {
                images: Arc::new(remote.clone()),
                info: Arc::new(remote.clone()),
                pods: Arc::new(remote),
            };
            let name = runtime
                .info
                .version(cri_proto::v1::VersionRequest::default())
                .await
                .with_context(|| format!("ask the CRI runtime at {endpoint} its version"))?
                .runtime_name;
            Ok((runtime, name))
        }
        (None, None) => anyhow::bail!("no runtime to drive"),
    }
}

/// What the syncer is built from.
#[derive(Debug, Clone)]
pub struct SyncerConfig {
    pub node_name: String,
    pub host_ips: Vec<String>,
    pub kubelet_root: PathBuf,
    pub pod_log_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub dns: HostDns,
    pub seccomp_default: bool,
    /// Service-account tokens from the API server; None in standalone mode.
    pub tokens: Option<Arc<TokenManager>>,
}

/// The syncer and what is wired around it.
#[derive(Debug)]
pub struct Parts {
    pub syncer: Arc<Syncer>,
    pub recorder: Recorder,
    /// Probe results that change a pod's status wake its worker through this.
    pub probe_wake: mpsc::UnboundedReceiver<String>,
    pub node: NodeFacts,
}

/// Builds the syncer on `runtime`, with the kubepods cgroup hierarchy made.
pub fn build(cfg: SyncerConfig, runtime: Runtime) -> anyhow::Result<Parts> {
    let layout = crate::cgroups::Layout::detect();
    let node = host::node_facts(&layout);
    let cgroups = CgroupManager::new(layout, cfg.cgroup_root.clone())
        .with_hugepage_sizes(node.hugepage_sizes.clone());
    cgroups
        .ensure_qos_hierarchy()
        .context("create the kubepods cgroup hierarchy")?;
    let recorder = Recorder::new();
    let (wake_tx, probe_wake) = mpsc::unbounded_channel();
    let probes = ProbeManager::new(runtime.pods.clone(), recorder.clone(), wake_tx);
    let mut volumes =
        VolumeManager::new(cfg.kubelet_root.clone(), Arc::new(crate::sys::mount::Linux))
            .with_node_allocatable(
                node.cpu_capacity_millis,
                i64::try_from(node.memory_capacity).unwrap_or(i64::MAX),
            );
    if !cfg.dns.cluster_domain.is_empty() {
        volumes = volumes.with_cluster_domain(cfg.dns.cluster_domain.clone());
    }
    let syncer = Arc::new(Syncer {
        runtime,
        volumes,
        cgroups,
        probes,
        recorder: recorder.clone(),
        crash_backoff: Backoff::crash_loop(),
        pull_backoff: Backoff::image_pull(),
        settings: Settings {
            node_name: cfg.node_name,
            host_ips: cfg.host_ips,
            pod_log_dir: cfg.pod_log_dir,
            dns: cfg.dns,
            seccomp_default: cfg.seccomp_default,
            node: node.clone(),
            runtime_handler: String::new(),
        },
        tokens: cfg.tokens,
    });
    Ok(Parts {
        syncer,
        recorder,
        probe_wake,
        node,
    })
}
