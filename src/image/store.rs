//! The image store of one root: content, snapshots, image records and container rootfs
//! dirs, and the operations that span them (record an image, remove one, verify).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::content::ContentStore;
use super::digest::Digest;
use super::error::{Error, Result};
use super::locks::Locks;
use super::manifest::Plan;
use super::metadata::{ImageRecord, MetaStore, RuntimeConfig, find, upsert};
use super::snapshot::Snapshots;
use super::unpack::UnpackOptions;
use crate::sys::overlay::OverlayMounter;

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth/images";

#[derive(Debug)]
pub struct ImageStore {
    pub root: PathBuf,
    pub content: ContentStore,
    pub snapshots: Snapshots,
    pub meta: MetaStore,
    pub locks: Locks,
    pub mounter: Arc<dyn OverlayMounter>,
    pub unpack: UnpackOptions,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ImageStore {
    /// Opens (creating, mode 0700) the store at `root`.
    pub fn open(
        root: &Path,
        mounter: Arc<dyn OverlayMounter>,
        unpack: UnpackOptions,
    ) -> Result<Arc<Self>> {
        std::fs::create_dir_all(root).map_err(Error::io("create store root", root))?;
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(Error::io("chmod", root))?;
        let locks_dir = root.join("locks");
        std::fs::create_dir_all(&locks_dir).map_err(Error::io("create", &locks_dir))?;
        Ok(Arc::new(Self {
            root: root.to_path_buf(),
            content: ContentStore::open(root)?,
            snapshots: Snapshots::open(root)?,
            meta: MetaStore::open(root)?,
            locks: Locks::new(locks_dir),
            mounter,
            unpack,
        }))
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.meta.load()
    }

    /// The image `query` names (tag, repo digest, ID or ID prefix).
    pub fn find(&self, query: &str) -> Result<ImageRecord> {
        find(&self.images()?, query).cloned()
    }

    /// Records a fully stored image (all blobs in content, all snapshots committed)
    /// under `tags` and `repo_digests`.
    pub async fn record(
        &self,
        plan: &Plan,
        tags: Vec<String>,
        repo_digests: Vec<String>,
    ) -> Result<ImageRecord> {
        let size = plan.manifest_size
            + plan.config_size
            + plan.jobs.iter().filter_map(|j| j.size).sum::<u64>();
        let t = now();
        let rec = ImageRecord {
            id: plan.config_digest.clone(),
            manifest: plan.manifest_digest.clone(),
            repo_tags: tags,
            repo_digests,
            layers: plan.jobs.iter().map(|j| j.blob.clone()).collect(),
            diff_ids: plan.jobs.iter().map(|j| j.diff_id.clone()).collect(),
            chain_ids: plan.jobs.iter().map(|j| j.chain.clone()).collect(),
            size,
            created: plan.config.created().clone(),
            platform: format!("{}/{}", plan.config.os(), plan.config.architecture()),
            config: RuntimeConfig::from_oci(&plan.config),
            stored_at: t,
            last_used: t,
        };
        let _g = self.locks.lock("meta").await?;
        let mut images = self.meta.load()?;
        upsert(&mut images, rec.clone());
        self.meta.save(images)?;
        tracing::info!(image = %rec.id, tags = ?rec.repo_tags, "image stored");
        Ok(rec)
    }

    /// Flushes unpacked snapshot files to disk (one syncfs for the filesystem) before
    /// their temp dirs are renamed into place.
    pub fn sync_snapshots(&self) -> Result<()> {
        let p = self.root.join("snapshots");
        let f = std::fs::File::open(&p).map_err(Error::io("open", &p))?;
        nix::unistd::syncfs(f.as_fd()).map_err(|e| Error::io("syncfs", &p)(e.into()))
    }

    /// Re-hashes every blob; returns those whose bytes do not match their digest.
    pub fn verify(&self) -> Result<Vec<Digest>> {
        self.content.verify()
    }
}
