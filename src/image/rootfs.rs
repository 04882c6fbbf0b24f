//! Container root filesystems: `rootfs/<container>/` holds the overlay's `upper` and
//! `work` dirs and a record of the image it was made from (which keeps that image and
//! its snapshots from being collected); the overlay of the image's snapshot chain is
//! mounted at `merged` or at a target the caller names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::content::write_atomic;
use super::digest::Digest;
use super::error::{Error, Result};
use super::metadata::ImageRecord;
use super::store::{ImageStore, now};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsRecord {
    pub container: String,
    pub image: Digest,
    pub chain: Vec<Digest>,
    pub target: PathBuf,
}

pub(super) fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("container id {id:?}"),
            "must be 1-128 of [A-Za-z0-9_.-], not starting with .",
        ))
    }
}

/// How stale an image's `last_used` may get (seconds) before a container's use renews it.
pub(super) const TOUCH_EVERY: u64 = 60;

impl ImageStore {
    fn rootfs_dir(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    /// The writable (upper) directory of `container`'s rootfs.
    pub fn rootfs_upper(&self, container: &str) -> Result<PathBuf> {
        check_id(container)?;
        Ok(self.rootfs_dir().join(container).join("upper"))
    }

    /// Makes `container`'s rootfs from `image` and mounts it at `target` (default
    /// `rootfs/<container>/merged`); returns the mount point.
    pub async fn create_rootfs(
        &self,
        container: &str,
        image: &str,
        target: Option<&Path>,
    ) -> Result<PathBuf> {
        check_id(container)?;
        // Collection waits until the rootfs record that keeps the image is written.
        let _gc = self.locks.gc_shared().await?;
        let img = self.find(image)?;
        let dir = self.rootfs_dir().join(container);
        if dir.exists() {
            return Err(Error::invalid(
                format!("container {container}"),
                "already has a rootfs",
            ));
        }
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        let target = target
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join("merged"));
        for d in [&upper, &work, &target] {
            std::fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        let lowers = self.lower_dirs(&img)?;
        let rec = RootfsRecord {
            container: container.into(),
            image: img.id.clone(),
            chain: img.chain_ids.clone(),
            target: target.clone(),
        };
        let bytes = serde_json::to_vec(&rec).map_err(|source| Error::Json {
            object: container.into(),
            source,
        })?;
        write_atomic(&dir.join("rootfs.json"), &bytes)?;
        if let Err(source) = self.mounter.mount(&lowers, &upper, &work, &target) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::Mount { target, source });
        }
        // `img` was read above: most creates need not read the metadata again
        if now().saturating_sub(img.last_used) >= TOUCH_EVERY {
            self.touch(&img.id).await?;
        }
        Ok(target)
    }

    /// The unpacked layers of `img`, top-most first, as overlayfs takes its lower dirs;
    /// an error naming the image when one is missing.
    pub(super) fn lower_dirs(&self, img: &ImageRecord) -> Result<Vec<PathBuf>> {
        let lowers: Vec<PathBuf> = img
            .chain_ids
            .iter()
            .rev()
            .map(|c| self.snapshots.path(c))
            .collect();
        if let Some(missing) = lowers.iter().find(|p| !p.is_dir()) {
            return Err(Error::invalid(
                format!("image {}", img.id),
                format!(
                    "snapshot {} is missing; pull the image again",
                    missing.display()
                ),
            ));
        }
        Ok(lowers)
    }

    /// Unmounts and removes `container`'s rootfs; a missing one is not an error.
    pub fn remove_rootfs(&self, container: &str) -> Result<()> {
        check_id(container)?;
        let dir = self.rootfs_dir().join(container);
        let Ok(rec) = self.read_rootfs(&dir) else {
            return match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("remove", &dir)(e))
                }
                _ => Ok(()),
            };
        };
        self.mounter
            .unmount(&rec.target)
            .map_err(|source| Error::Mount {
                target: rec.target.clone(),
                source,
            })?;
        std::fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))
    }

    fn read_rootfs(&self, dir: &Path) -> Result<RootfsRecord> {
        let p = dir.join("rootfs.json");
        let b = std::fs::read(&p).map_err(Error::io("read", &p))?;
        serde_json::from_slice(&b).map_err(|source| Error::Json {
            object: p.display().to_string(),
            source,
        })
    }

    /// Every container rootfs record.
    pub fn rootfs_records(&self) -> Result<Vec<RootfsRecord>> {
        let dir = self.rootfs_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &dir)(e)),
        };
        Ok(rd
            .flatten()
            .filter_map(|e| self.read_rootfs(&e.path()).ok())
            .collect())
    }

    /// Image IDs some container's rootfs or image volume uses.
    pub fn images_in_use(&self) -> Result<BTreeSet<Digest>> {
        let mut used: BTreeSet<Digest> = self
            .rootfs_records()?
            .into_iter()
            .map(|r| r.image)
            .collect();
        used.extend(self.view_records()?.into_iter().map(|v| v.image));
        Ok(used)
    }

    /// Who uses `image`: containers with it as their rootfs, and owners of views of it.
    pub fn users_of(&self, image: &Digest) -> Result<Vec<String>> {
        let mut users: Vec<String> = self
            .rootfs_records()?
            .into_iter()
            .filter(|r| &r.image == image)
            .map(|r| r.container)
            .collect();
        for v in self.view_records()? {
            if &v.image == image {
                users.push(format!("{} (image volume)", v.owner));
            }
        }
        Ok(users)
    }

    /// Marks the image used now. The metadata file (every image, fsynced) is rewritten at
    /// most once a minute per image: `last_used` only orders garbage collection, and a
    /// node starting containers of one image would otherwise rewrite it for each.
    pub(super) async fn touch(&self, id: &Digest) -> Result<()> {
        let _g = self.locks.lock("meta").await?;
        let mut images = self.meta.load()?;
        let t = now();
        match images.iter_mut().find(|i| &i.id == id) {
            Some(i) if t.saturating_sub(i.last_used) >= TOUCH_EVERY => i.last_used = t,
            _ => return Ok(()),
        }
        self.meta.save(images)
    }
}
