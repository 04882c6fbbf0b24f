//! Debian's containerd (1.6), started by a test as a peer of berth.
//!
//! It runs in the test's "host" netns with its root, state, socket and opt dirs under a
//! dir the test gives (inside the test's temp dir), marked for the leak check. The shim
//! still uses a few fixed paths (/run/containerd/{s,fifo}): a test mounts a fresh tmpfs on
//! /run in its private mount namespace first. On drop, the tasks the test registered in
//! [`Containerd::tasks`] are killed and deleted, then containerd is stopped.
//!
//! [`CriPeer`] is the same containerd with its CRI plugin configured as a node runs it
//! (runc, cgroupfs driver, `restrict_oom_score_adj`, a pause image built from busybox, a
//! CNI conflist of the test's choosing): the peer berth's CRI tests run against.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use serde_json::{Value, json};

use crate::TestEnv;
use crate::cri::CriClient;
use crate::fixtures::{Image, build};
use crate::util::{ID_ENV, run, wait_for};

/// The containerd namespace [`Containerd::ctr`] works in.
pub const NAMESPACE: &str = "berth";

/// A running containerd of the test's own.
#[derive(Debug)]
pub struct Containerd<'a> {
    env: &'a TestEnv,
    child: Child,
    /// Its gRPC socket.
    pub sock: PathBuf,
    log: PathBuf,
    /// Task (and container) ids to kill and delete on drop.
    pub tasks: Vec<String>,
}

impl<'a> Containerd<'a> {
    /// Starts containerd with state under `dir`; its CRI plugin is off, or on with `cri`
    /// (extra TOML for the plugin's sections).
    pub fn start(env: &'a TestEnv, dir: &Path, cri: Option<&str>) -> anyhow::Result<Self> {
        let sock = dir.join("containerd.sock");
        let disabled = if cri.is_some() {
            ""
        } else {
            "\"io.containerd.grpc.v1.cri\""
        };
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [{disabled}]
{cri}
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            opt = dir.join("opt").display(),
            cri = cri.unwrap_or_default(),
        );
        let conf = dir.join("config.toml");
        std::fs::write(&conf, config)?;
        let log = dir.join("containerd.log");
        let child = env
            .host
            .command("containerd")
            .env(ID_ENV, env.id())
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start containerd (install it: scripts/setup.sh)")?;
        let cd = Containerd {
            env,
            child,
            sock,
            log,
            tasks: Vec::new(),
        };
        let up = wait_for(Duration::from_secs(20), || {
            cd.ctr()
                .arg("version")
                .output()
                .ok()
                .filter(|o| o.status.success())
        });
        if up.is_none() {
            bail!("containerd did not come up: {}", cd.log());
        }
        Ok(cd)
    }

    pub fn env(&self) -> &'a TestEnv {
        self.env
    }

    /// `ctr` on this containerd, in [`NAMESPACE`].
    pub fn ctr(&self) -> Command {
        self.ctr_in(NAMESPACE)
    }

    /// `ctr` on this containerd, in `namespace` (e.g. `k8s.io` for the CRI plugin's).
    pub fn ctr_in(&self, namespace: &str) -> Command {
        let mut c = self.env.host.command("ctr");
        c.env(ID_ENV, self.env.id())
            .arg("--address")
            .arg(&self.sock)
            .args(["--namespace", namespace])
            .stdin(Stdio::null());
        c
    }

    /// containerd's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs ctr to completion, returning its output whatever its exit status.
    pub fn output(&self, args: &[&str]) -> std::io::Result<Output> {
        self.ctr().args(args).output()
    }

    /// Runs ctr; a failure is an error with ctr's stderr and containerd's log.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let o = self.output(args).context("spawn ctr")?;
        if !o.status.success() {
            bail!(
                "ctr {args:?}: {}\ncontainerd log:\n{}",
                String::from_utf8_lossy(&o.stderr),
                self.log()
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `ctr task ls` as (id, pid, status) rows.
    pub fn task_list(&self) -> anyhow::Result<Vec<(String, u32, String)>> {
        Ok(self
            .ok(&["task", "ls"])?
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.to_string(),
                    f.get(1)?.parse().ok()?,
                    f.get(2)?.to_string(),
                ))
            })
            .collect())
    }

    /// Builds a fixture image, tars its layout into an OCI archive under `dir` and imports
    /// it into `namespace` as `berth.test/<name>:latest`, which it returns.
    pub fn import_in(&self, namespace: &str, image: &Image, dir: &Path) -> anyhow::Result<String> {
        let layout = build(image, &dir.join(image.name()))?;
        let tar = dir.join(format!("{}.tar", image.name()));
        run(Command::new("tar")
            .arg("-C")
            .arg(&layout.dir)
            .arg("-cf")
            .arg(&tar)
            .arg("."))?;
        let name = format!("berth.test/{}", image.name());
        run(self
            .ctr_in(namespace)
            .args(["images", "import", "--base-name", &name])
            .arg(&tar))?;
        Ok(format!("{name}:latest"))
    }

    /// [`Containerd::import_in`] for [`NAMESPACE`].
    pub fn import(&self, image: &Image, dir: &Path) -> anyhow::Result<String> {
        self.import_in(NAMESPACE, image, dir)
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        for t in &self.tasks {
            let _ = self
                .ctr()
                .args(["task", "kill", "-s", "SIGKILL", t])
                .output();
            let _ = wait_for(Duration::from_secs(5), || {
                let out = self.ctr().args(["task", "delete", t]).output().ok()?;
                let err = String::from_utf8_lossy(&out.stderr);
                (out.status.success() || err.contains("not found")).then_some(())
            });
            let _ = self.ctr().args(["container", "delete", t]).output();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
            conflist: json!({
                "cniVersion": "1.0.0", "name": "cri-peer",
                "plugins": [
                    {"type": "bridge", "bridge": "cri0", "isGateway": true, "ipMasq": true,
                     "hairpinMode": true,
                     "ipam": {"type": "host-local", "dataDir": ipam_dir,
                              "ranges": [[{"subnet": subnet}]],
                              "routes": [{"dst": "0.0.0.0/0"}]}},
                    {"type": "portmap", "capabilities": {"portMappings": true}}
                ]
            }),
        }
    }
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
