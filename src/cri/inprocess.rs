//! berth's in-process runtime, built as `berth cri` serves it and as `berth run` drives
//! it: the image store and image service, the pod holders, CNI, sandboxes, containers and
//! the streaming server, with their state recovered from disk.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::cli::{DEFAULT_STATE_ROOT, load_hosts};
use super::image_pull::PullConfig;
use super::images::Images;
use super::pods::Pods;
use super::runtime_info::RuntimeInfo;
use super::streams::Streams;
use crate::image::ImageStore;
use crate::image::pull::{DEFAULT_MAX_CONCURRENT, PullOptions};
use crate::image::registry::RegistryHosts;
use crate::image::unpack::UnpackOptions;
use crate::net::cni::{Invoker, InvokerConfig};
use crate::runtime::container::{ContainerConfig, Containers};
use crate::runtime::sandbox::{LinuxHolders, SandboxConfig, Sandboxes};
use crate::runtime::sessions::Sessions;
use crate::runtime::spec::{HostFacts, RuntimeOptions};
use crate::runtime::streaming::{StreamingConfig, StreamingServer};
use crate::sys::overlay::LinuxOverlay;

/// The in-process runtime's flags, shared by `berth cri` and `berth run`.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// berth's state directory.
    #[arg(long, env = "BERTH_ROOT", default_value = DEFAULT_STATE_ROOT)]
    pub root: PathBuf,

    /// The image store (default: <root>/images, where `berth image` keeps it).
    #[arg(long, env = "BERTH_IMAGE_ROOT")]
    pub image_root: Option<PathBuf>,

    /// Per-registry settings (YAML): mirrors, plainHttp, insecureSkipVerify, caFiles.
    /// Default: /etc/berth/registries.yaml when it exists.
    #[arg(long, env = "BERTH_REGISTRY_CONFIG")]
    pub registry_config: Option<PathBuf>,

    /// Layers one pull downloads at once.
    #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_downloads: u16,

    /// Allow character and block device nodes in layers (refused by default).
    #[arg(long)]
    pub allow_device_nodes: bool,

    /// Refuse an image that unpacks to more than this (bytes, or with a K, M, G or T
    /// suffix, powers of 1024): a guard against decompression bombs. Default: no cap.
    #[arg(long, env = "BERTH_MAX_UNPACKED_SIZE", value_parser = crate::image::cli::parse_size)]
    pub max_unpacked_size: Option<u64>,

    /// CNI configuration directory; NetworkReady is true when a valid list is in it.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,

    /// Directories holding the CNI plugin binaries, searched in order.
    #[arg(long = "cni-bin-dir", default_values = ["/usr/lib/berth/cni", "/opt/cni/bin"])]
    pub cni_bin_dirs: Vec<PathBuf>,

    /// Runtime state that does not outlive a reboot: the pods' holder sockets and
    /// namespace files.
    #[arg(long, env = "BERTH_STATE_DIR", default_value = "/run/berth")]
    pub state_dir: PathBuf,

    /// The address the streaming server (Exec, Attach, PortForward sessions) listens on
    /// (containerd's stream_server_address).
    #[arg(long, default_value = "127.0.0.1")]
    pub stream_address: std::net::IpAddr,

    /// The streaming server's port; 0 picks a free one (containerd's stream_server_port).
    #[arg(long, default_value_t = 0)]
    pub stream_port: u16,

    /// The pod holder binary (default: `berth-holder` next to this executable).
    #[arg(long, env = "BERTH_HOLDER_PATH")]
    pub holder_path: Option<PathBuf>,
}

/// The `berth-holder` binary to start the pods' holders from: `--holder-path`, or the one
/// next to this executable. Checked at start, so that a missing one is an error now and
/// not at the first RunPodSandbox.
fn holder_binary(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = match flag {
        Some(p) => p,
        None => crate::runtime::holder::default_binary()
            .context("find berth's own executable (to find berth-holder next to it)")?,
    };
    let meta = std::fs::metadata(&path).with_context(|| {
        format!(
            "the pod holder binary {}: install berth-holder next to berth, or pass \
             --holder-path",
            path.display()
        )
    })?;
    anyhow::ensure!(
        meta.is_file() && meta.permissions().mode() & 0o111 != 0,
        "the pod holder binary {} is not an executable file (--holder-path)",
        path.display()
    );
    Ok(path)
}

