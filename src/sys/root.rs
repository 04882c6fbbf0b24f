//! The root seam: the calls that change the process's root and working directory
//! (chdir, chroot, pivot_root) and the one question about the new root that decides
//! between them, with the Linux implementation and the recording fake.

use std::path::Path;

use nix::sys::stat::Mode;

#[cfg(test)]
use super::record::{Call, Recorder};

/// chdir(2), chroot(2), pivot_root(2).
pub trait Root: Send + Sync {
    fn chdir(&self, path: &Path) -> nix::Result<()>;
    fn chroot(&self, path: &Path) -> nix::Result<()>;
    /// pivot_root(new_root, new_root): the old root ends stacked on top of the new one,
    /// and the caller's working directory is left in the old root, ready to be detached.
    fn pivot_root(&self, new_root: &Path) -> nix::Result<()>;
    /// Whether `path` is on ramfs, which pivot_root cannot leave (a diskless boot's
    /// initramfs).
    fn on_ramfs(&self, path: &Path) -> bool;
}

/// The kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Root for Linux {
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        nix::unistd::chroot(path)
    }

    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        // Held open across the pivot: afterwards "/" is the new root, and only this fd
        // still names the old one, now stacked on it.
        let old_root = nix::fcntl::open(
            "/",
            nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        nix::unistd::pivot_root(new_root, new_root)?;
        nix::unistd::fchdir(&old_root)
    }

    fn on_ramfs(&self, path: &Path) -> bool {
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == RAMFS_MAGIC)
    }
}

#[cfg(test)]
impl Root for Recorder {
    fn chdir(&self, path: &Path) -> nix::Result<()> {
        self.record(Call::Chdir(path.into()))
    }

    fn chroot(&self, path: &Path) -> nix::Result<()> {
        self.record(Call::Chroot(path.into()))
    }

    fn pivot_root(&self, new_root: &Path) -> nix::Result<()> {
        self.record(Call::PivotRoot(new_root.into()))
    }

    fn on_ramfs(&self, _path: &Path) -> bool {
        self.answers.ramfs
    }
}
