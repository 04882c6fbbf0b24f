//! `berth run`: the kubelet in standalone mode, in the foreground. Pods come from
//! manifest files, directories and URLs (no API server); the runtime is berth's own,
//! in-process, or any CRI endpoint. A person at a terminal watches a live table; a
//! pipe gets the pods' status objects as JSON or YAML, or structured logs. SIGTERM or
//! Ctrl-C terminates every pod gracefully; kill -9 leaves them running for the next
//! `berth run` to adopt.

mod host;
mod output;
mod view;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args, ValueEnum};
use tokio::sync::{mpsc, watch};

use super::cm::CgroupManager;
use super::config::{PodConfig, SourceConfig};
use super::events::Recorder;
use super::kuberuntime::backoff::Backoff;
use super::kuberuntime::dns::HostDns;
use super::objects::Objects;
use super::prober::ProbeManager;
use super::runtime::Runtime;
use super::status::store::StatusStore;
use super::sync::{Settings, Syncer};
use super::sync_loop::SyncLoop;
use super::volumes::VolumeManager;
use super::worker::Workers;
use crate::cri::inprocess::{InProcess, RuntimeArgs};

/// How `berth run` shows the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A live table (the default on a terminal).
    Table,
    /// Each pod's status object as JSON, one line per change.
    Json,
    /// Each pod's status object as a YAML document per change.
    Yaml,
    /// Logs only (the default when stdout is not a terminal).
    Log,
}

/// `berth run`'s flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pod manifests: YAML files (Pods, and the ConfigMaps and Secrets they use), directories
    /// of them, or http(s) URLs. Files and directories are watched; URLs polled.
    pub sources: Vec<String>,

    /// A static pod directory (kubelet's staticPodPath), watched for added, changed and
    /// removed manifests.
    #[arg(long)]
    pub manifests: Option<PathBuf>,

    /// The node's name: static pods are named <name>-<node name>. Default: the hostname.
    #[arg(long)]
    pub node_name: Option<String>,

    /// How to show the pods: table (default on a terminal), json, yaml, log.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,

    /// A CRI runtime to drive instead of berth's own, e.g.
    /// unix:///run/containerd/containerd.sock.
    #[arg(long, env = "BERTH_CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// The cgroup the kubepods hierarchy goes below (kubelet's --cgroup-root).
    #[arg(long, default_value = "/")]
    pub cgroup_root: PathBuf,

    /// The kubelet's directory: pods/<uid>/volumes and more. Default: <root>/kubelet.
    #[arg(long)]
    pub kubelet_root: Option<PathBuf>,

    /// Where containers' logs go: <dir>/<namespace>_<name>_<uid>/<container>/<n>.log.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,

    /// The resolv.conf that pods with dnsPolicy Default (and ClusterFirst, with no cluster
    /// DNS) get.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// The node's IP addresses (status.hostIP). Default: the first address of the first
    /// interface that is up and not loopback.
    #[arg(long = "node-ip")]
    pub node_ips: Vec<IpAddr>,

    /// RuntimeDefault seccomp for containers that ask for none (kubelet's seccompDefault).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub seccomp_default: bool,

    /// Seconds between full re-reads of manifest files (inotify reports changes at once).
    #[arg(long, default_value_t = 20)]
    pub file_check_frequency: u64,

    /// Seconds between fetches of manifest URLs.
    #[arg(long, default_value_t = 20)]
    pub http_check_frequency: u64,

    /// Seconds to wait for pods to terminate at SIGTERM before exiting anyway.
    #[arg(long, default_value_t = 300)]
    pub shutdown_limit: u64,
}

