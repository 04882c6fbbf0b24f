//! containerd's CRI plugin as the peer of berth's CRI server: configured as a node runs it,
//! on the test's own paths, and emptied through CRI before containerd stops.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::{Value, json};

use super::Containerd;
use crate::TestEnv;
use crate::cri::CriClient;
use crate::fixtures::Image;
use crate::util::wait_for;

/// Machine paths that a peer writes to whatever it is told, covered in the test's private
/// mount namespace: a fresh tmpfs, or an overlay whose writes land in the test's temp dir.
/// Undone (in reverse) on drop.
#[derive(Debug)]
pub struct PrivatePaths(Vec<PathBuf>);

impl PrivatePaths {
    /// Covers each of `tmpfs` with a tmpfs and each of `overlay` with an overlay whose
    /// upper dir is under `tmp`.
    pub fn new(tmp: &Path, tmpfs: &[&str], overlay: &[&str]) -> anyhow::Result<Self> {
        let mut done = PrivatePaths(Vec::new());
        for target in tmpfs {
            mount(
                Some("tmpfs"),
                *target,
                Some("tmpfs"),
                MsFlags::empty(),
                Some("mode=755"),
            )
            .with_context(|| format!("tmpfs on {target}"))?;
            done.0.push(target.into());
        }
        for target in overlay {
            let tag = target.trim_start_matches('/').replace('/', "-");
            let (up, work) = (
                tmp.join(format!("{tag}-up")),
                tmp.join(format!("{tag}-work")),
            );
            std::fs::create_dir_all(&up)?;
            std::fs::create_dir_all(&work)?;
            let opts = format!(
                "lowerdir={target},upperdir={},workdir={}",
                up.display(),
                work.display()
            );
            mount(
                Some("overlay"),
                *target,
                Some("overlay"),
                MsFlags::empty(),
                Some(opts.as_str()),
            )
            .with_context(|| format!("overlay on {target}"))?;
            done.0.push(target.into());
        }
        Ok(done)
    }
}

impl Drop for PrivatePaths {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = umount2(p, MntFlags::MNT_DETACH);
        }
    }
}

/// The containerd namespace the CRI plugin keeps its images and containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The CNI set-up a [`CriPeer`] gives its pods.
#[derive(Debug, Clone)]
pub struct CriNetwork {
    /// Where the plugins are (containerd also wants a `loopback` plugin here).
    pub bin_dir: PathBuf,
    /// The conflist, written to the peer's conf dir.
    pub conflist: Value,
}

impl CriNetwork {
    /// The reference plugins (Debian's containernetworking-plugins): bridge `cri0` with
    /// host-local addresses from `subnet` (kept under `ipam_dir`), a default route, and
    /// portmap.
    pub fn reference(subnet: &str, ipam_dir: &Path) -> Self {
        CriNetwork {
            bin_dir: PathBuf::from("/usr/lib/cni"),
            conflist: chain("cri-peer", "", "cri0", subnet, ipam_dir),
        }
    }

    /// berth's plugins (`berth-bridge`, `berth-host-local`, `berth-portmap`, and
    /// `berth-loopback` as the `loopback` containerd runs for `lo`), copied from
    /// `built` into `bin_dir`, in the same chain as [`CriNetwork::reference`] on bridge
    /// `berth0`; the network is called `berth` (host-local keeps its leases under
    /// `ipam_dir/berth`).
    pub fn berth(
        built: &Path,
        bin_dir: &Path,
        subnet: &str,
        ipam_dir: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(bin_dir)?;
        for p in ["bridge", "host-local", "portmap", "loopback"] {
            let name = format!("berth-{p}");
            std::fs::copy(built.join(&name), bin_dir.join(&name))
                .with_context(|| format!("install {name} from {}", built.display()))?;
        }
        std::os::unix::fs::symlink("berth-loopback", bin_dir.join("loopback"))
            .context("loopback -> berth-loopback")?;
        Ok(CriNetwork {
            bin_dir: bin_dir.to_path_buf(),
            conflist: chain("berth", "berth-", "berth0", subnet, ipam_dir),
        })
    }
}

impl CriNetwork {
    /// [`CriNetwork::berth`] with the plugins this workspace built (beside
    /// `berth-bridge` in cargo's target dir).
    pub fn berth_built(bin_dir: &Path, subnet: &str, ipam_dir: &Path) -> anyhow::Result<Self> {
        let bridge = crate::util::workspace_bin("berth-bridge");
        let built = bridge.parent().context("berth-bridge's directory")?;
        Self::berth(built, bin_dir, subnet, ipam_dir)
    }
}

/// bridge (gateway, masquerade, hairpin) with host-local IPAM and a default route, then
/// portmap, with plugin types prefixed by `prefix`.
fn chain(name: &str, prefix: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": format!("{prefix}bridge"), "bridge": bridge, "isGateway": true,
             "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": format!("{prefix}host-local"), "dataDir": ipam_dir,
                      "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": format!("{prefix}portmap"), "capabilities": {"portMappings": true}}
        ]
    })
}

