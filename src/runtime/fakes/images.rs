//! An image store in memory, with rootfs dirs under a temp dir.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::lock;
use crate::image::Digest;
use crate::image::metadata::{ImageRecord, RuntimeConfig};
use crate::runtime::container::{ContainerImages, ImageFuture};

/// What the image store's fake knows and was asked.
#[derive(Debug, Default)]
pub struct ImageWorld {
    /// The images by name.
    pub images: BTreeMap<String, ImageRecord>,
    /// Where rootfs dirs are made (`<root>/<container>`).
    pub root: PathBuf,
    pub rootfs: BTreeSet<String>,
    /// View owners and their view names.
    pub views: BTreeMap<String, BTreeSet<String>>,
    pub calls: Vec<String>,
}

/// An image store in memory; a rootfs is an empty dir under `root`.
#[derive(Debug, Clone, Default)]
pub struct FakeImages(pub Arc<Mutex<ImageWorld>>);

impl FakeImages {
    /// A store holding `names` (each its own image) with rootfs dirs under `root`.
    pub fn new(root: &Path, names: &[&str]) -> Self {
        let images = names
            .iter()
            .map(|n| {
                let id = Digest::of(n.as_bytes());
                let rec = ImageRecord {
                    id: id.clone(),
                    manifest: id,
                    repo_tags: vec![(*n).into()],
                    repo_digests: vec![],
                    layers: vec![],
                    diff_ids: vec![],
                    chain_ids: vec![],
                    size: 0,
                    created: None,
                    platform: "linux/amd64".into(),
                    config: RuntimeConfig {
                        cmd: vec!["/bin/sh".into()],
                        ..Default::default()
                    },
                    stored_at: 0,
                    last_used: 0,
                };
                ((*n).to_string(), rec)
            })
            .collect();
        Self(Arc::new(Mutex::new(ImageWorld {
            images,
            root: root.to_path_buf(),
            ..Default::default()
        })))
    }

    pub fn world(&self) -> MutexGuard<'_, ImageWorld> {
        lock(&self.0)
    }

    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }
}

fn find_in(w: &ImageWorld, query: &str) -> crate::image::Result<ImageRecord> {
    w.images
        .iter()
        .find(|(name, rec)| *name == query || rec.id.to_string() == query)
        .map(|(_, rec)| rec.clone())
        .ok_or_else(|| crate::image::Error::NotFound {
            what: format!("image {query}"),
        })
}

impl ContainerImages for FakeImages {
    fn find(&self, query: &str) -> crate::image::Result<ImageRecord> {
        find_in(&self.world(), query)
    }

    fn create_rootfs<'a>(&'a self, container: &'a str, image: &'a str) -> ImageFuture<'a, PathBuf> {
        let mut w = self.world();
        w.calls.push(format!("create_rootfs {container}"));
        let r = find_in(&w, image).and_then(|_| {
            let dir = w.root.join(container);
            std::fs::create_dir_all(&dir).map_err(crate::image::Error::io("create", &dir))?;
            w.rootfs.insert(container.into());
            Ok(dir)
        });
        Box::pin(std::future::ready(r))
    }

    fn rootfs_upper(&self, container: &str) -> crate::image::Result<PathBuf> {
        Ok(self.world().root.join(container).join("upper"))
    }

    fn remove_rootfs(&self, container: &str) -> crate::image::Result<()> {
        let mut w = self.world();
        w.calls.push(format!("remove_rootfs {container}"));
        w.rootfs.remove(container);
        let dir = w.root.join(container);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(crate::image::Error::io("remove", &dir)(e))
            }
            _ => Ok(()),
        }
    }

    fn create_view<'a>(
        &'a self,
        owner: &'a str,
        name: &'a str,
        image: &'a str,
    ) -> ImageFuture<'a, (ImageRecord, PathBuf)> {
        let mut w = self.world();
        w.calls.push(format!("create_view {owner}/{name}"));
        let r = find_in(&w, image).and_then(|img| {
            let dir = w.root.join("views").join(owner).join(name);
            std::fs::create_dir_all(&dir).map_err(crate::image::Error::io("create", &dir))?;
            w.views.entry(owner.into()).or_default().insert(name.into());
            Ok((img, dir))
        });
        Box::pin(std::future::ready(r))
    }

    fn remove_views(&self, owner: &str) -> crate::image::Result<()> {
        let mut w = self.world();
        w.calls.push(format!("remove_views {owner}"));
        w.views.remove(owner);
        Ok(())
    }

    fn view_owners(&self) -> crate::image::Result<Vec<String>> {
        Ok(self.world().views.keys().cloned().collect())
    }
}
