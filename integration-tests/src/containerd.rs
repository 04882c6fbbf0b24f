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

use crate::TestEnv;
use crate::fixtures::{Image, build};
use crate::util::{ID_ENV, run, wait_for};

pub mod cri_peer;

pub use cri_peer::{CRI_NAMESPACE, CriNetwork, CriPeer, PrivatePaths, on_own_runtime};

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
