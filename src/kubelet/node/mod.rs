//! `berth node`: the kubelet as a node of a cluster. It joins the API server named by
//! --kubeconfig (or gets its credentials through --bootstrap-kubeconfig), runs the pods
//! bound to it and the static pods of --pod-manifest-path, and reports them:
//!
//! ```text
//! API server --watch pods (spec.nodeName)--> config ----> sync loop -> workers -> runtime
//!     ^                                        ^ static pod dir     |
//!     |<-- PATCH pods/status, DELETE (status manager) <-- status store
//!     |<-- mirror pods of the static pods (mirror)
//! ```
//!
//! SIGTERM stops the kubelet and leaves the pods running, as kubelet does: the next start
//! adopts them. Only wiring: each part owns its logic.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{ArgAction, Args};
use tokio::sync::watch;

use super::certificate::{self, ClientOptions};
use super::config::apiserver::ApiView;
use super::config::{ApiSource, PodConfig, SourceConfig};
use super::events::{Event, Recorder};
use super::kuberuntime::dns::HostDns;
use super::lifecycle;
use super::nodelease::{DEFAULT_LEASE_DURATION_SECONDS, NodeLease};
use super::nodestatus::{
    Host, NodeEvent, NodeEventSink, NodeStatus, NodeStatusConfig, Reservation, parse_eviction_hard,
    parse_node_labels, parse_reserved, parse_taints,
};
use super::objects::ObjectManager;
use super::objects::Objects;
use super::parts::{self, SyncerConfig};
use super::reject::Rejected;
use super::standalone::host;
use super::status::manager::StatusManager;
use super::status::store::StatusStore;
use super::sync_loop::{ApiInputs, SyncLoop};
use super::token::TokenManager;
use super::worker::Workers;
use crate::cri::inprocess::RuntimeArgs;

/// `berth node`'s flags: kubelet's, where kubelet has them.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The kubeconfig with the API server's address and the node's credentials.
    #[arg(long)]
    pub kubeconfig: PathBuf,

    /// A kubeconfig with a bootstrap token: used to get the node's client certificate
    /// through a CertificateSigningRequest when --kubeconfig does not exist yet.
    #[arg(long)]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// Where the node's client certificate and key are kept. Default: <root-dir>/pki.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,

    /// Renew the client certificate through the API at 70-90% of its validity.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub rotate_certificates: bool,

    /// The node's name instead of the hostname.
    #[arg(long)]
    pub hostname_override: Option<String>,

    /// The node's IP addresses (status.addresses, the pods' hostIP). Default: the first
    /// address of the first interface that is up and not loopback.
    #[arg(long = "node-ip", value_delimiter = ',')]
    pub node_ips: Vec<IpAddr>,

    /// Labels the Node is registered with: key=value,...
    #[arg(long, value_delimiter = ',')]
    pub node_labels: Vec<String>,

    /// Taints the Node is registered with: key=value:Effect,...
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,

    /// How many pods the node runs at most (capacity and allocatable `pods`).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,

    /// Resources set aside for Kubernetes' own daemons, out of allocatable:
    /// cpu=100m,memory=256Mi,ephemeral-storage=1Gi.
    #[arg(long)]
    pub kube_reserved: Option<String>,

    /// Resources set aside for the operating system's daemons, out of allocatable (the
    /// same form as --kube-reserved).
    #[arg(long)]
    pub system_reserved: Option<String>,

    /// The hard eviction thresholds the pressure conditions report against, and the
    /// memory and disk reserved for them: signal<value,... with the signals
    /// memory.available, nodefs.available, nodefs.inodesFree, imagefs.available,
    /// imagefs.inodesFree and pid.available. Given, it replaces the whole default:
    /// memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%.
    /// berth reports the pressure; it does not evict pods.
    #[arg(long)]
    pub eviction_hard: Option<String>,

    /// The kubelet's directory: pods/<uid>/volumes, pki, ...
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,

    /// A static pod directory, watched; its pods get mirror pods in the API.
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,

    /// A CRI runtime to drive instead of berth's own, e.g.
    /// unix:///run/containerd/containerd.sock.
    #[arg(long, env = "BERTH_CONTAINER_RUNTIME_ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    /// The cluster DNS service's addresses, for pods with dnsPolicy ClusterFirst.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,

    /// The cluster's DNS domain: pods search <ns>.svc.<domain>, svc.<domain>, <domain>.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,

    #[command(flatten)]
    pub runtime: RuntimeArgs,

    /// The cgroup the kubepods hierarchy goes below (kubelet's --cgroup-root).
    #[arg(long, default_value = "/")]
    pub cgroup_root: PathBuf,

    /// Where containers' logs go: <dir>/<namespace>_<name>_<uid>/<container>/<n>.log.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,

    /// The resolv.conf that pods with dnsPolicy Default get.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// RuntimeDefault seccomp for containers that ask for none (kubelet's seccompDefault).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub seccomp_default: bool,
}

