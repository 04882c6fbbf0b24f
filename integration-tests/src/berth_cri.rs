//! `berth cri` as a test target: the daemon started from the build under test in the
//! test's "host" netns and private mount namespace, its state under the test's temp dir,
//! images imported with `berth image import`, and everything it made removed through CRI
//! when the fixture drops (so CNI DEL runs), like the containerd peer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::containerd::CriNetwork;
use crate::containerd::cri_peer::on_own_runtime;
use crate::cri::CriClient;
use crate::fixtures::{Image, build};
use crate::util::{ID_ENV, run, wait_for, workspace_bin};
use crate::{NetNs, TestEnv};

/// A running `berth cri`.
#[derive(Debug)]
pub struct BerthCri<'a> {
    /// The CRI socket's path (what [`CriClient::connect`] takes).
    pub endpoint: String,
    /// berth's state root (`--root`).
    pub root: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    bin: PathBuf,
    test_id: String,
    child: Option<Child>,
    log: PathBuf,
    host: &'a NetNs,
}

impl<'a> BerthCri<'a> {
    /// Starts the workspace's `berth cri` with its state in `dir` and the pod network `net`.
    pub fn start(env: &'a TestEnv, dir: &Path, net: &CriNetwork) -> anyhow::Result<Self> {
        Self::start_binary(env, dir, net, &workspace_bin("berth"))
    }

    /// Starts `bin cri` (a berth binary, or a wrapper that execs one) like [`Self::start`].
    pub fn start_binary(
        env: &'a TestEnv,
        dir: &Path,
        net: &CriNetwork,
        bin: &Path,
    ) -> anyhow::Result<Self> {
        let root = dir.join("root");
        let conf_dir = dir.join("net.d");
        std::fs::create_dir_all(&conf_dir)?;
        std::fs::write(conf_dir.join("10-pods.conflist"), net.conflist.to_string())?;
        let sock = dir.join("berth.sock");
        let args = vec![
            "cri".to_string(),
            "--listen".into(),
            format!("unix://{}", sock.display()),
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "--state-dir".into(),
            dir.join("run").to_string_lossy().into_owned(),
            "--cni-conf-dir".into(),
            conf_dir.to_string_lossy().into_owned(),
            "--cni-bin-dir".into(),
            net.bin_dir.to_string_lossy().into_owned(),
        ];
        let mut me = BerthCri {
            endpoint: sock.to_string_lossy().into_owned(),
            root,
            dir: dir.to_path_buf(),
            args,
            bin: bin.to_path_buf(),
            test_id: env.id().to_string(),
            child: None,
            log: dir.join("berth-cri.log"),
            host: &env.host,
        };
        me.spawn()?;
        Ok(me)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let bin = &self.bin;
        let child = self
            .host
            .command(bin.to_str().context("utf-8 path")?)
            .env(ID_ENV, &self.test_id)
            .env("BERTH_LOG", "info")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start berth cri")?;
        self.child = Some(child);
        let sock = self.endpoint.clone();
        wait_for(Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        })
        .with_context(|| format!("berth cri never listened:\n{}", self.log()))?;
        Ok(())
    }

    /// Imports a fixture image; returns its reference (`berth.test/<name>:latest`).
    pub fn import(&self, image: &Image) -> anyhow::Result<String> {
        let layout = build(image, &self.dir.join("layouts").join(image.name()))?;
        let name = format!("berth.test/{}", image.name());
        run(Command::new(workspace_bin("berth"))
            .arg("image")
            .arg("--root")
            .arg(self.root.join("images"))
            .args(["import", "--name", &name])
            .arg(&layout.dir))?;
        Ok(format!("{name}:latest"))
    }

    /// What the daemon logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the daemon (its pods' holders live on).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again with the same state.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.spawn()
    }
}

impl Drop for BerthCri<'_> {
    fn drop(&mut self) {
        if self.child.is_some() {
            let endpoint = self.endpoint.clone();
            let cleaned = on_own_runtime(move || async move {
                let mut c = CriClient::connect(&endpoint).await?;
                for sb in c.list_pod_sandbox(None).await? {
                    let _ = c.stop_pod_sandbox(&sb.id).await;
                    let _ = c.remove_pod_sandbox(&sb.id).await;
                }
                Ok(())
            });
            if let Err(e) = cleaned {
                eprintln!("berth cri fixture: clean up through CRI: {e:#}");
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }
}
