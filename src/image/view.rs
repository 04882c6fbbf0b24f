//! Read-only views of images, for image volumes (a CRI mount with `image` set): the
//! overlay of an image's snapshot chain with no upper dir, so nothing can write to it,
//! mounted at `views/<owner>/<name>/merged`. `views/<owner>/<name>/view.json` records
//! which image it shows; like a rootfs record it keeps the image from removal and its
//! snapshots from collection. The record is written before the mount and removed after
//! the unmount, so a crash at any point leaves a record that [`ImageStore::remove_views`]
//! cleans up.

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};

use super::content::write_atomic;
use super::digest::Digest;
use super::error::{Error, Result};
use super::inroot::{clean_components, open_dir_path, open_in_root};
use super::metadata::ImageRecord;
use super::rootfs::check_id;
use super::store::{ImageStore, now};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewRecord {
    /// Who uses the view (a container ID).
    pub owner: String,
    /// Which of the owner's views (e.g. the index of its mount).
    pub name: String,
    pub image: Digest,
    pub chain: Vec<Digest>,
    pub target: PathBuf,
}

impl ImageStore {
    fn views_dir(&self) -> PathBuf {
        self.root.join("views")
    }

    /// Mounts a read-only view of `image` for `owner` (e.g. a container) under `name`
    /// (one owner may have several); returns the image and the view's root.
    pub async fn create_view(
        &self,
        owner: &str,
        name: &str,
        image: &str,
    ) -> Result<(ImageRecord, PathBuf)> {
        check_id(owner)?;
        check_id(name)?;
        // Collection waits until the record that keeps the image is written.
        let _gc = self.locks.gc_shared().await?;
        let img = self.find(image)?;
        let dir = self.views_dir().join(owner).join(name);
        if dir.exists() {
            return Err(Error::invalid(
                format!("view {owner}/{name}"),
                "already exists",
            ));
        }
        let (target, empty) = (dir.join("merged"), dir.join("empty"));
        for d in [&target, &empty] {
            std::fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        // Top-most first; an empty dir at the bottom, because overlayfs wants two lower
        // dirs when it has no upper and an image may have one layer.
        let mut lowers = match self.lower_dirs(&img) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        lowers.push(empty);
        let rec = ViewRecord {
            owner: owner.into(),
            name: name.into(),
            image: img.id.clone(),
            chain: img.chain_ids.clone(),
            target: target.clone(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|source| Error::Json {
            object: format!("view {owner}/{name}"),
            source,
        })?;
        write_atomic(&dir.join("view.json"), &bytes)?;
        if let Err(source) = self.mounter.mount_readonly(&lowers, &target) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::Mount { target, source });
        }
        if now().saturating_sub(img.last_used) >= super::rootfs::TOUCH_EVERY {
            self.touch(&img.id).await?;
        }
        Ok((img, target))
    }

    /// Unmounts and removes every view of `owner`; none is not an error. Keeps going
    /// past a view it cannot remove and reports the first failure.
    pub fn remove_views(&self, owner: &str) -> Result<()> {
        check_id(owner)?;
        let odir = self.views_dir().join(owner);
        let rd = match std::fs::read_dir(&odir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", &odir)(e)),
        };
        let mut first = None;
        for e in rd.flatten() {
            let dir = e.path();
            // The mount is always at `merged`: a record that cannot be read (a crash
            // before it was written) needs no other target.
            let target = read_view(&dir).map_or_else(|_| dir.join("merged"), |r| r.target);
            let r = self
                .mounter
                .unmount(&target)
                .map_err(|source| Error::Mount { target, source })
                .and_then(|()| std::fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir)));
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        match std::fs::remove_dir(&odir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &odir)(e))
            }
            _ => Ok(()),
        }
    }

    /// The owners that have views (for recovery: views of an owner gone are orphans).
    pub fn view_owners(&self) -> Result<Vec<String>> {
        let dir = self.views_dir();
        match std::fs::read_dir(&dir) {
            Ok(rd) => Ok(rd
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("list", &dir)(e)),
        }
    }

    /// Every view record.
    pub fn view_records(&self) -> Result<Vec<ViewRecord>> {
        let mut out = Vec::new();
        for owner in self.view_owners()? {
            let odir = self.views_dir().join(owner);
            let Ok(rd) = std::fs::read_dir(&odir) else {
                continue;
            };
            out.extend(rd.flatten().filter_map(|e| read_view(&e.path()).ok()));
        }
        Ok(out)
    }
}

