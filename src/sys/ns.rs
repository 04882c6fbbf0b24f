//! The namespace seam: unshare(2), setns(2) and the calls a holder makes to set up the
//! pod's namespaces (its hostname, the pid 1 of a new pid namespace), with the Linux
//! implementation and the recording fake.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;

use nix::sched::CloneFlags;

#[cfg(test)]
use super::record::{Call, Recorder};

/// Moving into and making namespaces.
pub trait Namespaces: Send + Sync {
    /// Runs `f` on a thread of its own that joined the network namespace at `netns`:
    /// setns moves only the calling thread, so the caller's own namespace is untouched.
    fn in_netns(
        &self,
        netns: &Path,
        f: &mut (dyn FnMut() -> io::Result<()> + Send),
    ) -> io::Result<()>;
    /// Moves the (single-threaded) caller into new namespaces of `flags`.
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    /// The hostname of the caller's uts namespace.
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    /// Forks a child that is pid 1 of a new pid namespace and runs `init`; the caller
    /// stays in its own pid namespace (and so do its later children). The child's pid.
    fn spawn_pid_init(&self, init: fn() -> !) -> nix::Result<i32>;
    /// Kills that child and reaps it.
    fn kill_pid_init(&self, pid: i32);
}

/// The kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Namespaces for Linux {
    fn in_netns(
        &self,
        netns: &Path,
        f: &mut (dyn FnMut() -> io::Result<()> + Send),
    ) -> io::Result<()> {
        let file = std::fs::File::open(netns)?;
        std::thread::scope(|s| {
            s.spawn(|| -> io::Result<()> {
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn spawn_pid_init(&self, init: fn() -> !) -> nix::Result<i32> {
        // the caller's own pid namespace, to go back to after the fork
        let own = std::fs::File::open("/proc/self/ns/pid")
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        nix::sched::unshare(CloneFlags::CLONE_NEWPID)?;
        let pid = super::clone::fork();
        if pid == Ok(0) {
            init();
        }
        // back to the caller's own namespace for whatever it forks next
        nix::sched::setns(own.as_fd(), CloneFlags::CLONE_NEWPID)?;
        pid
    }

    fn kill_pid_init(&self, pid: i32) {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
}

#[cfg(test)]
impl Namespaces for Recorder {
    fn in_netns(
        &self,
        netns: &Path,
        f: &mut (dyn FnMut() -> io::Result<()> + Send),
    ) -> io::Result<()> {
        self.record(Call::EnterNetns(netns.into()))?;
        f()
    }

    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        self.record(Call::Unshare(flags))
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        self.record(Call::SetHostname(name.into()))
    }

    fn spawn_pid_init(&self, _init: fn() -> !) -> nix::Result<i32> {
        self.record(Call::SpawnPidInit)?;
        Ok(self.answers.pid_init)
    }

    fn kill_pid_init(&self, pid: i32) {
        let _ = self.record(Call::KillPidInit(pid));
    }
}