/// Runs `berth run` until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let output = args.output.unwrap_or_else(|| {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Output::Table
        } else {
            Output::Log
        }
    });
    let prepared = match args.container_runtime_endpoint {
        None => Some(InProcess::prepare(&args.runtime)?),
        Some(_) => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    rt.block_on(async move {
        let stop = crate::cri::cli::stop_signal().context("install SIGTERM/SIGINT handlers")?;
        let (runtime, runtime_name) = match (prepared, &args.container_runtime_endpoint) {
            (Some(p), None) => {
                let r = InProcess::open(&args.runtime, p).await?;
                let runtime = Runtime {
                    images: Arc::new(r.images),
                    info: Arc::new(r.info),
                    pods: Arc::new(r.pods),
                };
                (runtime, "berth".to_string())
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
                (runtime, name)
            }
            (None, None) => anyhow::bail!("no runtime to drive"),
        };
        run_kubelet(args, runtime, runtime_name, output, stop).await
    })
}

async fn run_kubelet(
    args: RunArgs,
    runtime: Runtime,
    runtime_name: String,
    output: Output,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let node_name = match args.node_name.clone() {
        Some(n) => n,
        None => host::hostname()?,
    };
    let host_ips = if args.node_ips.is_empty() {
        host::node_ips()
    } else {
        args.node_ips.iter().map(IpAddr::to_string).collect()
    };
    let kubelet_root = args
        .kubelet_root
        .clone()
        .unwrap_or_else(|| args.runtime.root.join("kubelet"));
    let dns = HostDns::read(&args.resolv_conf).unwrap_or_else(|e| {
        tracing::warn!(path = %args.resolv_conf.display(), "read resolv.conf: {e}; pods get no DNS servers");
        HostDns::default()
    });
    let layout = crate::cgroups::Layout::detect();
    let node = host::node_facts(&layout);
    let cgroups = CgroupManager::new(layout, args.cgroup_root.clone())
        .with_hugepage_sizes(node.hugepage_sizes.clone());
    cgroups
        .ensure_qos_hierarchy()
        .context("create the kubepods cgroup hierarchy")?;
    let recorder = Recorder::new();
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let probes = ProbeManager::new(runtime.pods.clone(), recorder.clone(), wake_tx);
    let volumes = VolumeManager::new(kubelet_root.clone(), Arc::new(crate::sys::mount::Linux))
        .with_node_allocatable(
            node.cpu_capacity_millis,
            i64::try_from(node.memory_capacity).unwrap_or(i64::MAX),
        );
    let syncer = Arc::new(Syncer {
        runtime: runtime.clone(),
        volumes,
        cgroups,
        probes,
        recorder: recorder.clone(),
        crash_backoff: Backoff::crash_loop(),
        pull_backoff: Backoff::image_pull(),
        settings: Settings {
            node_name: node_name.clone(),
            host_ips,
            pod_log_dir: args.pod_log_dir.clone(),
            dns,
            seccomp_default: args.seccomp_default,
            node: node.clone(),
            runtime_handler: String::new(),
        },
        tokens: None,
    });
    let (mut paths, mut urls) = (vec![], vec![]);
    for s in &args.sources {
        if s.starts_with("http://") || s.starts_with("https://") {
            urls.push(s.clone());
        } else {
            paths.push(PathBuf::from(s));
        }
    }
    let (config, desired) = PodConfig::start(SourceConfig {
        node_name: node_name.clone(),
        manifest_dir: args.manifests.clone(),
        paths,
        urls,
        url_period: Duration::from_secs(args.http_check_frequency.max(1)),
        file_period: Duration::from_secs(args.file_check_frequency.max(1)),
    })
    .context("start the pod sources")?;
    let store = Arc::new(StatusStore::default());
    let (objects_tx, objects_rx) = watch::channel(Arc::new(Objects::default()));
    let workers = Workers::new(
        syncer.clone(),
        store.clone(),
        objects_rx,
        runtime_name.clone(),
    );
    tracing::info!(node = %node_name, runtime = %runtime_name, "kubelet running in standalone mode");
    let shower = tokio::spawn(output::show(output, store.clone(), recorder.subscribe()));
    SyncLoop {
        syncer,
        workers,
        desired,
        objects: objects_tx,
        probe_wake: wake_rx,
    }
    .run(stop, Duration::from_secs(args.shutdown_limit))
    .await;
    drop(config);
    shower.abort();
    if output == Output::Table {
        view::leave();
    }
    tracing::info!("every pod terminated; bye");
    Ok(())
}
