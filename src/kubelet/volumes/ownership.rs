//! A volume's ownership for the pod's `securityContext.fsGroup` (upstream
//! pkg/volume/volume_linux.go SetVolumeOwnership): every file and directory below the
//! volume's root gets the fsGroup as its group (the owner uid stays), group read (and
//! write unless the volume is read-only), and directories also group search and setgid,
//! so what the containers create later belongs to the fsGroup too.
//!
//! Symlinks are left alone: chown and chmod would reach the file they point to, which for
//! the atomic writer's links means undoing the mode the volume asked for. Failed chown or
//! chmod calls are logged and the walk goes on, as upstream; only a directory that cannot
//! be read stops it.
//!
//! Touches only the tree below the root it is given.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Group read and write, for a writable volume.
const RW_MASK: u32 = 0o660;
/// Group read, for a read-only volume.
const RO_MASK: u32 = 0o440;
/// Search, added on directories.
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// `securityContext.fsGroupChangePolicy` value that skips the walk when the root matches.
pub const ON_ROOT_MISMATCH: &str = "OnRootMismatch";

/// Why the ownership of a volume could not be set; the caller adds pod and volume.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error("fsGroup {0} is not a valid group id")]
    BadGroup(i64),
    #[error("set ownership of {path}: {source}")]
    Walk { path: PathBuf, source: io::Error },
}

/// Gives the tree at `root` to `fs_group` (nothing when `None`). With the policy
/// `OnRootMismatch`, a root that already has the group, the group permissions and setgid
/// is taken as done and nothing below it is visited; any other policy walks everything.
pub fn set_volume_ownership(
    root: &Path,
    fs_group: Option<i64>,
    change_policy: Option<&str>,
    read_only: bool,
) -> Result<(), OwnershipError> {
    let Some(group) = fs_group else {
        return Ok(());
    };
    let gid = u32::try_from(group).map_err(|_| OwnershipError::BadGroup(group))?;
    if change_policy == Some(ON_ROOT_MISMATCH) && !requires_permission_change(root, gid, read_only)
    {
        tracing::debug!(root = %root.display(), "volume root matches fsGroup, ownership change skipped");
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(root).map_err(walk_err(root))?;
    walk_deep(root, &meta, &mut |path, meta| {
        change_file_permission(path, meta, gid, read_only)
    })
}

fn walk_err(path: &Path) -> impl FnOnce(io::Error) -> OwnershipError + '_ {
    move |source| OwnershipError::Walk {
        path: path.to_path_buf(),
        source,
    }
}

/// The group permissions a volume's files need, with search on directories.
fn mask(read_only: bool, is_dir: bool) -> u32 {
    let m = if read_only { RO_MASK } else { RW_MASK };
    if is_dir { m | SETGID | EXEC_MASK } else { m }
}

/// chown to the group (same owner) and chmod to the old mode plus the mask; both only
/// logged when they fail. The mode read before the chown is the one written back, since
/// chown clears a file's setuid and setgid bits.
fn change_file_permission(path: &Path, meta: &std::fs::Metadata, gid: u32, read_only: bool) {
    if meta.file_type().is_symlink() {
        return;
    }
    if let Err(e) = std::os::unix::fs::chown(path, Some(meta.uid()), Some(gid)) {
        tracing::error!(path = %path.display(), error = %e, "chown for fsGroup failed");
    }
    let mode = (meta.mode() & 0o7777) | mask(read_only, meta.is_dir());
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::error!(path = %path.display(), error = %e, "chmod for fsGroup failed");
    }
}

/// Whether the root lacks the group, the group permissions or setgid (upstream
/// requiresPermissionChange); a root that cannot be read, or is no directory, needs them.
fn requires_permission_change(root: &Path, gid: u32, read_only: bool) -> bool {
    let meta = match std::fs::metadata(root) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(root = %root.display(), error = %e, "cannot read volume root, changing ownership of everything");
            return true;
        }
    };
    if meta.gid() != gid || !meta.is_dir() {
        return true;
    }
    let want = mask(read_only, true) & 0o777;
    meta.mode() & want != want || meta.mode() & SETGID == 0
}

