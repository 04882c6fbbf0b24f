//! Containers: CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ContainerStatus, ListContainers, ExecSync and ReopenContainerLog, over the pod's
//! holder (which forks, reaps and logs them), the image store (rootfs) and the CRI to
//! OCI spec rules in [`super::spec`].
//!
//! ```text
//!  create: sandbox ready? -> reserve name -> record(Creating) -> rootfs (overlay)
//!          -> image volumes (read-only views) -> OCI spec -> holder CreateContainer
//!          -> record(Ready)
//!  start:  holder StartContainer
//!  stop:   stop signal, wait for the exit event up to the timeout, then SIGKILL
//!  remove: holder RemoveContainer (kills if running) -> rootfs -> image volumes -> record
//! ```
//! What changes while a container runs (pid, exit code, times, OOM) is the holder's; the
//! record here holds only what the kubelet asked for and what berth made for it.
//!
//! The image store is reached only through [`ContainerImages`] and holders only through
//! the sandboxes' [`super::sandbox::Holders`], so the tests (`tests.rs`) run this logic
//! over recording fakes, without root.

mod image_volumes;
mod images;
mod metrics;
mod ops;
mod stats;
mod status;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::error::{Result, RuntimeError};
use super::meta::{ContainerRecord, IdIndex, NameRegistrar, RecordStore};
use super::sandbox::Sandboxes;
use super::spec::RuntimeOptions;

pub use images::{ContainerImages, ImageFuture};

/// Where container records live and how specs are built.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// The container records (e.g. /var/lib/berth/containers).
    pub records: PathBuf,
    pub options: RuntimeOptions,
}

#[derive(Debug)]
struct Table {
    index: IdIndex,
    names: NameRegistrar,
    records: HashMap<String, ContainerRecord>,
}

/// Every container of this node.
#[derive(Debug, Clone)]
pub struct Containers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: ContainerConfig,
    store: RecordStore<ContainerRecord>,
    images: Arc<dyn ContainerImages>,
    sandboxes: Sandboxes,
    table: Mutex<Table>,
    /// The previous CPU sample per container and sandbox, for the nano-cores rate.
    sampler: crate::runtime::stats::CpuSampler,
    /// The last walk of each writable layer, for the metrics.
    layers: crate::runtime::stats::LayerCache,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Containers {
    /// Opens the records; half-made containers of a crash are removed. Rootfs and image
    /// volumes come from `images`; holders are reached through `sandboxes`.
    pub async fn open(
        cfg: ContainerConfig,
        images: Arc<dyn ContainerImages>,
        sandboxes: Sandboxes,
    ) -> Result<Self> {
        let store = RecordStore::open(&cfg.records)?;
        let me = Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                images,
                sandboxes,
                sampler: Default::default(),
                layers: Default::default(),
                table: Mutex::new(Table {
                    index: IdIndex::new("container"),
                    names: NameRegistrar::new("container"),
                    records: HashMap::new(),
                }),
            }),
        };
        me.recover().await?;
        Ok(me)
    }

    /// The record of the container `id` names (a unique prefix is enough).
    pub fn get(&self, id: &str) -> Result<ContainerRecord> {
        let t = lock(&self.inner.table);
        let full = t.index.resolve(id, "container_id")?;
        t.records.get(&full).cloned().ok_or_else(|| {
            RuntimeError::Internal(format!("container {full} indexed but not tracked"))
        })
    }

    /// Every container record, in id order.
    pub fn all(&self) -> Vec<ContainerRecord> {
        let t = lock(&self.inner.table);
        let mut v: Vec<_> = t.records.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    async fn recover(&self) -> Result<()> {
        let loaded = self.inner.store.load_all()?;
        for bad in &loaded.bad {
            tracing::error!(error = %bad, "unreadable container record left in place");
        }
        for (id, rec) in loaded.good {
            if rec.phase == super::meta::Phase::Creating {
                tracing::warn!(container = %id, "removing a container a crash left half-made");
                self.unmake(&rec).await;
                self.inner.store.remove(&id)?;
                continue;
            }
            let mut t = lock(&self.inner.table);
            if let Err(e) = t.names.reserve(&rec.name, &id) {
                tracing::error!(container = %id, error = %e, "duplicate container name on disk");
            }
            t.index.insert(&id);
            t.records.insert(id, rec);
        }
        self.remove_orphan_views();
        Ok(())
    }
}
