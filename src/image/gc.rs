//! Removal and garbage collection: removing an image record, then collecting the blobs
//! and snapshots no record or container references; and the kubelet's image GC policy
//! (when disk use passes the high threshold, remove least recently used images that no
//! container uses and that are older than the minimum age, until use is under the low
//! threshold).

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{Error, Result};
use super::metadata::{ImageRecord, find};
use super::store::{ImageStore, now};

/// The kubelet's image GC settings (KubeletConfiguration's imageGC* fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub min_age: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

impl Policy {
    pub fn validate(&self) -> Result<()> {
        let p = |f: &str, why: &str| {
            Err(Error::invalid(
                format!("image GC policy field {f}"),
                why.to_string(),
            ))
        };
        if self.high_threshold_percent > 100 {
            return p("high_threshold_percent", "must be 0-100");
        }
        if self.low_threshold_percent > self.high_threshold_percent {
            return p(
                "low_threshold_percent",
                "must not exceed high_threshold_percent",
            );
        }
        Ok(())
    }
}

/// Bytes of the filesystem holding the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub capacity: u64,
    pub available: u64,
}

/// Which images the policy removes, oldest use first: plain data in and out.
pub fn plan(
    images: &[ImageRecord],
    in_use: &BTreeSet<Digest>,
    usage: DiskUsage,
    policy: &Policy,
    now: u64,
) -> Vec<Digest> {
    if usage.capacity == 0 {
        return Vec::new();
    }
    let used = usage.capacity.saturating_sub(usage.available);
    if used * 100 < u64::from(policy.high_threshold_percent) * usage.capacity {
        return Vec::new();
    }
    let target = usage.capacity * u64::from(policy.low_threshold_percent) / 100;
    let mut to_free = used.saturating_sub(target);
    let mut candidates: Vec<&ImageRecord> = images
        .iter()
        .filter(|i| !in_use.contains(&i.id))
        .filter(|i| now.saturating_sub(i.stored_at) >= policy.min_age.as_secs())
        .collect();
    candidates.sort_by_key(|i| (i.last_used, i.stored_at));
    let mut out = Vec::new();
    for i in candidates {
        if to_free == 0 {
            break;
        }
        to_free = to_free.saturating_sub(i.size);
        out.push(i.id.clone());
    }
    out
}

/// What a collection removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Collected {
    pub images: Vec<Digest>,
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
    pub ingests: usize,
    pub bytes: u64,
    /// Snapshot trees moved aside (`snapshots/trash-*`), still to be deleted: see
    /// [`ImageStore::remove_detached`].
    #[serde(skip)]
    pub trash: Vec<std::path::PathBuf>,
}

impl ImageStore {
    /// Removes the image `query` names (or, for a tag of an image that has more tags,
    /// only that tag). An image a container uses is refused.
    pub async fn remove(&self, query: &str) -> Result<Collected> {
        let mut c = self.remove_detached(query).await?;
        let trash = std::mem::take(&mut c.trash);
        c.bytes += purge_blocking(trash).await;
        Ok(c)
    }

    /// [`Self::remove`], but the unpacked snapshots it frees are deleted on a blocking
    /// thread after it returns: they were moved aside (one rename each, under the locks)
    /// so nothing can use them again, and the caller (a CRI RemoveImage) need not wait
    /// for their trees to be walked. A `kill -9` meanwhile leaves `snapshots/trash-*`,
    /// which the next start removes. `bytes` then counts the blobs only.
    pub async fn remove_detached(&self, query: &str) -> Result<Collected> {
        let gc = self.locks.gc_exclusive().await?;
        let img = {
            let _g = self.locks.lock("meta").await?;
            let mut images = self.meta.load()?;
            let img = find(&images, query)?.clone();
            let untag = img.repo_tags.len() > 1
                && img.repo_tags.iter().any(|t| {
                    super::Reference::parse(query)
                        .ok()
                        .and_then(|r| r.tagged())
                        .as_ref()
                        == Some(t)
                });
            if untag {
                let t = super::Reference::parse(query).ok().and_then(|r| r.tagged());
                if let Some(i) = images.iter_mut().find(|i| i.id == img.id) {
                    i.repo_tags.retain(|x| Some(x) != t.as_ref());
                }
                self.meta.save(images)?;
                return Ok(Collected::default());
            }
            let users = self.users_of(&img.id)?;
            if !users.is_empty() {
                return Err(Error::InUse {
                    image: img.id.to_string(),
                    containers: users.join(", "),
                });
            }
            images.retain(|i| i.id != img.id);
            self.meta.save(images.clone())?;
            (img, images)
        };
        let (img, images) = img;
        let mut c = self.collect(&images, false)?;
        drop(gc);
        c.images.push(img.id);
        let trash = std::mem::take(&mut c.trash);
        if !trash.is_empty() {
            tokio::task::spawn_blocking(move || {
                let freed = purge(&trash);
                tracing::debug!(snapshots = trash.len(), freed, "removed snapshots");
            });
        }
        Ok(c)
    }

    /// Prunes: removes images no container uses (all of them with `all`, else only
    /// untagged ones), then unreferenced blobs, snapshots and interrupted ingests.
    pub async fn prune(&self, all: bool) -> Result<Collected> {
        let gc = self.locks.gc_exclusive().await?;
        let removed = {
            let _g = self.locks.lock("meta").await?;
            let in_use = self.images_in_use()?;
            let mut images = self.meta.load()?;
            let (gone, keep): (Vec<_>, Vec<_>) = images
                .drain(..)
                .partition(|i| !in_use.contains(&i.id) && (all || i.repo_tags.is_empty()));
            self.meta.save(keep.clone())?;
            (gone.into_iter().map(|i| i.id).collect::<Vec<_>>(), keep)
        };
        let (removed, keep) = removed;
        let mut c = self.collect(&keep, true)?;
        drop(gc);
        c.images = removed;
        let trash = std::mem::take(&mut c.trash);
        c.bytes += purge_blocking(trash).await;
        Ok(c)
    }

