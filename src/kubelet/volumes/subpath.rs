//! A volumeMount's subPath, made safe as upstream kubelet makes it
//! (pkg/volume/util/subpath, Linux): the container controls what is inside its volumes
//! and may swap a directory for a symlink at any moment, so no path inside a volume is
//! handed to the runtime. Instead:
//!
//! 1. [`validate`]: relative, no `..` (makeMounts).
//! 2. [`safe_make_dir`]: a missing subPath is made one directory at a time with
//!    mkdirat/openat(O_NOFOLLOW), each with the volume's mode (SafeMakeDir).
//! 3. [`prepare_safe_subpath`]: the subPath is resolved once, checked to be inside the
//!    volume, then opened component by component from the volume's root with
//!    openat(O_PATH|O_NOFOLLOW), refusing any symlink met on the way; the open fd
//!    (`/proc/self/fd/<fd>`, which the container cannot redirect) is bind-mounted onto
//!    `<pod dir>/volume-subpaths/<volume>/<container>/<mount index>`, and that path is
//!    what the runtime mounts into the container (PrepareSafeSubpath). A bind mount
//!    already there of the same file is kept, so restarts stack nothing.
//! 4. [`clean_subpaths`]: at teardown, every mount found by walking
//!    `<pod dir>/volume-subpaths` is unmounted and its target removed without recursion
//!    (CleanSubPaths); nothing in memory is needed, so it works after a crash.
//!
//! Owns `<pod dir>/volume-subpaths`; inside a volume it only makes the missing subPath
//! directories. Mounts go through [`crate::sys::mount::Mounter`].

mod bind;
mod clean;
mod safe_open;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_root;

use std::io;
use std::path::PathBuf;

pub use bind::prepare_safe_subpath;
pub use clean::clean_subpaths;
pub use safe_open::safe_make_dir;

/// The directory below a pod's dir that holds the subPath bind mounts.
pub const SUBPATHS_DIR: &str = "volume-subpaths";

/// One volumeMount's subPath, as upstream's subpath.Subpath.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subpath {
    /// The index of the volumeMount in the container's volumeMounts.
    pub volume_mount_index: usize,
    /// The subPath's host path: the volume's path joined with the subPath.
    pub path: PathBuf,
    pub volume_name: String,
    /// The volume's host path.
    pub volume_path: PathBuf,
    pub pod_dir: PathBuf,
    pub container_name: String,
}

/// Why a subPath could not be made, opened, bind-mounted or cleaned; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum SubpathError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{op} {path}: {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("path {path} is outside of allowed base {base}")]
    Outside { path: PathBuf, base: PathBuf },
    #[error("unexpected symlink found {path}")]
    Symlink { path: PathBuf },
    #[error("failed to unmount path {path}")]
    StillMounted { path: PathBuf },
}

impl SubpathError {
    fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| SubpathError::Io { op, path, source }
    }

    fn sys(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(nix::Error) -> Self {
        let path = path.into();
        move |source| SubpathError::Sys { op, path, source }
    }
}

/// The subPath as upstream's makeMounts accepts it: relative and without `..`.
pub fn validate(sub: &str) -> Result<(), String> {
    if sub.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if sub.split('/').any(|c| c == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(())
}
