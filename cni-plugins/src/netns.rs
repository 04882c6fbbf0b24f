//! Entering the pod's network namespace for as long as it takes to open a socket there.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use crate::error::{Code, Error, Result};

/// A network namespace opened by path (`CNI_NETNS`).
#[derive(Debug)]
pub struct NetNs {
    path: PathBuf,
    file: File,
}

impl NetNs {
    /// Opens `path`; a missing namespace is the spec's "unknown container" (code 3).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| {
            Error::new(
                Code::UnknownContainer,
                format!("open netns {}", path.display()),
            )
            .with_details(e)
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Runs `f` with the calling thread in this namespace, then returns it to the one it
    /// was in. Sockets opened by `f` stay in this namespace.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let home = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Error::io("open /proc/thread-self/ns/net", e))?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::io(format!("setns into {}", self.path.display()), e))?;
        let out = f();
        if let Err(e) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
            // A plugin thread left in the pod's namespace would program the wrong one.
            panic!("setns back to the plugin's own netns failed: {e}");
        }
        Ok(out)
    }
}
