//! A volumeMount's subPath (upstream makeMounts and subpath.SafeMakeDir): relative, no
//! `..`, made inside the volume with the volume's mode when missing, and resolved so that
//! no symlink on the way leads out of the volume. The container is given the resolved
//! path.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The host path of `sub` inside the volume at `volume`, or why it is refused.
pub fn prepare(volume: &Path, sub: &str) -> Result<PathBuf, String> {
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
    let base =
        std::fs::canonicalize(volume).map_err(|e| format!("volume {}: {e}", volume.display()))?;
    let perm = std::fs::metadata(&base)
        .map_err(|e| format!("volume {}: {e}", base.display()))?
        .permissions()
        .mode()
        & 0o7777;
    let mut cur = base.clone();
    for comp in sub.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let next = cur.join(comp);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let resolved = std::fs::canonicalize(&next)
                    .map_err(|e| format!("subPath `{sub}`: {}: {e}", next.display()))?;
                if !resolved.starts_with(&base) {
                    return Err(format!(
                        "subPath `{sub}` resolves to {} outside the volume",
                        resolved.display()
                    ));
                }
                cur = resolved;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The kernel would make a missing mount target 0755; upstream makes it
                // with the volume's own mode so group-writable volumes stay so.
                std::fs::DirBuilder::new()
                    .mode(perm)
                    .create(&next)
                    .and_then(|()| {
                        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(perm))
                    })
                    .map_err(|e| {
                        format!("failed to create subPath directory {}: {e}", next.display())
                    })?;
                cur = next;
            }
            Err(e) => return Err(format!("subPath `{sub}`: {}: {e}", next.display())),
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::volumes::tests::TempDir;

    #[test]
    fn refusals_and_creation() {
        let t = TempDir::new("subpath");
        let vol = t.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("escape")).unwrap();
        std::os::unix::fs::symlink("../..", vol.join("up")).unwrap();
        std::fs::create_dir(vol.join("real")).unwrap();
        std::os::unix::fs::symlink("real", vol.join("inside")).unwrap();

        assert_eq!(
            prepare(&vol, "/etc").unwrap_err(),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert!(
            prepare(&vol, "a/../b")
                .unwrap_err()
                .contains("must not contain '..'")
        );
        assert!(
            prepare(&vol, "..")
                .unwrap_err()
                .contains("must not contain '..'")
        );
        assert!(
            prepare(&vol, "escape")
                .unwrap_err()
                .contains("outside the volume")
        );
        assert!(
            prepare(&vol, "escape/x")
                .unwrap_err()
                .contains("outside the volume")
        );
        assert!(
            prepare(&vol, "up/x")
                .unwrap_err()
                .contains("outside the volume")
        );
        // Nothing was made outside.
        assert!(!outside.join("x").exists());

        let canon = std::fs::canonicalize(&vol).unwrap();
        assert_eq!(prepare(&vol, "inside").unwrap(), canon.join("real"));
        let made = prepare(&vol, "new/deeper").unwrap();
        assert_eq!(made, canon.join("new/deeper"));
        assert_eq!(
            std::fs::metadata(&made).unwrap().permissions().mode() & 0o7777,
            0o777
        );
        // Again: the same path, nothing new.
        assert_eq!(prepare(&vol, "new/./deeper/").unwrap(), made);
    }
}