/// containerd with its CRI plugin, ready to serve: the peer of berth's CRI server.
///
/// Lives in the test's "host" netns with everything under `dir`; /run is a fresh tmpfs
/// and /var/lib an overlay in the test's mount namespace (the shim's /run/containerd and
/// libcni's /var/lib/cni cache stay off the machine). On drop every sandbox the plugin
/// knows is stopped and removed through CRI (so CNI DEL runs), leftover tasks are killed
/// through ctr, then containerd stops.
#[derive(Debug)]
pub struct CriPeer<'a> {
    cd: Containerd<'a>,
    dir: PathBuf,
    /// The CRI endpoint, `unix:///...`.
    pub endpoint: String,
    /// The sandbox image, as containerd names it.
    pub pause_image: String,
    _paths: PrivatePaths,
}

impl<'a> CriPeer<'a> {
    /// Starts containerd with its CRI plugin on `network`, imports the pause image and
    /// waits until the CRI answers with RuntimeReady and NetworkReady.
    pub fn start(env: &'a TestEnv, dir: &Path, network: &CriNetwork) -> anyhow::Result<Self> {
        let paths = PrivatePaths::new(dir, &["/run"], &["/var/lib"])?;
        let conf_dir = dir.join("net.d");
        std::fs::create_dir_all(&conf_dir)?;
        std::fs::write(
            conf_dir.join("10-cri-peer.conflist"),
            network.conflist.to_string(),
        )?;
        let pause_image = format!("berth.test/{}:latest", Image::Pause.name());
        let cri = format!(
            r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{runc}"
        SystemdCgroup = false
"#,
            bin = network.bin_dir.display(),
            conf = conf_dir.display(),
            runc = dir.join("runc").display(),
        );
        let cd = Containerd::start(env, dir, Some(&cri))?;
        let endpoint = format!("unix://{}", cd.sock.display());
        let peer = CriPeer {
            cd,
            dir: dir.to_path_buf(),
            endpoint,
            pause_image,
            _paths: paths,
        };
        let imported = peer.import(&Image::Pause)?;
        anyhow::ensure!(imported == peer.pause_image, "pause image is {imported}");
        peer.wait_ready()?;
        Ok(peer)
    }

    /// Waits (up to 20 s) for Status to report RuntimeReady and NetworkReady.
    fn wait_ready(&self) -> anyhow::Result<()> {
        let endpoint = self.endpoint.clone();
        let ready = on_own_runtime(move || async move {
            let mut c = CriClient::wait_ready(&endpoint, Duration::from_secs(20)).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let st = c.status(false).await?;
                let conds = st.status.map(|s| s.conditions).unwrap_or_default();
                if conds.len() >= 2 && conds.iter().all(|c| c.status) {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("CRI not ready: {conds:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ready.with_context(|| format!("containerd log:\n{}", self.cd.log()))
    }

    /// Builds and imports a fixture image where the CRI plugin sees it; returns its name.
    pub fn import(&self, image: &Image) -> anyhow::Result<String> {
        self.cd.import_in(CRI_NAMESPACE, image, &self.dir)
    }

    /// The underlying containerd (its log, ctr).
    pub fn containerd(&self) -> &Containerd<'a> {
        &self.cd
    }

    /// containerd's pid.
    pub fn pid(&self) -> u32 {
        self.cd.child.id()
    }

    /// Stops and removes every sandbox through CRI; what is left, ctr kills.
    fn clean(&self) -> anyhow::Result<()> {
        let endpoint = self.endpoint.clone();
        let cri = on_own_runtime(move || async move {
            let mut c = CriClient::connect(&endpoint).await?;
            for ctr in c.list_containers(None).await? {
                let _ = c.stop_container(&ctr.id, 0).await;
                let _ = c.remove_container(&ctr.id).await;
            }
            for sb in c.list_pod_sandbox(None).await? {
                c.stop_pod_sandbox(&sb.id).await?;
                c.remove_pod_sandbox(&sb.id).await?;
            }
            anyhow::Ok(())
        });
        let tasks = self
            .cd
            .ctr_in(CRI_NAMESPACE)
            .args(["task", "ls", "-q"])
            .output()?;
        for t in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self
                .cd
                .ctr_in(CRI_NAMESPACE)
                .args(["task", "kill", "-s", "SIGKILL", t])
                .output();
            let _ = wait_for(Duration::from_secs(5), || {
                let out = self
                    .cd
                    .ctr_in(CRI_NAMESPACE)
                    .args(["task", "delete", t])
                    .output()
                    .ok()?;
                let err = String::from_utf8_lossy(&out.stderr);
                (out.status.success() || err.contains("not found")).then_some(())
            });
        }
        cri
    }
}

impl Drop for CriPeer<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.clean() {
            eprintln!("harness: clean up containerd's CRI sandboxes: {e:#}");
        }
    }
}

/// Runs an async job on a fresh current-thread runtime on a thread of its own (which
/// shares the caller's mount and network namespaces), so that it also works from a drop
/// or from inside another runtime.
pub fn on_own_runtime<T: Send, F>(job: impl FnOnce() -> F + Send) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(job())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
