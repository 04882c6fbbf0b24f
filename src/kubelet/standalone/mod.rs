//! `berth run`: the kubelet in standalone mode, in the foreground. Pods come from
//! manifest files, directories and URLs (no API server); the runtime is berth's own,
//! in-process, or any CRI endpoint. A person at a terminal watches a live table; a
//! pipe gets the pods' status objects as JSON or YAML, or structured logs. SIGTERM or
//! Ctrl-C terminates every pod gracefully; kill -9 leaves them running for the next
//! `berth run` to adopt.

pub(crate) mod host;
mod output;
mod view;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args, ValueEnum};
use tokio::sync::watch;

use super::config::{PodConfig, SourceConfig};
use super::kuberuntime::dns::HostDns;
use super::objects::Objects;
use super::parts::{self, SyncerConfig};
use super::runtime::Runtime;
use super::status::store::StatusStore;
use super::sync_loop::SyncLoop;
use super::worker::Workers;
use crate::cri::inprocess::RuntimeArgs;

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
    let endpoint = args.container_runtime_endpoint.clone();
    let runtime_args = args.runtime.clone();
    parts::run(endpoint, runtime_args, move |runtime, name, stop| {
        run_kubelet(args, runtime, name, output, stop)
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
    let parts = parts::build(
        SyncerConfig {
            node_name: node_name.clone(),
            host_ips,
            kubelet_root,
            pod_log_dir: args.pod_log_dir.clone(),
            cgroup_root: args.cgroup_root.clone(),
            dns,
            seccomp_default: args.seccomp_default,
            tokens: None,
        },
        runtime,
    )?;
    let (syncer, recorder) = (parts.syncer, parts.recorder);
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
        api: None,
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
        probe_wake: parts.probe_wake,
        api: None,
    }
    .run(stop, Some(Duration::from_secs(args.shutdown_limit)))
    .await;
    drop(config);
    shower.abort();
    if output == Output::Table {
        view::leave();
    }
    tracing::info!("every pod terminated; bye");
    Ok(())
}
