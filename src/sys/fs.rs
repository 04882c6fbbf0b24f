//! The file seam: the calls on files that need privilege or whose effect the logic must
//! be seen making (device nodes, owners, links), with the Linux implementation and the
//! recording fake. Plain directories and files are made directly, under a root path the
//! caller passes (a test passes a temp dir).

use std::path::Path;

use nix::sys::stat::{Mode, SFlag};

#[cfg(test)]
use super::record::{Call, Recorder};

/// mknod(2), chown(2), symlink(2).
pub trait Files: Send + Sync {
    /// A node of `kind` (S_IFCHR, S_IFBLK, S_IFIFO) with `mode` as the caller's umask
    /// leaves it.
    fn mknod(&self, path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64)
    -> nix::Result<()>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()>;
    /// Makes `link` pointing to `to`; EEXIST when `link` is there.
    fn symlink(&self, to: &Path, link: &Path) -> nix::Result<()>;
}

/// The kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Files for Linux {
    fn mknod(
        &self,
        path: &Path,
        kind: SFlag,
        mode: u32,
        major: u64,
        minor: u64,
    ) -> nix::Result<()> {
        nix::sys::stat::mknod(
            path,
            kind,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::makedev(major, minor),
        )
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        nix::unistd::chown(
            path,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
    }

    fn symlink(&self, to: &Path, link: &Path) -> nix::Result<()> {
        std::os::unix::fs::symlink(to, link)
            .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}

#[cfg(test)]
impl Files for Recorder {
    fn mknod(
        &self,
        path: &Path,
        kind: SFlag,
        mode: u32,
        major: u64,
        minor: u64,
    ) -> nix::Result<()> {
        self.record(Call::Mknod {
            path: path.into(),
            kind,
            mode,
            major,
            minor,
        })
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> nix::Result<()> {
        self.record(Call::Chown {
            path: path.into(),
            uid,
            gid,
        })
    }

    fn symlink(&self, to: &Path, link: &Path) -> nix::Result<()> {
        self.record(Call::Symlink {
            to: to.into(),
            link: link.into(),
        })
    }
}
