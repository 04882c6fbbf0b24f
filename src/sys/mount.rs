//! The mount seam: mount(2), umount2(2) and what the kernel says of existing mounts
//! (statvfs flags, /proc/self/mountinfo), with the Linux implementation and the
//! recording fake.

use std::io;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

#[cfg(test)]
use super::record::{Call, Recorder};

/// mount(2), umount2(2), and the mount table as the caller sees it.
pub trait Mounter: Send + Sync {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()>;
    /// The per-mount flags (nosuid, nodev, noexec, atime ones) of the mount holding
    /// `target`, as statvfs(3) reports them.
    fn mount_flags(&self, target: &Path) -> nix::Result<MsFlags>;
    /// The caller's /proc/self/mountinfo.
    fn mountinfo(&self) -> io::Result<String>;
}

/// The kernel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

impl Mounter for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        nix::mount::umount2(target, flags)
    }

    fn mount_flags(&self, target: &Path) -> nix::Result<MsFlags> {
        use nix::sys::statvfs::FsFlags as F;
        let f = nix::sys::statvfs::statvfs(target)?.flags();
        let mut m = MsFlags::empty();
        for (a, b) in [
            (F::ST_NOSUID, MsFlags::MS_NOSUID),
            (F::ST_NODEV, MsFlags::MS_NODEV),
            (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (F::ST_NOATIME, MsFlags::MS_NOATIME),
            (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (F::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if f.contains(a) {
                m |= b;
            }
        }
        Ok(m)
    }

    fn mountinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
    }
}

#[cfg(test)]
impl Mounter for Recorder {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.record(Call::Umount {
            target: target.to_path_buf(),
            flags,
        })
    }

    fn mount_flags(&self, _target: &Path) -> nix::Result<MsFlags> {
        Ok(self.answers.mount_flags)
    }

    fn mountinfo(&self) -> io::Result<String> {
        Ok(self.answers.mountinfo.clone())
    }
}
