//! The overlayfs mount seam for container root filesystems.
//!
//! `mount(2)` takes its options in one page (4096 bytes, NUL included), which a deep
//! image's lowerdir list overflows. When the options do not fit, the Linux implementation
//! uses the new mount API instead and hands each lower dir to the kernel separately with
//! `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", dir)` (Linux 6.8+), which has no such limit.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The longest option string `mount(2)` accepts (one page, less the NUL).
pub const MAX_MOUNT_OPTIONS: usize = 4095;

/// Mounts and unmounts overlay filesystems.
pub trait OverlayMounter: Send + Sync + std::fmt::Debug {
    /// Mounts an overlay at `target`: `lowers` top-most first, then the writable
    /// `upper` and its `work` dir.
    fn mount(&self, lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path)
    -> io::Result<()>;
    /// Mounts a read-only overlay of `lowers` (top-most first, at least two: overlayfs
    /// wants two lower dirs when it has no upper) at `target`, nosuid and nodev.
    fn mount_readonly(&self, lowers: &[PathBuf], target: &Path) -> io::Result<()>;
    /// Detaches the mount at `target`; not mounted is not an error.
    fn unmount(&self, target: &Path) -> io::Result<()>;
}

/// `lowerdir=...` alone (a read-only overlay), or `None` as for [`mount_options`].
pub fn readonly_options(lowers: &[PathBuf]) -> Option<String> {
    let lowers: Option<Vec<&str>> = lowers
        .iter()
        .map(|p| p.to_str().filter(|s| !s.contains([',', ':', '\\'])))
        .collect();
    let opts = format!("lowerdir={}", lowers?.join(":"));
    (opts.len() <= MAX_MOUNT_OPTIONS).then_some(opts)
}

/// `lowerdir=...,upperdir=...,workdir=...`, or `None` when it would not fit in one
/// `mount(2)` call or a path holds a character overlayfs cannot take in its options.
pub fn mount_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Option<String> {
    let s = |p: &Path| {
        let s = p.to_str()?;
        (!s.contains([',', ':', '\\'])).then(|| s.to_string())
    };
    let lowers: Option<Vec<String>> = lowers.iter().map(|p| s(p)).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers?.join(":"),
        s(upper)?,
        s(work)?
    );
    (opts.len() <= MAX_MOUNT_OPTIONS).then_some(opts)
}

/// The real overlay mounts.
#[derive(Debug, Default)]
pub struct LinuxOverlay;

impl OverlayMounter for LinuxOverlay {
    fn mount(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<()> {
        if lowers.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "overlay needs at least one lower dir",
            ));
        }
        match mount_options(lowers, upper, work) {
            Some(opts) => nix::mount::mount(
                Some("overlay"),
                target,
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            )
            .map_err(io::Error::from),
            None => mount_fsconfig(lowers, Some((upper, work)), target, 0),
        }
    }

    fn mount_readonly(&self, lowers: &[PathBuf], target: &Path) -> io::Result<()> {
        if lowers.len() < 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a read-only overlay needs at least two lower dirs",
            ));
        }
        use nix::mount::MsFlags;
        match readonly_options(lowers) {
            Some(opts) => nix::mount::mount(
                Some("overlay"),
                target,
                Some("overlay"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(opts.as_str()),
            )
            .map_err(io::Error::from),
            None => mount_fsconfig(
                lowers,
                None,
                target,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            ),
        }
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fsconfig_string(fs: &OwnedFd, key: &str, value: &Path) -> io::Result<()> {
    let k = cstr(key.as_bytes())?;
    let v = cstr(value.as_os_str().as_bytes())?;
    // SAFETY: fs is an open fs context fd; k and v are NUL-terminated strings that live
    // across the call; the kernel copies them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    };
    check(r)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("fsconfig {key}={}: {e}", value.display())))
}

/// `upper_work`: the writable upper and work dirs, `None` for a read-only overlay;
/// `attrs`: `MOUNT_ATTR_*` flags of the new mount.
fn mount_fsconfig(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
    attrs: libc::c_uint,
) -> io::Result<()> {
    let name = cstr(b"overlay")?;
    // SAFETY: name is a valid NUL-terminated string; fsopen returns a new fd or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fd was just returned by fsopen and is owned by nobody else.
    let fs = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for l in lowers {
        fsconfig_string(&fs, "lowerdir+", l)?;
    }
    if let Some((upper, work)) = upper_work {
        fsconfig_string(&fs, "upperdir", upper)?;
        fsconfig_string(&fs, "workdir", work)?;
    }
    // SAFETY: fs is an open fs context; the null key/value are what CMD_CREATE takes.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fs is a created fs context; fsmount returns a new mount fd or -1.
    let mfd =
        check(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })?;
    // SAFETY: mfd was just returned by fsmount and is owned by nobody else.
    let mnt = unsafe { OwnedFd::from_raw_fd(mfd as i32) };
    let empty = cstr(b"")?;
    let to = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: mnt is a detached mount fd; empty and to are valid NUL-terminated strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// One recorded mount: lowers, upper, work, target (upper and work empty for a
/// read-only one).
pub type RecordedMount = (Vec<PathBuf>, PathBuf, PathBuf, PathBuf);

/// A fake that records what would have been mounted.
#[derive(Debug, Default)]
pub struct RecordingOverlay {
    pub mounts: Mutex<Vec<RecordedMount>>,
    pub unmounts: Mutex<Vec<PathBuf>>,
}

impl OverlayMounter for RecordingOverlay {
    fn mount(
        &self,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<()> {
        self.mounts.lock().unwrap_or_else(|p| p.into_inner()).push((
            lowers.to_vec(),
            upper.into(),
            work.into(),
            target.into(),
        ));
        Ok(())
    }

    fn mount_readonly(&self, lowers: &[PathBuf], target: &Path) -> io::Result<()> {
        self.mounts.lock().unwrap_or_else(|p| p.into_inner()).push((
            lowers.to_vec(),
            PathBuf::new(),
            PathBuf::new(),
            target.into(),
        ));
        Ok(())
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        self.unmounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(target.into());
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn long_lower_lists_do_not_fit_one_page() {
        let few: Vec<PathBuf> = (0..3).map(|i| PathBuf::from(format!("/s/{i}"))).collect();
        let opts = mount_options(&few, Path::new("/u"), Path::new("/w")).unwrap();
        assert_eq!(opts, "lowerdir=/s/0:/s/1:/s/2,upperdir=/u,workdir=/w");
        let many: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/berth/images/snapshots/{i:064}")))
            .collect();
        assert!(mount_options(&many, Path::new("/u"), Path::new("/w")).is_none());
        assert!(
            mount_options(&[PathBuf::from("/a,b")], Path::new("/u"), Path::new("/w")).is_none()
        );
    }
}