/// Children before their directory (upstream walkDeep), in the directory's own order.
/// An entry that vanishes or cannot be stat'ed stops the walk with its path.
fn walk_deep(
    path: &Path,
    meta: &std::fs::Metadata,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata),
) -> Result<(), OwnershipError> {
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(walk_err(path))? {
            let entry = entry.map_err(walk_err(path))?;
            let child = entry.path();
            let child_meta = std::fs::symlink_metadata(&child).map_err(walk_err(&child))?;
            walk_deep(&child, &child_meta, f)?;
        }
    }
    f(path, meta);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::kubelet::volumes::tests::TempDir;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn set_mode(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    /// A volume root with a file, a subdirectory with a file, and a symlink to a file
    /// outside the volume; returns (volume root, outside file).
    fn tree(t: &TempDir) -> (PathBuf, PathBuf) {
        let root = t.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("f"), "x").unwrap();
        std::fs::write(root.join("sub/g"), "y").unwrap();
        let outside = t.path().join("outside");
        std::fs::write(&outside, "z").unwrap();
        symlink(&outside, root.join("link")).unwrap();
        set_mode(&root, 0o755);
        set_mode(&root.join("sub"), 0o700);
        set_mode(&root.join("f"), 0o600);
        set_mode(&root.join("sub/g"), 0o4644);
        set_mode(&outside, 0o600);
        (root, outside)
    }

    /// The process's own group: chown to it needs no root.
    fn own_gid() -> i64 {
        nix::unistd::getegid().as_raw().into()
    }

    #[test]
    fn writable_volume_gets_group_rw_and_setgid_dirs() {
        let t = TempDir::new("own-rw");
        let (root, outside) = tree(&t);
        set_volume_ownership(&root, Some(own_gid()), None, false).unwrap();
        assert_eq!(mode(&root), 0o2775);
        assert_eq!(mode(&root.join("sub")), 0o2770);
        assert_eq!(mode(&root.join("f")), 0o660);
        // Bits beyond the permissions survive the chown.
        assert_eq!(mode(&root.join("sub/g")), 0o4664);
        // Not followed: the file behind the symlink keeps its mode.
        assert_eq!(mode(&outside), 0o600);
    }

    #[test]
    fn read_only_volume_gets_group_read_only() {
        let t = TempDir::new("own-ro");
        let (root, _) = tree(&t);
        set_volume_ownership(&root, Some(own_gid()), None, true).unwrap();
        assert_eq!(mode(&root), 0o2755);
        assert_eq!(mode(&root.join("sub")), 0o2750);
        assert_eq!(mode(&root.join("f")), 0o640);
        assert_eq!(mode(&root.join("sub/g")), 0o4644);
    }

    #[test]
    fn no_fs_group_changes_nothing() {
        let t = TempDir::new("own-none");
        let (root, _) = tree(&t);
        set_volume_ownership(&root, None, Some(ON_ROOT_MISMATCH), false).unwrap();
        assert_eq!(mode(&root), 0o755);
        assert_eq!(mode(&root.join("f")), 0o600);
    }

    #[test]
    fn on_root_mismatch_skips_a_matching_root_only() {
        let t = TempDir::new("own-policy");
        let (root, _) = tree(&t);
        // The root already has the group, group rwx and setgid: nothing below is visited.
        set_mode(&root, 0o2770);
        set_volume_ownership(&root, Some(own_gid()), Some(ON_ROOT_MISMATCH), false).unwrap();
        assert_eq!(mode(&root.join("f")), 0o600);
        assert_eq!(mode(&root.join("sub")), 0o700);
        // Always (or no policy) walks whatever the root looks like.
        set_volume_ownership(&root, Some(own_gid()), Some("Always"), false).unwrap();
        assert_eq!(mode(&root.join("f")), 0o660);

        // Without setgid, or without group write on a writable volume, the root mismatches.
        for root_mode in [0o770, 0o2750] {
            let t = TempDir::new("own-mismatch");
            let (root, _) = tree(&t);
            set_mode(&root, root_mode);
            set_volume_ownership(&root, Some(own_gid()), Some(ON_ROOT_MISMATCH), false).unwrap();
            assert_eq!(mode(&root.join("f")), 0o660, "root mode {root_mode:o}");
        }
        // Read-only: group r-x with setgid is enough.
        let t = TempDir::new("own-ro-match");
        let (root, _) = tree(&t);
        set_mode(&root, 0o2750);
        set_volume_ownership(&root, Some(own_gid()), Some(ON_ROOT_MISMATCH), true).unwrap();
        assert_eq!(mode(&root.join("f")), 0o600);
    }

    #[test]
    fn bad_group_and_missing_root_refused() {
        let t = TempDir::new("own-bad");
        assert!(matches!(
            set_volume_ownership(t.path(), Some(-1), None, false),
            Err(OwnershipError::BadGroup(-1))
        ));
        let missing = t.path().join("missing");
        let e = set_volume_ownership(&missing, Some(own_gid()), None, false).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    /// As root: the group really becomes the fsGroup, the owner stays.
    #[test]
    fn group_is_fs_group_as_root() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping group_is_fs_group_as_root: needs root (chown to another group)");
            return;
        }
        let t = TempDir::new("own-root");
        let (root, outside) = tree(&t);
        std::os::unix::fs::chown(root.join("f"), Some(1000), Some(0)).unwrap();
        set_volume_ownership(&root, Some(2000), None, false).unwrap();
        for p in [
            root.clone(),
            root.join("sub"),
            root.join("f"),
            root.join("sub/g"),
        ] {
            assert_eq!(
                std::fs::metadata(&p).unwrap().gid(),
                2000,
                "{}",
                p.display()
            );
        }
        assert_eq!(std::fs::metadata(root.join("f")).unwrap().uid(), 1000);
        assert_eq!(std::fs::metadata(root.join("sub")).unwrap().uid(), 0);
        assert_eq!(std::fs::metadata(&outside).unwrap().gid(), 0);
        // A file made later in a setgid directory belongs to the fsGroup.
        std::fs::write(root.join("sub/new"), "n").unwrap();
        assert_eq!(std::fs::metadata(root.join("sub/new")).unwrap().gid(), 2000);
    }
}
