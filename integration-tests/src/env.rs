//! One test's isolated world: network namespaces, a private mount namespace, a temp dir
//! and a cgroup parent, all torn down by guards.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

use crate::cgroup::CgroupParent;
use crate::netns::NetNs;
use crate::util::{ID_ENV, TempDir, unique_id};

/// An isolated environment for one privileged test.
///
/// Building one moves the calling thread (the test's thread, and so every thread and
/// process the test starts from it) into a private mount namespace whose mounts do not
/// propagate back to the machine. Fields drop in declaration order: namespaces, then
/// cgroups (killing what is left in them), then the temp dir (unmounting what is below).
#[derive(Debug)]
pub struct TestEnv {
    id: String,
    /// The "host" network namespace of this test: the node as berth sees it.
    pub host: NetNs,
    cgroups: CgroupParent,
    dir: TempDir,
}

impl TestEnv {
    /// A new environment with a fresh id `berth-test-<random>`.
    pub fn new() -> anyhow::Result<Self> {
        let id = unique_id();
        enter_private_mount_ns()?;
        let dir = TempDir::new(&id, "root")?;
        let cgroups = CgroupParent::new(&id)?;
        let host = NetNs::new(&format!("{id}-host"))?;
        Ok(Self {
            id,
            host,
            cgroups,
            dir,
        })
    }

    /// The test's id; everything it leaves on the machine is named after it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The test's temp dir (private to its mount namespace for mounts made below it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A subdirectory of the temp dir, created if missing.
    pub fn subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        Ok(p)
    }

    /// The test's cgroup parent.
    pub fn cgroups(&self) -> &CgroupParent {
        &self.cgroups
    }

    /// A fresh "pod" network namespace, e.g. for one sandbox.
    pub fn pod_netns(&self, tag: &str) -> anyhow::Result<NetNs> {
        NetNs::new(&format!("{}-{tag}", self.id))
    }

    /// A command marked with the test's id, so that the leak check finds it if it
    /// outlives the test.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env(ID_ENV, &self.id);
        cmd
    }
}

impl Drop for TestEnv {
    /// Whatever the test started and left running (a holder whose pod was never removed
    /// because an assertion failed first) is killed before the cgroups and the temp dir
    /// go, so a failed test does not leave processes behind.
    fn drop(&mut self) {
        for (pid, cmd) in crate::leak::marked(&self.id) {
            eprintln!("harness: killing leftover process {pid}: {cmd}");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Moves the calling thread into a new mount namespace where mounts made by the test
/// stay private (`rslave`: the machine's mounts still show up, ours never leave).
fn enter_private_mount_ns() -> anyhow::Result<()> {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if DONE.with(|d| d.get()) {
        return Ok(());
    }
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("make / rslave in the test's mount namespace")?;
    DONE.with(|d| d.set(true));
    Ok(())
}
