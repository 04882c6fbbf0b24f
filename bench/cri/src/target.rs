//! The runtimes the bench drives over CRI, each started by the bench in the test
//! harness's isolation (its own "host" netns, temp dirs, cgroup parent, private mounts):
//! Debian's containerd with its CRI plugin, and `berth cri`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_integration_tests::TestEnv;
use berth_integration_tests::containerd::{CriNetwork, CriPeer};
use berth_integration_tests::cri::CriClient;
use berth_integration_tests::fixtures::{Image, build};
use berth_integration_tests::util::ID_ENV;
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
    // Held for their Drop, which stops the runtime and cleans up after it.
    _containerd: Option<Box<CriPeer<'a>>>,
    _berth: Option<BerthCri>,
}

/// The per-pod processes a runtime keeps, by role.
#[derive(Debug, Default)]
pub struct PodProcs {
    /// (role, pids): containerd: "shim", "pause" (the pause process and its children);
    /// berth: "holder".
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
                    _containerd: Some(Box::new(peer)),
                    _berth: None,
                })
            }
            Kind::Berth => {
                let b = BerthCri::start(env, berth)?;
                Ok(Target {
                    kind,
                    endpoint: b.endpoint.clone(),
                    busybox: b.busybox.clone(),
                    daemon: b.child.id(),
                    _containerd: None,
                    _berth: Some(b),
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
                roles: vec![("holder", vec![pid])],
            }),
        }
    }
}

/// `berth cri` on a socket in the env's temp dir, with its own state root.
#[derive(Debug)]
struct BerthCri {
    child: Child,
    endpoint: String,
    busybox: String,
}

impl BerthCri {
    fn start(env: &TestEnv, berth: &Path) -> anyhow::Result<Self> {
        if !berth.exists() {
            bail!(
                "berth: not built yet: no binary at {} (cargo build --release -p berth)",
                berth.display()
            );
        }
        let help = Command::new(berth)
            .args(["cri", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !help.is_ok_and(|s| s.success()) {
            bail!(
                "berth: not built yet: {} has no `cri` subcommand (build it: cargo build --release -p berth)",
                berth.display()
            );
        }
        let root = env.subdir("berth")?;
        let images = root.join("images");
        let layout = build(&Image::Busybox, &env.subdir("layouts")?.join("busybox"))?;
        let name = format!("berth.test/{}", Image::Busybox.name());
        let out = Command::new(berth)
            .args(["image", "import", "--name", &name, "--root"])
            .arg(&images)
            .arg(&layout.dir)
            .output()
            .context("berth image import")?;
        if !out.status.success() {
            bail!(
                "berth image import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let endpoint = format!("unix://{}", root.join("berth.sock").display());
        let log = std::fs::File::create(root.join("berth.log"))?;
        let child = env
            .host
            .command(berth.to_str().context("berth path is not UTF-8")?)
            .env(ID_ENV, env.id())
            .args(["cri", "--listen", &endpoint, "--root"])
            .arg(&root)
            .arg("--image-root")
            .arg(&images)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start berth cri")?;
        let b = BerthCri {
            child,
            endpoint,
            busybox: format!("{name}:latest"),
        };
        let ep = b.endpoint.clone();
        berth_integration_tests::containerd::on_own_runtime(move || async move {
            CriClient::wait_ready(&ep, Duration::from_secs(20))
                .await
                .map(|_| ())
        })?;
        Ok(b)
    }
}

impl Drop for BerthCri {
    fn drop(&mut self) {
        // SIGTERM lets it remove its socket; then make sure it is gone.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The berth binary the bench starts: `--berth`, else the workspace's build.
pub fn berth_binary(arg: Option<PathBuf>) -> PathBuf {
    arg.unwrap_or_else(|| berth_integration_tests::util::workspace_bin("berth"))
}