/// Node events go to the recorder, and from there to the API as Events on the Node.
struct NodeEvents(Recorder, String);

impl NodeEventSink for NodeEvents {
    fn record(&self, e: NodeEvent) {
        self.0
            .record(Event::node(&self.1, e.kind, e.reason, e.message));
    }
}

/// The runtime's image filesystem, as its ImageFsInfo names it (kubelet reads imagefs the
/// same way). None, with a warning, when the runtime does not answer.
async fn image_filesystem(runtime: &super::Runtime) -> Option<PathBuf> {
    match runtime
        .images
        .image_fs_info(cri_proto::v1::ImageFsInfoRequest {})
        .await
    {
        Ok(r) => r
            .image_filesystems
            .into_iter()
            .find_map(|f| f.fs_id.map(|id| PathBuf::from(id.mountpoint)))
            .filter(|p| p.is_absolute()),
        Err(e) => {
            tracing::warn!("ImageFsInfo: {e}; imagefs thresholds are not evaluated");
            None
        }
    }
}

/// The flags that are data, read before anything starts: a bad one stops `berth node`
/// with the flag named, before it touches the runtime or the API.
#[derive(Debug)]
struct Flags {
    node_labels: std::collections::BTreeMap<String, String>,
    taints: Vec<k8s_openapi::api::core::v1::Taint>,
    reservation: Reservation,
}

impl Flags {
    fn parse(args: &NodeArgs) -> anyhow::Result<Flags> {
        let mut reservation = Reservation::default();
        if let Some(v) = &args.kube_reserved {
            reservation.kube_reserved = parse_reserved("--kube-reserved", v)?;
        }
        if let Some(v) = &args.system_reserved {
            reservation.system_reserved = parse_reserved("--system-reserved", v)?;
        }
        if let Some(v) = &args.eviction_hard {
            reservation.eviction = parse_eviction_hard(v)?;
        }
        Ok(Flags {
            node_labels: parse_node_labels(&args.node_labels)?,
            taints: parse_taints(&args.register_with_taints)?,
            reservation,
        })
    }
}

/// Runs `berth node` until SIGTERM or SIGINT.
pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let flags = Flags::parse(&args)?;
    let endpoint = args.container_runtime_endpoint.clone();
    let runtime_args = args.runtime.clone();
    parts::run(endpoint, runtime_args, move |runtime, name, stop| {
        run_node(args, flags, runtime, name, stop)
    })
}

