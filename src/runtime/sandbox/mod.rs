//! Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus and
//! ListPodSandbox over the pod's holder (namespaces) and CNI (network).
//!
//! A sandbox's life, and what is on disk at each step (so a restart knows what to undo):
//! ```text
//!  run:    reserve name -> record(Creating) -> spawn holder -> CNI ADD -> record(Ready)
//!  stop:   kill containers (holder) -> CNI DEL -> record(Stopped)   [holder keeps the
//!          namespaces, so container statuses stay readable until remove]
//!  remove: stop -> holder Shutdown (containers, namespaces, pod dir) -> delete record
//! ```
//! Failures roll back in reverse. On start, a `Creating` record is rolled back and the
//! others are adopted as they are. Stop and remove run every step even when an earlier
//! one failed, and report every failure.
//!
//! Holders and the pod network are reached only through [`Holders`] and [`PodNetwork`],
//! passed in by [`Sandboxes::open`]: the tests (`tests.rs`) run this logic over
//! recording fakes, without root.

mod cni;
mod holders;
mod network;
mod ops;
mod recover;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::error::{Result, RuntimeError};
use super::meta::{IdIndex, NameRegistrar, RecordStore, SandboxRecord};
use super::spec::HostFacts;

pub use cni::{CniFuture, PodNetwork};
pub use holders::{EventFuture, HolderConn, HolderEvents, Holders, LinuxHolders, Spawned};
pub use network::{POD_IFNAME, attachment, pod_ips};

/// Where sandboxes live and what they run with.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The sandbox records (e.g. /var/lib/berth/sandboxes).
    pub records: PathBuf,
    /// The holders' state (e.g. /run/berth): sockets, namespace files, container records.
    pub state_dir: PathBuf,
    /// The host facts specs are built with (detected once at start).
    pub facts: HostFacts,
}

/// One sandbox as the daemon tracks it.
#[derive(Debug)]
pub struct Entry {
    pub record: Mutex<SandboxRecord>,
    /// Idle call connections to the holder: made when no idle one is there, kept for
    /// the next call (as many as the pod had calls at once).
    holder: Mutex<Vec<Box<dyn HolderConn>>>,
    /// Serialises run/stop/remove of this sandbox.
    op: tokio::sync::Mutex<()>,
}

impl Entry {
    fn new(record: SandboxRecord) -> Self {
        Self {
            record: Mutex::new(record),
            holder: Mutex::new(Vec::new()),
            op: tokio::sync::Mutex::new(()),
        }
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> SandboxRecord {
        lock(&self.record).clone()
    }
}

#[derive(Debug)]
struct Table {
    index: IdIndex,
    names: NameRegistrar,
    entries: HashMap<String, Arc<Entry>>,
}

/// Every sandbox of this node.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: SandboxConfig,
    store: RecordStore<SandboxRecord>,
    holders: Arc<dyn Holders>,
    cni: Arc<dyn PodNetwork>,
    events: crate::runtime::events::EventHub,
    table: Mutex<Table>,
}