/// What is checked and read before the async runtime starts.
#[derive(Debug)]
pub struct Prepared {
    image_root: PathBuf,
    hosts: RegistryHosts,
    holder_binary: PathBuf,
}

/// The in-process runtime's services.
#[derive(Debug)]
pub struct InProcess {
    pub images: Images,
    pub info: RuntimeInfo,
    pub pods: Pods,
    pub streams: Streams,
}

impl InProcess {
    /// Reads the registry settings and finds the holder binary: errors now, not at the
    /// first pod.
    pub fn prepare(args: &RuntimeArgs) -> anyhow::Result<Prepared> {
        if !nix::unistd::geteuid().is_root() {
            tracing::warn!("not running as root: pulls cannot keep file owners in layers");
        }
        Ok(Prepared {
            image_root: args
                .image_root
                .clone()
                .unwrap_or_else(|| args.root.join("images")),
            hosts: load_hosts(args.registry_config.as_deref())?,
            holder_binary: holder_binary(args.holder_path.clone())?,
        })
    }

    /// Opens the stores and recovers every sandbox and container.
    pub async fn open(args: &RuntimeArgs, p: Prepared) -> anyhow::Result<InProcess> {
        let image_root = p.image_root;
        let store = ImageStore::open(
            &image_root,
            Arc::new(LinuxOverlay),
            UnpackOptions {
                allow_devices: args.allow_device_nodes,
                max_image_bytes: args.max_unpacked_size,
            },
        )
        .with_context(|| format!("open the image store at {}", image_root.display()))?;
        tracing::info!(
            images = %image_root.display(),
            count = store.images().map(|i| i.len()).unwrap_or(0),
            cni_conf_dir = %args.cni_conf_dir.display(),
            "image store open"
        );
        let images = Images::new(
            store,
            PullConfig {
                hosts: p.hosts,
                options: PullOptions {
                    max_concurrent: args.max_concurrent_downloads.into(),
                    ..PullOptions::default()
                },
            },
        );
        // The zygote inherits the daemon's environment, BERTH_LOG included.
        let holders = LinuxHolders::new(&args.state_dir, p.holder_binary, vec![]);
        let cni = Invoker::new(InvokerConfig {
            conf_dir: args.cni_conf_dir.clone(),
            bin_dirs: args.cni_bin_dirs.clone(),
            cache_dir: args.root.join("cni/results"),
            ..InvokerConfig::default()
        });
        let sandboxes = Sandboxes::open(
            SandboxConfig {
                records: args.root.join("sandboxes"),
                state_dir: args.state_dir.clone(),
                facts: HostFacts::detect(),
            },
            Arc::new(holders),
            Arc::new(cni),
        )
        .await
        .context("recover the pod sandboxes")?;
        let containers = Containers::open(
            ContainerConfig {
                records: args.root.join("containers"),
                options: RuntimeOptions {
                    restrict_oom_score_adj: !sandboxes.facts().can_lower_oom_score_adj,
                    ..RuntimeOptions::default()
                },
            },
            images.store().clone(),
            sandboxes.clone(),
        )
        .await
        .context("recover the containers")?;
        tracing::info!(
            sandboxes = sandboxes.list(None).len(),
            containers = containers.all().len(),
            state = %args.state_dir.display(),
            "runtime state recovered"
        );
        let sessions = Sessions {
            sandboxes: sandboxes.clone(),
            containers: containers.clone(),
        };
        let stream_server = StreamingServer::start(
            StreamingConfig {
                addr: std::net::SocketAddr::new(args.stream_address, args.stream_port),
                ..StreamingConfig::default()
            },
            Arc::new(sessions.clone()),
        )
        .await
        .context("start the streaming server")?;
        Ok(InProcess {
            images,
            info: RuntimeInfo {
                cni_conf_dir: args.cni_conf_dir.clone(),
            },
            pods: Pods {
                sandboxes,
                containers,
            },
            streams: Streams {
                sessions,
                server: Arc::new(stream_server),
            },
        })
    }
}
