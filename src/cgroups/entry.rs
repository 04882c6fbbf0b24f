//! Entering a cgroup without the kernel's global migration lock.
//!
//! A write to `cgroup.procs` moves a whole thread group, so the kernel takes
//! `cgroup_threadgroup_rwsem` for writing; the first such write after a quiet spell waits
//! for an RCU grace period (10 ms and more on this project's hosts), and a runtime that
//! starts a container now and then pays it every time. Two ways in skip the write lock:
//! - v1: a single-threaded process writes "0" to a hierarchy's `tasks`. That moves only
//!   the writing thread, which cannot exit or exec under the kernel's hands, so the kernel
//!   leaves the global lock alone.
//! - cgroup2: a new process is born in the cgroup (`clone3` with `CLONE_INTO_CGROUP`),
//!   which takes the lock only for reading, like any fork.
//!
//! So a process that makes a container (or a pod's holder) opens the cgroup's files
//! ([`Entry::open`]), moves itself into the v1 hierarchies with [`Opened::join_v1`],
//! then clones its child with [`Opened::clone_into`]. Opened before a fork, the files
//! leave the forked child only writes to do.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::Cgroup;
use crate::sys::clone::clone3;

/// The files a process needs to enter one cgroup (built beforehand, so that entering
/// allocates nothing).
#[derive(Debug, Clone)]
pub struct Entry {
    /// `tasks` in each v1 hierarchy's directory.
    tasks: Vec<CString>,
    /// The unified (cgroup2) directory, where there is one.
    unified: Option<CString>,
}

fn c_path(p: &std::path::Path) -> Option<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).ok()
}

impl Entry {
    /// What entering `cg` takes.
    pub fn of(cg: &Cgroup) -> Entry {
        let unified = cg.dirs.get("unified");
        Entry {
            tasks: cg
                .unique_dirs()
                .into_iter()
                .filter(|d| Some(*d) != unified.map(|u| u.as_path()))
                .filter_map(|d| c_path(&d.join("tasks")))
                .collect(),
            unified: unified.and_then(|u| c_path(u)),
        }
    }

    /// Opens the files (a v1 hierarchy's `tasks`, the unified directory), so that a
    /// process forked after this only writes.
    pub fn open(&self) -> Result<Opened, String> {
        let open = |p: &CString, flags: libc::c_int| -> Result<OwnedFd, String> {
            // SAFETY: a valid NUL-terminated path; the fd is owned below.
            let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(format!(
                    "open cgroup {p:?}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: just opened, owned by nobody else.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        Ok(Opened {
            tasks: self
                .tasks
                .iter()
                .map(|p| open(p, libc::O_WRONLY))
                .collect::<Result<_, _>>()?,
            unified: self
                .unified
                .as_ref()
                .map(|d| open(d, libc::O_PATH | libc::O_DIRECTORY))
                .transpose()?,
            procs: self.unified.as_ref().and_then(|d| {
                let mut p = d.as_bytes().to_vec();
                p.extend_from_slice(b"/cgroup.procs");
                CString::new(p).ok()
            }),
        })
    }
}

/// An [`Entry`] with its files open: what a forked child needs, without a path lookup.
#[derive(Debug)]
pub struct Opened {
    tasks: Vec<OwnedFd>,
    unified: Option<OwnedFd>,
    procs: Option<CString>,
}

impl Opened {
    /// Moves the calling process into every v1 hierarchy's cgroup. The caller must be
    /// single-threaded (only the calling thread moves).
    pub fn join_v1(&self) -> Result<(), String> {
        for fd in &self.tasks {
            write_zero(fd.as_raw_fd()).map_err(|e| format!("join cgroup (v1 tasks): {e}"))?;
        }
        Ok(())
    }

    /// Moves the calling process into the unified cgroup through `cgroup.procs` (the
    /// locked way), for a process that enters but forks nothing, or a kernel without
    /// `CLONE_INTO_CGROUP`.
    pub fn join_unified(&self) -> Result<(), String> {
        let Some(procs) = &self.procs else {
            return Ok(());
        };
        // SAFETY: a valid NUL-terminated path; the fd is closed below.
        let fd = unsafe { libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "join cgroup {procs:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let r = write_zero(fd);
        // SAFETY: closes the fd opened above.
        unsafe { libc::close(fd) };
        r.map_err(|e| format!("join cgroup {procs:?}: {e}"))
    }

    /// Clones the calling (single-threaded) process with `flags` (`CLONE_*`; the child
    /// signals SIGCHLD when it ends) straight into the unified cgroup; on a kernel older
    /// than `CLONE_INTO_CGROUP` (5.7) the caller joins it first, which its child inherits.
    /// Fork semantics: 0 in the child, the child's pid in the caller.
    pub fn clone_into(&self, flags: u64) -> Result<i32, String> {
        let Some(dir) = &self.unified else {
            return clone3(flags, None).map_err(|e| format!("clone: {e}"));
        };
        match clone3(flags, Some(dir.as_raw_fd())) {
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG) => {
                self.join_unified()?;
                clone3(flags, None).map_err(|e| format!("clone: {e}"))
            }
            r => r.map_err(|e| format!("clone into cgroup {:?}: {e}", self.procs)),
        }
    }
}

/// Writes "0" (the writer) to the open cgroup file `fd`.
fn write_zero(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: writes 1 byte from a static buffer to an open fd.
    if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