/// A poisoned lock only means another request panicked mid-way; the data is still
/// the best we have.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sandboxes {
    /// Opens the record store and adopts or rolls back what an earlier run left; pods'
    /// holders are reached through `holders`, their networks set up through `cni`.
    pub async fn open(
        cfg: SandboxConfig,
        holders: Arc<dyn Holders>,
        cni: Arc<dyn PodNetwork>,
    ) -> Result<Self> {
        let store = RecordStore::open(&cfg.records)?;
        let me = Self {
            inner: Arc::new(Inner {
                cfg,
                store,
                holders,
                cni,
                events: Default::default(),
                table: Mutex::new(Table {
                    index: IdIndex::new("sandbox"),
                    names: NameRegistrar::new("sandbox"),
                    entries: HashMap::new(),
                }),
            }),
        };
        me.recover().await?;
        Ok(me)
    }

    /// The full id of the sandbox `id` names (a unique prefix is enough).
    pub fn resolve(&self, id: &str) -> Result<String> {
        Ok(lock(&self.inner.table)
            .index
            .resolve(id, "pod_sandbox_id")?)
    }

    /// The sandbox `id` names.
    pub fn get(&self, id: &str) -> Result<Arc<Entry>> {
        let t = lock(&self.inner.table);
        let full = t.index.resolve(id, "pod_sandbox_id")?;
        t.entries.get(&full).cloned().ok_or_else(|| {
            RuntimeError::Internal(format!("sandbox {full} indexed but not tracked"))
        })
    }

    /// Every sandbox, in id order.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        let t = lock(&self.inner.table);
        let mut v: Vec<_> = t.entries.iter().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.into_iter().map(|(_, e)| e.clone()).collect()
    }

    /// The container events of every pod's holder.
    pub fn events(&self) -> &crate::runtime::events::EventHub {
        &self.inner.events
    }

    /// Starts forwarding sandbox `id`'s container events (a failure is logged: the pod
    /// works, only its events are missing).
    pub(super) async fn watch(&self, id: &str) {
        let hub = self.inner.events.clone();
        let holders = self.inner.holders.clone();
        let sid = id.to_string();
        let r = tokio::task::spawn_blocking(move || holders.connect(&sid)?.subscribe()).await;
        match r {
            Ok(Ok((_now, events))) => hub.forward(id, events),
            Ok(Err(e)) => {
                tracing::warn!(sandbox = %id, error = %e, "no container events from this pod");
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "no container events from this pod");
            }
        }
    }

    /// The host facts specs are built with (detected once at start).
    pub fn facts(&self) -> &HostFacts {
        &self.inner.cfg.facts
    }

    /// The holders of this node's pods.
    pub fn holders(&self) -> &Arc<dyn Holders> {
        &self.inner.holders
    }

    /// Whether the holder recorded in `rec` still runs.
    pub fn holder_alive(&self, rec: &SandboxRecord) -> bool {
        self.inner.holders.alive(rec.holder_pid, rec.holder_start)
    }

    /// The files the sandbox serves its containers (/etc/hostname, /etc/hosts,
    /// /etc/resolv.conf), next to its record.
    /// The pod's /dev/shm is a tmpfs of its own shared by its containers (the node's for
    /// a host-IPC pod), as containerd gives it.
    pub fn files(&self, id: &str) -> crate::runtime::spec::SandboxFiles {
        let dir = self.inner.cfg.records.join(id);
        let host_ipc = self
            .get(id)
            .ok()
            .and_then(|e| e.snapshot().config().ok())
            .and_then(|c| c.linux?.security_context?.namespace_options)
            .is_some_and(|n| n.ipc == cri_proto::v1::NamespaceMode::Node as i32);
        crate::runtime::spec::SandboxFiles {
            hostname: Some(dir.join("hostname")),
            hosts: Some(dir.join("hosts")),
            resolv_conf: Some(dir.join("resolv.conf")),
            shm: Some(if host_ipc {
                std::path::PathBuf::from("/dev/shm")
            } else {
                dir.join("shm")
            }),
        }
    }

    /// Whether sandbox `id` has no live holder: it is unknown (removed), or its holder
    /// died. Its containers are then finished from what the holder left on disk
    /// ([`super::holder::dead`]), never through its socket.
    pub fn holder_gone(&self, id: &str) -> bool {
        match self.get(id) {
            Ok(e) => !self.holder_alive(&e.snapshot()),
            Err(_) => true,
        }
    }

    /// Whether sandbox `id`'s holder is gone or going: a call that lost its connection
    /// to the holder asks this, and the holder, killed, may still be between closing
    /// its sockets and becoming a zombie. Waits up to a second for it to be gone.
    pub async fn holder_died(&self, id: &str) -> bool {
        for _ in 0..100 {
            if self.holder_gone(id) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    }

    /// The holders' state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.inner.cfg.state_dir
    }

    /// Runs `f` on the sandbox's holder connection (connecting first if needed) on a
    /// blocking thread: holder calls are short blocking socket exchanges.
    pub async fn with_holder<T: Send + 'static>(
        &self,
        entry: &Arc<Entry>,
        f: impl FnOnce(&mut dyn HolderConn) -> super::holder::Result<T> + Send + 'static,
    ) -> Result<T> {
        let entry = entry.clone();
        let holders = self.inner.holders.clone();
        tokio::task::spawn_blocking(move || {
            let id = lock(&entry.record).id.clone();
            // An idle connection, else a new one: no call waits for another call to the
            // same pod (an ExecSync lasts as long as its command).
            let idle = lock(&entry.holder).pop();
            let mut client = match idle {
                Some(c) => c,
                None => holders
                    .connect(&id)
                    .map_err(|source| RuntimeError::holder(id.clone(), source))?,
            };
            let r = f(client.as_mut());
            // A broken connection is dropped; a later call connects again.
            if !matches!(
                r,
                Err(super::holder::HolderError::Closed { .. }
                    | super::holder::HolderError::Io { .. }
                    | super::holder::HolderError::Frame { .. })
            ) {
                lock(&entry.holder).push(client);
            }
            r.map_err(|source| RuntimeError::holder(id, source))
        })
        .await
        .map_err(|e| RuntimeError::Internal(format!("holder call panicked: {e}")))?
    }
}
