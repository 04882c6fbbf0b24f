//! The bind mount of a safely opened subPath onto its target below the pod's dir
//! (upstream doBindSubPath and prepareSubpathTarget).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{SFlag, fstat};

use super::safe_open::{safe_open, segments};
use super::{SUBPATHS_DIR, Subpath, SubpathError};
use crate::kubelet::volumes::empty_dir::mount_points;
use crate::kubelet::volumes::mkdir;
use crate::sys::mount::Mounter;

/// Bind-mounts the subPath onto `<pod dir>/volume-subpaths/<volume>/<container>/<index>`
/// and returns that path, the one to give the runtime (upstream PrepareSafeSubpath). A
/// bind mount already there of the same file is kept; one of another file is replaced.
pub fn prepare_safe_subpath(mounter: &dyn Mounter, sp: &Subpath) -> Result<PathBuf, SubpathError> {
    // Resolved once here; from now on nothing follows a symlink.
    let volume_path = std::fs::canonicalize(&sp.volume_path).map_err(SubpathError::io(
        "error resolving symlinks in",
        &sp.volume_path,
    ))?;
    let path = std::fs::canonicalize(&sp.path)
        .map_err(SubpathError::io("error resolving symlinks in", &sp.path))?;
    if segments(&path, &volume_path).is_none() {
        return Err(SubpathError::Outside {
            path,
            base: volume_path,
        });
    }
    let fd = safe_open(&path, &volume_path)?;

    let pod_dir = std::fs::canonicalize(&sp.pod_dir)
        .map_err(SubpathError::io("error resolving symlinks in", &sp.pod_dir))?;
    let container_dir = pod_dir
        .join(SUBPATHS_DIR)
        .join(&sp.volume_name)
        .join(&sp.container_name);
    let target = container_dir.join(sp.volume_mount_index.to_string());
    if prepare_target(mounter, &fd, &target)? {
        tracing::debug!(target = %target.display(), "subPath already bind-mounted");
        return Ok(target);
    }

    // The fd's magic link is what the kernel mounts: the file opened above, wherever the
    // path leads by now.
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if let Err(source_err) = mounter.mount(Some(&source), &target, None, MsFlags::MS_BIND, None) {
        // Nothing is mounted there: the target and the dirs made for it go.
        let _ = remove_target(&target);
        remove_empty_dirs(&pod_dir, &container_dir);
        return Err(SubpathError::Sys {
            op: "error mounting",
            path,
            source: source_err,
        });
    }
    tracing::debug!(subpath = %path.display(), target = %target.display(), "subPath bind-mounted");
    Ok(target)
}

/// Makes the bind target for what `fd` is (a directory for a directory, an empty file
/// for anything else: a file target takes any kind); true when the right bind mount is
/// already there.
fn prepare_target(
    mounter: &dyn Mounter,
    fd: &OwnedFd,
    target: &Path,
) -> Result<bool, SubpathError> {
    let st = fstat(fd).map_err(SubpathError::sys("fstat", target))?;
    let want_dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
    match std::fs::symlink_metadata(target) {
        Ok(meta) => {
            let info = mounter
                .mountinfo()
                .map_err(SubpathError::io("error reading mount table for", target))?;
            if mount_points(&info).iter().any(|p| p == target) {
                if meta.dev() == st.st_dev && meta.ino() == st.st_ino {
                    return Ok(true);
                }
                mounter
                    .umount(target, MntFlags::empty())
                    .map_err(SubpathError::sys("error unmounting", target))?;
            }
            // Left by an earlier subPath of the other kind: made again below.
            if let Ok(meta) = std::fs::symlink_metadata(target)
                && meta.is_dir() != want_dir
            {
                remove_target(target).map_err(SubpathError::io("error removing", target))?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(SubpathError::io("lstat", target)(e)),
    }
    if let Some(parent) = target.parent() {
        mkdir(parent, 0o750).map_err(SubpathError::io("error creating directory", parent))?;
    }
    if want_dir {
        match std::fs::DirBuilder::new().mode(0o750).create(target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SubpathError::io("error creating directory", target)(e)),
        }
    } else {
        // An existing target is left as it is: nothing is written through a path that
        // may have been a mount point a moment ago.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(target)
            .map_err(SubpathError::io("error creating file", target))?;
    }
    Ok(false)
}

/// Removes a bind target that nothing is mounted on: a directory only when empty.
pub(super) fn remove_target(target: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(target)?.is_dir() {
        std::fs::remove_dir(target)
    } else {
        std::fs::remove_file(target)
    }
}

/// Removes `end` and its parents up to (not including) `base` while they are empty
/// (upstream removeEmptyDirs).
pub(super) fn remove_empty_dirs(base: &Path, end: &Path) {
    let mut cur = end;
    while cur != base && cur.starts_with(base) {
        if std::fs::remove_dir(cur).is_err() {
            break;
        }
        match cur.parent() {
            Some(p) => cur = p,
            None => break,
        }
    }
}
