//! The runtimes the bench drives over CRI, each started by the bench in the test
//! harness's isolation (its own "host" netns, temp dirs, cgroup parent, private mounts):
//! Debian's containerd with its CRI plugin, and `berth cri`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use berth_integration_tests::TestEnv;
use berth_integration_tests::berth_cri::BerthCri;
use berth_integration_tests::containerd::{CriNetwork, CriPeer};
use berth_integration_tests::cri::CriClient;
use berth_integration_tests::fixtures::Image;
use serde_json::Value;

use crate::procfs;

/// Which runtime a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Containerd,
    Berth,
}

/// A running runtime with the bench's images in it.
#[derive(Debug)]
pub struct Target<'a> {
    pub kind: Kind,
    pub endpoint: String,
    /// The busybox image as the runtime names it.
    pub busybox: String,
    /// The daemon's pid (containerd, or `berth cri`).
    pub daemon: u32,
    /// The berth binary (measured or not).
    berth: PathBuf,
    // Held for their Drop, which stops the runtime and cleans up after it.
    _containerd: Option<Box<CriPeer<'a>>>,
    _berth: Option<Box<BerthCri<'a>>>,
}

/// The per-pod processes a runtime keeps, by role.
#[derive(Debug, Default)]
pub struct PodProcs {
    /// (role, pids): containerd: "shim", "pause" (the pause process and its children);
    /// berth: "holder", and "zygote", the one process per daemon that forks the holders
    /// (its memory is the pods' to share).
    pub roles: Vec<(&'static str, Vec<u32>)>,
}

impl<'a> Target<'a> {
    pub fn start(kind: Kind, env: &'a TestEnv, berth: &Path) -> anyhow::Result<Self> {
        match kind {
            Kind::Containerd => {
                let dir = env.subdir("containerd")?;
                let ipam = env.subdir("ipam")?;
                let net = CriNetwork::reference("10.244.40.0/24", &ipam);
                let peer = CriPeer::start(env, &dir, &net)?;
                let busybox = peer.import(&Image::Busybox)?;
                Ok(Target {
                    kind,
                    endpoint: peer.endpoint.clone(),
                    busybox,
                    daemon: peer.pid(),
                    berth: berth.to_path_buf(),
                    _containerd: Some(Box::new(peer)),
                    _berth: None,
                })
            }
            Kind::Berth => {
                if !berth.exists() {
                    bail!(
                        "berth: not built: no binary at {} (cargo build --release -p berth \
                         -p berth-cni-plugins)",
                        berth.display()
                    );
                }
                let dir = env.subdir("berth")?;
                let ipam = env.subdir("ipam-berth")?;
                let built = berth
                    .parent()
                    .context("the berth binary's directory")?
                    .to_path_buf();
                let net = CriNetwork::berth(&built, &dir.join("cni-bin"), "10.244.41.0/24", &ipam)?;
                let b = BerthCri::start_binary(env, &dir, &net, berth)?;
                let busybox = b.import(&Image::Busybox)?;
                Ok(Target {
                    kind,
                    endpoint: b.endpoint.clone(),
                    busybox,
                    daemon: b.pid().context("berth cri pid")?,
                    berth: berth.to_path_buf(),
                    _containerd: None,
                    _berth: Some(Box::new(b)),
                })
            }
        }
    }

    /// The processes the runtime keeps for sandbox `id`, found from the sandbox's pid in
    /// its verbose status (`info["info"]` JSON, `pid`: containerd's pause process).
    pub async fn pod_procs(&self, c: &mut CriClient, id: &str) -> anyhow::Result<PodProcs> {
        let st = c.pod_sandbox_status(id, true).await?;
        let info: Value = serde_json::from_str(st.info.get("info").map_or("{}", |s| s))
            .context("sandbox status info is not JSON")?;
        let pid = info["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .with_context(|| format!("{:?}: verbose sandbox status gives no pid", self.kind))?;
        match self.kind {
            Kind::Containerd => {
                let shim = procfs::ppid(pid)?;
                let name = procfs::comm(shim);
                if !name.starts_with("containerd-shim") {
                    bail!("parent of pause {pid} is {shim} ({name}), not a shim");
                }
                Ok(PodProcs {
                    roles: vec![("shim", vec![shim]), ("pause", procfs::tree(pid))],
                })
            }
            Kind::Berth => Ok(PodProcs {
                roles: vec![
                    ("holder", vec![pid]),
                    ("zygote", procfs::children_running(self.daemon, "zygote")),
                ],
            }),
        }
    }
}

impl Target<'_> {
    /// The `berth-holder` binary `berth cri` starts the holders from (next to berth's).
    pub fn holder_binary(&self) -> PathBuf {
        let bin = self.berth.with_file_name("berth-holder");
        bin.canonicalize().unwrap_or(bin)
    }
}

/// The berth binary the bench starts: `--berth`, else the workspace's build.
pub fn berth_binary(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| berth_integration_tests::util::workspace_bin("berth"))
}