async fn run_node(
    args: NodeArgs,
    flags: Flags,
    runtime: super::Runtime,
    runtime_name: String,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // The override is the node's hostname too (its label and Hostname address), as
    // kubelet's GetHostname(hostnameOverride).
    let hostname = match &args.hostname_override {
        Some(n) => n.trim().to_lowercase(),
        None => host::hostname()?,
    };
    let node_name = hostname.clone();
    let host_ips: Vec<String> = if args.node_ips.is_empty() {
        host::node_ips()
    } else {
        args.node_ips.iter().map(IpAddr::to_string).collect()
    };
    // The kubelet's directory exists from the start, as kubelet's setupDataDirs makes it
    // (its filesystem is the node's ephemeral-storage capacity).
    std::fs::create_dir_all(&args.root_dir)
        .with_context(|| format!("create --root-dir {}", args.root_dir.display()))?;
    let mut copts = ClientOptions::new(&args.kubeconfig, &args.root_dir, &node_name);
    copts.bootstrap_kubeconfig = args.bootstrap_kubeconfig.clone();
    if let Some(d) = &args.cert_dir {
        copts.cert_dir = d.clone();
    }
    copts.rotate = args.rotate_certificates;
    // Kept for the daemon's life: it owns the client certificate's rotation.
    let node_client = certificate::connect(&copts)
        .await
        .context("the node's API client")?;
    let client = node_client.client();
    let mut dns = HostDns::read(&args.resolv_conf).unwrap_or_else(|e| {
        tracing::warn!(path = %args.resolv_conf.display(), "read resolv.conf: {e}");
        HostDns::default()
    });
    dns.cluster_servers = args.cluster_dns.iter().map(IpAddr::to_string).collect();
    dns.cluster_domain = args.cluster_domain.clone();
    let runtime_info = runtime.info.clone();
    let image_fs = image_filesystem(&runtime).await;
    let parts = parts::build(
        SyncerConfig {
            node_name: node_name.clone(),
            host_ips,
            kubelet_root: args.root_dir.clone(),
            pod_log_dir: args.pod_log_dir.clone(),
            cgroup_root: args.cgroup_root.clone(),
            dns,
            seccomp_default: args.seccomp_default,
            tokens: Some(Arc::new(TokenManager::new(client.clone()))),
        },
        runtime,
    )?;
    let (syncer, recorder) = (parts.syncer, parts.recorder);
    let initial_node =
        lifecycle::standalone_node(&node_name, &parts.node, i64::from(args.max_pods));
    // Upstream reports one address without --node-ip.
    let node_ips: Vec<IpAddr> = if args.node_ips.is_empty() {
        host::node_ips()
            .iter()
            .take(1)
            .filter_map(|s| s.parse().ok())
            .collect()
    } else {
        args.node_ips.clone()
    };
    let mut status_cfg = NodeStatusConfig::new(&node_name, &hostname, node_ips);
    status_cfg.registration.node_labels = flags.node_labels;
    status_cfg.registration.taints = flags.taints;
    status_cfg.max_pods = i64::from(args.max_pods);
    status_cfg.runtime_name = runtime_name.clone();
    status_cfg.reservation = flags.reservation;
    let node_host = Arc::new(Host::new(
        args.root_dir.clone(),
        image_fs,
        status_cfg.reservation.eviction.clone(),
    ));
    let node_events = Arc::new(NodeEvents(recorder.clone(), node_name.clone()));
    let (node_status, node_rx) = NodeStatus::new(
        status_cfg,
        client.clone(),
        runtime_info,
        node_host,
        node_events,
    );
    let (object_manager, api_objects) = ObjectManager::new(client.clone());
    let (view_tx, view_rx) = watch::channel(Arc::new(ApiView::default()));
    let mut sources = SourceConfig::new(node_name.clone());
    sources.manifest_dir = args.pod_manifest_path.clone();
    sources.api = Some(ApiSource {
        client: client.clone(),
        view: view_tx,
    });
    let (config, desired) = PodConfig::start(sources).context("start the pod sources")?;
    let store = Arc::new(StatusStore::keeping_finished());
    let (objects_tx, objects_rx) = watch::channel(Arc::new(Objects::default()));
    let workers = Workers::new(
        syncer.clone(),
        store.clone(),
        objects_rx,
        runtime_name.clone(),
    );
    let mut tasks = vec![
        tokio::spawn(
            StatusManager {
                client: client.clone(),
                store: store.clone(),
                view: view_rx.clone(),
            }
            .run(),
        ),
        tokio::spawn(super::mirror::run(
            client.clone(),
            desired.clone(),
            view_rx.clone(),
            node_rx.clone(),
        )),
        super::events::sink::spawn(client.clone(), &recorder, &node_name),
        tokio::spawn(node_status.run()),
        tokio::spawn(
            NodeLease::new(client.clone(), &node_name, DEFAULT_LEASE_DURATION_SECONDS).run(),
        ),
    ];
    tracing::info!(node = %node_name, runtime = %runtime_name, "kubelet joining the API server");
    SyncLoop {
        syncer,
        workers,
        desired,
        objects: objects_tx,
        probe_wake: parts.probe_wake,
        api: Some(ApiInputs {
            view: view_rx,
            rejected: Rejected::new(store, recorder),
            objects: object_manager,
            api_objects,
            node: node_rx,
            initial_node,
            watched_for: None,
        }),
    }
    .run(stop, None)
    .await;
    drop(config);
    for t in tasks.drain(..) {
        t.abort();
    }
    drop(node_client);
    tracing::info!("kubelet stopped; the pods keep running");
    Ok(())
}
