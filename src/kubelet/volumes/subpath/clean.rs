//! Teardown of a pod's subPath bind mounts (upstream CleanSubPaths), from what is on
//! disk and in the mount table alone.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::MntFlags;

use super::bind::remove_target;
use super::{SUBPATHS_DIR, SubpathError};
use crate::kubelet::volumes::empty_dir::mount_points;
use crate::sys::mount::Mounter;

/// Unmounts every bind mount in `<pod_dir>/volume-subpaths/<volume>/<container>/` and
/// removes each target, then the emptied dirs. `pod_dir` must be resolved (it is
/// compared with the mount table). Nothing is removed recursively: a target that stays
/// mounted, or is not empty, is an error and keeps its dirs, so nothing inside a volume
/// is ever deleted through a mount. Goes on past every error and returns them all.
pub fn clean_subpaths(mounter: &dyn Mounter, pod_dir: &Path) -> Vec<SubpathError> {
    let root = pod_dir.join(SUBPATHS_DIR);
    let mut errors = Vec::new();
    let volumes = match dirs(&root) {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return errors,
        Err(e) => return vec![SubpathError::io("error reading", &root)(e)],
    };
    let points = match mounter.mountinfo() {
        Ok(info) => mount_points(&info),
        Err(e) => return vec![SubpathError::io("error reading mount table for", &root)(e)],
    };
    for volume in volumes {
        let before = errors.len();
        match dirs(&volume) {
            Ok(containers) => {
                for container in containers {
                    clean_container(mounter, &points, &container, &mut errors);
                }
            }
            Err(e) => errors.push(SubpathError::io("error reading", &volume)(e)),
        }
        if errors.len() == before {
            remove_dir(&volume, &mut errors);
        }
    }
    if errors.is_empty() {
        remove_dir(&root, &mut errors);
    }
    errors
}

/// Every first-level entry of a container's dir is one bind target; what is below a
/// target belongs to the volume and is not looked at.
fn clean_container(
    mounter: &dyn Mounter,
    points: &[PathBuf],
    dir: &Path,
    errors: &mut Vec<SubpathError>,
) {
    let before = errors.len();
    match entries(dir) {
        Ok(targets) => {
            for target in targets {
                if let Err(err) = cleanup_mount_point(mounter, points, &target) {
                    errors.push(err);
                }
            }
        }
        Err(e) => errors.push(SubpathError::io("error reading", dir)(e)),
    }
    if errors.len() == before {
        remove_dir(dir, errors);
    }
}

/// Unmounts `target` as many times as the mount table shows it mounted, then removes it
/// (upstream CleanupMountPoint).
fn cleanup_mount_point(
    mounter: &dyn Mounter,
    points: &[PathBuf],
    target: &Path,
) -> Result<(), SubpathError> {
    for _ in points.iter().filter(|p| *p == target) {
        mounter
            .umount(target, MntFlags::empty())
            .map_err(SubpathError::sys("error unmounting", target))?;
        tracing::debug!(target = %target.display(), "subPath unmounted");
    }
    match remove_target(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(SubpathError::StillMounted {
            path: target.to_path_buf(),
        }),
        Err(e) => Err(SubpathError::io("error deleting", target)(e)),
    }
}

/// The entries of `dir`, in order.
fn entries(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

/// The subdirectories of `dir`, in order (upstream skips anything else).
fn dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(entries(dir)?
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()))
        .collect())
}

fn remove_dir(dir: &Path, errors: &mut Vec<SubpathError>) {
    if let Err(e) = std::fs::remove_dir(dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        errors.push(SubpathError::io("error deleting", dir)(e));
    }
}
