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
//! So a process that makes a container (or a pod's holder) moves itself into the v1
//! hierarchies with [`Entry::join_v1`], then clones its child with
//! [`Entry::clone_into`]. Everything here is async-signal-safe: it runs in forked
//! children of possibly multi-threaded callers.

use std::ffi::CString;
use std::os::fd::RawFd;

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

    /// Moves the calling process into every v1 hierarchy's cgroup. The caller must be
    /// single-threaded (only the calling thread moves).
    pub fn join_v1(&self) -> Result<(), String> {
        for p in &self.tasks {
            write_zero(p)?;
        }
        Ok(())
    }

    /// Moves the calling process into the unified cgroup through `cgroup.procs` (the
    /// locked way), for a process that enters but forks nothing, or a kernel without
    /// `CLONE_INTO_CGROUP`.
    pub fn join_unified(&self) -> Result<(), String> {
        let Some(dir) = &self.unified else {
            return Ok(());
        };
        let mut procs = dir.as_bytes().to_vec();
        procs.extend_from_slice(b"/cgroup.procs");
        let procs = CString::new(procs).map_err(|e| e.to_string())?;
        write_zero(&procs)
    }

    /// Clones the calling (single-threaded) process with `flags` (`CLONE_*`; the child
    /// signals SIGCHLD when it ends) straight into the unified cgroup; on a kernel older
    /// than `CLONE_INTO_CGROUP` (5.7) the caller joins it first, which its child inherits.
    /// Fork semantics: 0 in the child, the child's pid in the caller.
    pub fn clone_into(&self, flags: u64) -> Result<i32, String> {
        let Some(dir) = &self.unified else {
            return clone3(flags, None).map_err(|e| format!("clone: {e}"));
        };
        // SAFETY: a valid NUL-terminated path; the fd is closed below.
        let fd: RawFd = unsafe {
            libc::open(
                dir.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(format!(
                "open cgroup {dir:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let r = clone3(flags, Some(fd));
        if r != Ok(0) {
            // SAFETY: closes the fd opened above (in the caller; the child execs or exits).
            unsafe { libc::close(fd) };
        }
        match r {
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG) => {
                self.join_unified()?;
                clone3(flags, None).map_err(|e| format!("clone: {e}"))
            }
            r => r.map_err(|e| format!("clone into cgroup {dir:?}: {e}")),
        }
    }
}

/// Writes "0" (the writer) to the cgroup file at `path`.
fn write_zero(path: &CString) -> Result<(), String> {
    // SAFETY: a valid NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    // SAFETY: writes 1 byte from a static buffer to the fd just opened.
    let ok = fd >= 0 && unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } == 1;
    let err = std::io::Error::last_os_error();
    if fd >= 0 {
        // SAFETY: closes the fd opened above.
        unsafe { libc::close(fd) };
    }
    if ok {
        Ok(())
    } else {
        Err(format!("join cgroup {path:?}: {err}"))
    }
}
