//! `berth run` as a test target: berth's kubelet in standalone mode, started from the build
//! under test in the test's "host" netns with every path under the test's temp dir and
//! its pods' cgroups under the test's cgroup parent, on berth's in-process runtime or on a
//! containerd peer ([`CriPeer`]) over CRI.
//!
//! The kubelet prints each pod status change as one JSON line (`-o json`); a reader thread
//! keeps the latest [`Pod`] per name, which the tests poll with [`Kubelet::wait_for`].
//! Static pods are named `<name>-<node>`: the methods here take the manifest's name.
//!
//! On drop the kubelet is killed and everything it left in the runtime is removed through
//! CRI (so CNI DEL runs): on containerd by the peer's own drop, on berth's runtime by a
//! `berth cri` started on the same state for that purpose.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::TestEnv;
use crate::berth_cri::BerthCri;
use crate::containerd::{CriNetwork, CriPeer, on_own_runtime};
use crate::cri::CriClient;
use crate::fixtures::{Image, build};
use crate::util::{ID_ENV, run, workspace_bin};

mod pod;

pub use pod::Pod;

/// The node name the kubelet runs as (`--node-name`): static pods are `<name>-node1`.
pub const NODE: &str = "node1";

/// The node's address under `berth node` (`--node-ip`, status.hostIP).
pub const NODE_IP: &str = "10.99.0.10";

/// The pod subnet: the kubelet's pods get addresses from it, its gateway is on the
/// test's "host" bridge.
pub const SUBNET: &str = "10.244.50.0/24";

/// The bridge's address in the test's "host" netns (the pods' gateway).
pub const GATEWAY: &str = "10.244.50.1";

/// How the kubelet gets its pods.
#[derive(Debug, Clone)]
enum Mode {
    /// `berth run -o json`: manifests only.
    Standalone,
    /// `berth node` with these API flags.
    Node(Vec<String>),
}

/// Which runtime the kubelet drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// berth's in-process runtime (no `--container-runtime-endpoint`).
    Berth,
    /// Debian's containerd with its CRI plugin, over CRI.
    Containerd,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Berth => "berth",
            RuntimeKind::Containerd => "containerd",
        }
    }
}

/// The images a kubelet's runtime holds before it starts, by fixture.
#[derive(Debug, Default, Clone)]
pub struct Images(BTreeMap<String, String>);

impl Images {
    /// The reference the runtime knows `image` by (`berth.test/<name>:latest`).
    ///
    /// # Panics
    /// When `image` was not imported: a mistake in the test.
    pub fn get(&self, image: &Image) -> &str {
        self.0
            .get(&image.name())
            .unwrap_or_else(|| panic!("image {} was not imported", image.name()))
    }
}

/// A running `berth run -o json`.
pub struct Kubelet<'a> {
    env: &'a TestEnv,
    pub runtime: RuntimeKind,
    /// Everything of this kubelet's is below it.
    pub dir: PathBuf,
    /// `--manifests`: the static pod dir.
    pub manifests: PathBuf,
    /// `--kubelet-root`.
    pub kubelet_root: PathBuf,
    /// `--pod-log-dir`.
    pub pod_logs: PathBuf,
    /// `--cgroup-root`, as a cgroupfs path (`/berth-test-...`).
    pub cgroup_root: String,
    /// The runtime's CRI endpoint (containerd's; none for the in-process runtime).
    pub endpoint: Option<String>,
    pub images: Images,
    net: CriNetwork,
    args: Vec<String>,
    child: Option<Child>,
    pods: Arc<Mutex<BTreeMap<String, Pod>>>,
    /// Set by the reader when the kubelet's stdout closes: it exited.
    exited: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    log: PathBuf,
    // Dropped after the kubelet is killed: it stops what the kubelet left in containerd.
    peer: Option<CriPeer<'a>>,
}

impl std::fmt::Debug for Kubelet<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("runtime", &self.runtime)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl<'a> Kubelet<'a> {
    /// Starts `berth run` on `runtime` with `images` imported first; its manifests dir
    /// starts empty.
    pub fn start(env: &'a TestEnv, runtime: RuntimeKind, images: &[Image]) -> anyhow::Result<Self> {
        Self::start_with(env, runtime, images, &[])
    }

    /// [`Kubelet::start`], also importing the OCI image layouts `layouts` (each names its
    /// own image, as scripts/example-image.sh writes it).
    pub fn start_with(
        env: &'a TestEnv,
        runtime: RuntimeKind,
        images: &[Image],
        layouts: &[&Path],
    ) -> anyhow::Result<Self> {
        Self::start_mode(env, runtime, images, layouts, Mode::Standalone)
    }