fn read_view(dir: &Path) -> Result<ViewRecord> {
    let p = dir.join("view.json");
    let mut b = Vec::new();
    std::fs::File::open(&p)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut b))
        .map_err(Error::io("read", &p))?;
    serde_json::from_slice(&b).map_err(|source| Error::Json {
        object: p.display().to_string(),
        source,
    })
}

/// Why a sub path of a view is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubPathError {
    #[error("{0:?} must be a relative path without `..`")]
    Climbs(String),
    #[error("{0:?} does not exist in the image")]
    Missing(String),
    #[error("{path:?}: {reason}")]
    Other { path: String, reason: String },
}

/// Checks a sub path as given (pure): relative, no `..`, no NUL. Returns its clean
/// components.
pub fn check_sub_path(sub: &str) -> std::result::Result<Vec<String>, SubPathError> {
    if sub.starts_with('/') {
        return Err(SubPathError::Climbs(sub.into()));
    }
    clean_components(sub.as_bytes()).map_err(|_| SubPathError::Climbs(sub.into()))
}

/// The host path of `sub` inside the view rooted at `root`: resolved with
/// `RESOLVE_IN_ROOT`, so a symlink in the image leads somewhere inside the view, never
/// out of it; the result is that real place.
pub fn resolve_sub_path(root: &Path, sub: &str) -> std::result::Result<PathBuf, SubPathError> {
    let comps = check_sub_path(sub)?;
    if comps.is_empty() {
        return Ok(root.to_path_buf());
    }
    let other = |reason: String| SubPathError::Other {
        path: sub.into(),
        reason,
    };
    let dir = open_dir_path(root).map_err(|e| other(e.to_string()))?;
    let fd = match open_in_root(&dir, &comps.join("/"), OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {
            return Err(SubPathError::Missing(sub.into()));
        }
        Err(e) => return Err(other(e.to_string())),
    };
    let real = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ))
    .map_err(|e| other(e.to_string()))?;
    let canon_root = std::fs::canonicalize(root).map_err(|e| other(e.to_string()))?;
    if !real.starts_with(&canon_root) {
        return Err(SubPathError::Climbs(sub.into()));
    }
    Ok(real)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sub_paths_stay_inside_the_view() {
        let root = std::env::temp_dir().join(format!("berth-unit-view-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("data/dir")).unwrap();
        std::fs::write(root.join("data/file"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc", root.join("data/rel")).unwrap();
        let canon = std::fs::canonicalize(&root).unwrap();

        assert_eq!(resolve_sub_path(&root, "").unwrap(), root);
        assert_eq!(
            resolve_sub_path(&root, "./data/dir/").unwrap(),
            canon.join("data/dir")
        );
        assert_eq!(
            resolve_sub_path(&root, "data/file").unwrap(),
            canon.join("data/file")
        );
        for climbs in ["../x", "data/../../x", "/data", "a\0b"] {
            assert!(
                matches!(
                    resolve_sub_path(&root, climbs),
                    Err(SubPathError::Climbs(_))
                ),
                "{climbs:?}"
            );
        }
        assert!(matches!(
            resolve_sub_path(&root, "nope"),
            Err(SubPathError::Missing(_))
        ));
        // Symlinks resolve inside the view: /etc of the image, which it does not have.
        for link in ["abs", "data/rel"] {
            assert!(
                matches!(resolve_sub_path(&root, link), Err(SubPathError::Missing(_))),
                "{link}"
            );
        }
        std::fs::create_dir_all(root.join("etc")).unwrap();
        assert_eq!(resolve_sub_path(&root, "abs").unwrap(), canon.join("etc"));
        assert_eq!(
            resolve_sub_path(&root, "data/rel").unwrap(),
            canon.join("etc")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