    /// Applies the kubelet policy against the store's filesystem.
    pub async fn gc(&self, policy: &Policy) -> Result<Collected> {
        policy.validate()?;
        let st = nix::sys::statvfs::statvfs(&self.root)
            .map_err(|e| Error::io("statvfs", &self.root)(e.into()))?;
        let frag = st.fragment_size();
        let usage = DiskUsage {
            capacity: st.blocks() * frag,
            available: st.blocks_available() * frag,
        };
        let victims = plan(
            &self.images()?,
            &self.images_in_use()?,
            usage,
            policy,
            now(),
        );
        let mut total = Collected::default();
        for id in victims {
            match self.remove(id.as_str()).await {
                Ok(c) => {
                    total.images.extend(c.images);
                    total.blobs.extend(c.blobs);
                    total.snapshots.extend(c.snapshots);
                    total.bytes += c.bytes;
                }
                // Taken into use since the plan: keep it.
                Err(Error::InUse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Removes blobs and moves aside (into `snapshots/trash-*`, for [`purge`]) the
    /// snapshots that no image record in `images` (the records just saved) or container
    /// references. Callers hold the gc lock exclusively, so no pull is between storing
    /// and recording.
    fn collect(&self, images: &[ImageRecord], ingests: bool) -> Result<Collected> {
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut chains: BTreeSet<Digest> = BTreeSet::new();
        for i in images {
            blobs.insert(i.id.clone());
            blobs.insert(i.manifest.clone());
            blobs.extend(i.layers.iter().cloned());
            chains.extend(i.chain_ids.iter().cloned());
        }
        // An index (manifest list) a pull stored stays with the image it led to.
        for r in self.rootfs_records()? {
            chains.extend(r.chain);
        }
        for v in self.view_records()? {
            chains.extend(v.chain);
        }
        let mut c = Collected::default();
        let index_refs = self.index_blobs(images);
        for d in self.content.list()? {
            if !blobs.contains(&d) && !index_refs.contains(&d) {
                c.bytes += self.content.size(&d).unwrap_or(0);
                self.content.remove(&d)?;
                c.blobs.push(d);
            }
        }
        for s in self.snapshots.list()? {
            if !chains.contains(&s) {
                c.trash.push(self.snapshots.discard(&s)?);
                c.snapshots.push(s);
            }
        }
        if ingests {
            for p in self.content.ingests()? {
                let _ = std::fs::remove_file(p);
                c.ingests += 1;
            }
        }
        Ok(c)
    }

    /// Index blobs whose repo digest an image carries.
    fn index_blobs(&self, images: &[ImageRecord]) -> BTreeSet<Digest> {
        images
            .iter()
            .flat_map(|i| i.repo_digests.iter())
            .filter_map(|rd| rd.rsplit_once('@').and_then(|(_, d)| Digest::parse(d).ok()))
            .collect()
    }
}

/// Deletes snapshot trees [`ImageStore::collect`] moved aside; returns the bytes their
/// files held (apparent sizes), counted in the same walk that deletes them.
pub fn purge(trash: &[std::path::PathBuf]) -> u64 {
    trash
        .iter()
        .map(|p| {
            let (bytes, r) = super::snapshot::remove_tree(p);
            if let Err(e) = r {
                tracing::warn!(dir = %p.display(), error = %e, "remove a discarded snapshot");
            }
            bytes
        })
        .sum()
}

async fn purge_blocking(trash: Vec<std::path::PathBuf>) -> u64 {
    if trash.is_empty() {
        return 0;
    }
    tokio::task::spawn_blocking(move || purge(&trash))
        .await
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::metadata::RuntimeConfig;

    fn img(n: u8, size: u64, stored_at: u64, last_used: u64) -> ImageRecord {
        ImageRecord {
            id: Digest::of(&[n]),
            manifest: Digest::of(&[n, 1]),
            repo_tags: vec![],
            repo_digests: vec![],
            layers: vec![],
            diff_ids: vec![],
            chain_ids: vec![],
            size,
            created: None,
            platform: String::new(),
            config: RuntimeConfig::default(),
            stored_at,
            last_used,
        }
    }

    #[test]
    fn kubelet_policy_frees_lru_unused_old_images() {
        let p = Policy::default();
        let now = 10_000;
        let images = [
            img(1, 50, 0, 100),
            img(2, 50, 0, 50),
            img(3, 50, now - 10, 10),
            img(4, 50, 0, 1),
        ];
        let in_use: BTreeSet<_> = [Digest::of(&[4])].into();
        // 90% used of 1000: must get to 80%, so free 100 bytes.
        let usage = DiskUsage {
            capacity: 1000,
            available: 100,
        };
        let out = plan(&images, &in_use, usage, &p, now);
        // 4 is in use, 3 is too young; 2 then 1 by last use.
        assert_eq!(out, vec![Digest::of(&[2]), Digest::of(&[1])]);
        let calm = DiskUsage {
            capacity: 1000,
            available: 500,
        };
        assert!(plan(&images, &in_use, calm, &p, now).is_empty());
    }
}