    /// Starts `berth node` (the kubelet joining an API server) on `runtime` with `images`
    /// imported first. `args` are its API flags (`--kubeconfig`, ...); the static pod dir
    /// (`--pod-manifest-path`), the node name and every path are set here. It prints no
    /// pods: the tests read them from the API server.
    pub fn start_node(
        env: &'a TestEnv,
        runtime: RuntimeKind,
        images: &[Image],
        mut args: Vec<String>,
    ) -> anyhow::Result<Self> {
        // The node's address (a kubelet never takes loopback): a veth pair inside the
        // test's "host" netns (this kernel has no dummy links), gone with it.
        for a in [
            &[
                "link", "add", "node0", "type", "veth", "peer", "name", "node0p",
            ][..],
            &["addr", "add", &format!("{NODE_IP}/24"), "dev", "node0"],
            &["link", "set", "node0", "up"],
        ] {
            run(env.host.command("ip").args(a))?;
        }
        args.extend(["--node-ip".into(), NODE_IP.into()]);
        Self::start_mode(env, runtime, images, &[], Mode::Node(args))
    }

    fn start_mode(
        env: &'a TestEnv,
        runtime: RuntimeKind,
        images: &[Image],
        layouts: &[&Path],
        mode: Mode,
    ) -> anyhow::Result<Self> {
        let dir = env.subdir("kubelet")?;
        let ipam = env.subdir("ipam")?;
        let (net, peer) = match runtime {
            RuntimeKind::Berth => (
                CriNetwork::berth_built(&dir.join("cni-bin"), SUBNET, &ipam)?,
                None,
            ),
            RuntimeKind::Containerd => {
                let net = CriNetwork::reference(SUBNET, &ipam);
                let peer = CriPeer::start(env, &env.subdir("containerd")?, &net)?;
                (net, Some(peer))
            }
        };
        let conf_dir = dir.join("net.d");
        std::fs::create_dir_all(&conf_dir)?;
        std::fs::write(conf_dir.join("10-pods.conflist"), net.conflist.to_string())?;
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests)?;
        let kubelet_root = dir.join("kubelet");
        let pod_logs = dir.join("pod-logs");
        let cgroup_root = format!("/{}", env.cgroups().name());
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut args: Vec<String> = match mode {
            Mode::Standalone => vec![
                "run".into(),
                "-o".into(),
                "json".into(),
                "--manifests".into(),
                path(&manifests),
                "--node-name".into(),
                NODE.into(),
                "--kubelet-root".into(),
                path(&kubelet_root),
                // The tests change manifests and expect the kubelet to notice by
                // inotify; the relist is only the safety net.
                "--file-check-frequency".into(),
                "5".into(),
            ],
            Mode::Node(api) => {
                let mut v: Vec<String> = vec![
                    "node".into(),
                    "--pod-manifest-path".into(),
                    path(&manifests),
                    "--hostname-override".into(),
                    NODE.into(),
                    "--root-dir".into(),
                    path(&kubelet_root),
                ];
                v.extend(api);
                v
            }
        };
        args.extend([
            "--root".into(),
            path(&dir.join("root")),
            "--state-dir".into(),
            path(&dir.join("run")),
            "--image-root".into(),
            path(&dir.join("root/images")),
            "--cni-conf-dir".into(),
            path(&conf_dir),
            "--cni-bin-dir".into(),
            path(&net.bin_dir),
            "--cgroup-root".into(),
            cgroup_root.clone(),
            "--pod-log-dir".into(),
            path(&pod_logs),
        ]);
        let endpoint = peer.as_ref().map(|p| p.endpoint.clone());
        if let Some(e) = &endpoint {
            args.extend(["--container-runtime-endpoint".into(), e.clone()]);
        }
        let mut me = Kubelet {
            env,
            runtime,
            manifests,
            kubelet_root,
            pod_logs,
            cgroup_root,
            endpoint,
            images: Images::default(),
            net,
            args,
            child: None,
            pods: Arc::default(),
            exited: Arc::default(),
            reader: None,
            log: dir.join("kubelet.log"),
            dir,
            peer,
        };
        for image in images {
            let name = me.import(image)?;
            me.images.0.insert(image.name(), name);
        }
        for layout in layouts {
            me.import_layout(layout)?;
        }
        me.spawn()?;
        Ok(me)
    }

    /// Imports a fixture image into the runtime; returns its reference.
    fn import(&self, image: &Image) -> anyhow::Result<String> {
        if let Some(peer) = &self.peer {
            return peer.import(image);
        }
        let layout = build(image, &self.dir.join("layouts").join(image.name()))?;
        let name = format!("berth.test/{}", image.name());
        run(Command::new(workspace_bin("berth"))
            .arg("image")
            .arg("--root")
            .arg(self.dir.join("root/images"))
            .args(["import", "--name", &name])
            .arg(&layout.dir))?;
        Ok(format!("{name}:latest"))
    }

    /// Imports an OCI image layout that names its image itself.
    fn import_layout(&self, layout: &Path) -> anyhow::Result<()> {
        if let Some(peer) = &self.peer {
            let tar = self.dir.join("layout.tar");
            run(Command::new("tar")
                .arg("-C")
                .arg(layout)
                .arg("-cf")
                .arg(&tar)
                .arg("."))?;
            run(peer
                .containerd()
                .ctr_in(crate::containerd::CRI_NAMESPACE)
                .args(["images", "import"])
                .arg(&tar))?;
            return Ok(());
        }
        run(Command::new(workspace_bin("berth"))
            .arg("image")
            .arg("--root")
            .arg(self.dir.join("root/images"))
            .arg("import")
            .arg(layout))?;
        Ok(())
    }

    /// The test environment the kubelet runs in.
    pub fn env(&self) -> &'a TestEnv {
        self.env
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let bin = workspace_bin("berth");
        let mut child = self
            .env
            .host
            .command(bin.to_str().context("utf-8 path")?)
            .env(ID_ENV, self.env.id())
            .env("BERTH_LOG", "info")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} run", bin.display()))?;
        let stdout = child.stdout.take().context("kubelet stdout")?;
        let pods = Arc::clone(&self.pods);
        let lines = self.dir.join("pods.jsonl");
        let exited = Arc::clone(&self.exited);
        exited.store(false, Ordering::SeqCst);
        self.reader = Some(std::thread::spawn(move || {
            read_pods(stdout, &pods, &lines);
            exited.store(true, Ordering::SeqCst);
        }));
        self.child = Some(child);
        Ok(())
    }

    /// The full name of the static pod from manifest pod `name`.
    pub fn full_name(name: &str) -> String {
        format!("{name}-{NODE}")
    }

    /// The latest status of pod `name` (the manifest's name), if the kubelet printed one.
    pub fn pod(&self, name: &str) -> Option<Pod> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&Self::full_name(name))
            .cloned()
    }

    /// Every pod the kubelet printed, by full name.
    pub fn pods(&self) -> BTreeMap<String, Pod> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until pod `name` satisfies `ready`; fails with the last status seen and the
    /// tail of the kubelet's log.
    pub fn wait_for(
        &self,
        name: &str,
        ready: impl Fn(&Pod) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Pod> {
        let deadline = Instant::now() + timeout;
        loop {
            let pod = self.pod(name);
            if let Some(p) = &pod
                && ready(p)
            {
                return Ok(p.clone());
            }
            let exited = self.exited.load(Ordering::SeqCst);
            if exited || Instant::now() >= deadline {
                bail!(
                    "pod {name} on {}: condition not met {}; last status:\n{}\n\
                     kubelet log (tail):\n{}",
                    self.runtime.name(),
                    if exited {
                        "before the kubelet exited".to_string()
                    } else {
                        format!("within {timeout:?}")
                    },
                    pod.map(|p| serde_json::to_string_pretty(&p.0["status"]).unwrap_or_default())
                        .unwrap_or_else(|| "(none printed)".into()),
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes `yaml` as `<name>.yaml` into the manifests dir (atomically: the kubelet
    /// never reads half a file).
    pub fn write_manifest(&self, name: &str, yaml: &str) -> anyhow::Result<()> {
        // A dot file is ignored by the kubelet's file source, as upstream ignores it.
        let tmp = self.manifests.join(format!(".{name}.yaml.tmp"));
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(&tmp, self.manifests.join(format!("{name}.yaml")))?;
        Ok(())
    }

    pub fn remove_manifest(&self, name: &str) -> anyhow::Result<()> {
        std::fs::remove_file(self.manifests.join(format!("{name}.yaml")))
            .with_context(|| format!("remove manifest {name}"))
    }

    /// What the kubelet logged (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The kubelet's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The pid of the runtime's daemon when it is a process of its own (containerd).
    pub fn runtime_pid(&self) -> Option<u32> {
        self.peer.as_ref().map(CriPeer::pid)
    }

    /// SIGKILLs the kubelet; its pods keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Kills the kubelet (if running) and starts it again on the same state; the pods it
    /// printed before are forgotten, so waits see only the new process's view.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.spawn()
    }

    /// [`Kubelet::restart`] with `extra` appended to the kubelet's flags from now on: for
    /// settings only known once the case runs (e.g. `--registry-config` naming a registry
    /// the case started).
    pub fn restart_with_args(&mut self, extra: &[String]) -> anyhow::Result<()> {
        self.args.extend_from_slice(extra);
        self.restart()
    }

    /// Imports fixture `image` into the runtime (also while the kubelet runs), for images
    /// only some cases use; returns its reference, also kept in [`Kubelet::images`].
    pub fn import_image(&mut self, image: &Image) -> anyhow::Result<String> {
        let name = self.import(image)?;
        self.images.0.insert(image.name(), name.clone());
        Ok(name)
    }

    /// SIGTERM, then waits (up to `timeout`) for the kubelet to exit; fails unless it
    /// exited 0.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let Some(mut c) = self.child.take() else {
            bail!("kubelet is not running");
        };
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = c.try_wait()? {
                break s;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!(
                    "kubelet did not exit within {timeout:?} of SIGTERM:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if !status.success() {
            bail!("kubelet exited with {status}:\n{}", self.log_tail(60));
        }
        Ok(())
    }

    /// The pod sandboxes the runtime holds. On berth's runtime the kubelet must be
    /// stopped first: a `berth cri` is started on its state to ask (and, on drop, removes
    /// whatever it found, so nothing outlives the test).
    pub fn runtime_sandboxes(&self) -> anyhow::Result<Vec<String>> {
        let list = |endpoint: String| {
            on_own_runtime(move || async move {
                let mut c = CriClient::connect(&endpoint).await?;
                Ok(c.list_pod_sandbox(None)
                    .await?
                    .into_iter()
                    .map(|s| {
                        let m = s.metadata.unwrap_or_default();
                        format!("{}/{} ({})", m.namespace, m.name, s.id)
                    })
                    .collect::<Vec<_>>())
            })
        };
        match &self.endpoint {
            Some(e) => list(e.clone()),
            None => {
                if self.child.is_some() {
                    bail!("runtime_sandboxes on berth's runtime needs the kubelet stopped");
                }
                let cri = BerthCri::start_binary(
                    self.env,
                    &self.dir,
                    &self.net,
                    &workspace_bin("berth"),
                )?;
                list(cri.endpoint.clone())
            }
        }
    }

    /// The cgroupfs directory of `rel` (relative to the cgroup root, e.g. `kubepods`) in
    /// the hierarchy holding `controller` (`"unified"` for cgroup v2).
    pub fn cgroup_dir(&self, controller: &str, rel: &str) -> Option<PathBuf> {
        let base = self.env.cgroups().dir(controller)?;
        Some(if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        })
    }

    /// The directory of pod `uid`'s cgroup in the hierarchy of `controller`, found below
    /// the cgroup root whatever its QoS class (`kubepods[/burstable|/besteffort]/pod<uid>`).
    pub fn pod_cgroup(&self, controller: &str, uid: &str) -> Option<PathBuf> {
        let kubepods = self.cgroup_dir(controller, "kubepods")?;
        let name = format!("pod{uid}");
        [
            kubepods.join(&name),
            kubepods.join("burstable").join(&name),
            kubepods.join("besteffort").join(&name),
        ]
        .into_iter()
        .find(|p| p.is_dir())
    }
}

/// Reads `-o json` lines into `pods` (latest per metadata.name) and copies them to
/// `lines` for post-mortems.
fn read_pods(stdout: std::process::ChildStdout, pods: &Mutex<BTreeMap<String, Pod>>, lines: &Path) {
    let mut copy = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lines)
        .ok();
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(f) = copy.as_mut() {
            let _ = std::io::Write::write_all(f, format!("{line}\n").as_bytes());
        }
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(name) = v["metadata"]["name"].as_str() {
            pods.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string(), Pod(v.clone()));
        }
    }
}

impl Drop for Kubelet<'_> {
    fn drop(&mut self) {
        self.kill9();
        if self.runtime == RuntimeKind::Berth {
            // The pods outlive a killed kubelet in their holders: remove them through CRI
            // on the same state, as BerthCri's drop does.
            match BerthCri::start_binary(self.env, &self.dir, &self.net, &workspace_bin("berth")) {
                Ok(cri) => drop(cri),
                Err(e) => eprintln!("kubelet fixture: clean up through berth cri: {e:#}"),
            }
        }
        // The containerd peer (if any) drops next and removes its sandboxes.
        drop(self.peer.take());
    }
}
