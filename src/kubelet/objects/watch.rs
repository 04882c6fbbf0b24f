//! The watch-based object manager (upstream pkg/kubelet/util/manager/
//! watch_based_manager.go behind configmap_manager.go and secret_manager.go): one watch
//! per ConfigMap or Secret that some pod references (a field selector
//! `metadata.name=<name>` in its namespace, kube-runtime's watcher with its default
//! back-off), dropped when no pod references it any more; an immutable object is watched
//! only until it has been read once. Every change publishes a merged [`Objects`]
//! snapshot on a watch channel; an object whose first list has not finished is in
//! `Objects.pending`.
//!
//! Owns the watch tasks and the objects they read; knows nothing of pods beyond their
//! references, and never writes to the API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::Objects;
use super::refs::{ObjectKind, ObjectRef, pod_refs};

/// What is known of one referenced object.
#[derive(Debug, Clone)]
enum Value {
    /// Its first list has not finished.
    Pending,
    /// Listed and not there (or deleted since).
    Missing,
    ConfigMap(ConfigMap),
    Secret(Secret),
}

impl Value {
    fn immutable(&self) -> bool {
        match self {
            Value::ConfigMap(c) => c.immutable == Some(true),
            Value::Secret(s) => s.immutable == Some(true),
            Value::Pending | Value::Missing => false,
        }
    }
}

#[derive(Debug)]
struct Item {
    value: Value,
    /// The watch task; None once an immutable object has been read.
    task: Option<AbortHandle>,
    /// The last error of the watch while the object is still pending.
    error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    items: Mutex<BTreeMap<ObjectRef, Item>>,
    tx: watch::Sender<Arc<Objects>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<ObjectRef, Item>> {
        // A panic while holding the lock leaves plain data behind: still usable.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what the watch of `r` read; true when the watch can stop (immutable).
    fn set(&self, r: &ObjectRef, value: Value) -> bool {
        let mut items = self.lock();
        let Some(item) = items.get_mut(r) else {
            // No pod references it any more.
            return true;
        };
        let stop = value.immutable();
        if stop {
            tracing::debug!(object = %r, "immutable: no more watching");
            item.task = None;
        }
        item.value = value;
        item.error = None;
        self.publish(&items);
        stop
    }

    /// Records why the first read of `r` has not finished yet.
    fn set_error(&self, r: &ObjectRef, error: String) {
        let mut items = self.lock();
        if let Some(item) = items
            .get_mut(r)
            .filter(|i| matches!(i.value, Value::Pending))
        {
            item.error = Some(error);
            self.publish(&items);
        }
    }

    fn publish(&self, items: &BTreeMap<ObjectRef, Item>) {
        let snapshot = snapshot(items);
        self.tx.send_if_modified(|o| {
            if **o == snapshot {
                false
            } else {
                *o = Arc::new(snapshot);
                true
            }
        });
    }
}

fn snapshot(items: &BTreeMap<ObjectRef, Item>) -> Objects {
    let mut out = Objects::default();
    for (r, item) in items {
        let key = (r.namespace.clone(), r.name.clone());
        match &item.value {
            Value::Pending => {
                out.pending.insert(r.clone());
                if let Some(e) = &item.error {
                    out.pending_errors.insert(r.clone(), e.clone());
                }
            }
            Value::Missing => {}
            Value::ConfigMap(c) => {
                out.config_maps.insert(key, c.clone());
            }
            Value::Secret(s) => {
                out.secrets.insert(key, s.clone());
            }
        }
    }
    out
}

/// Watches the ConfigMaps and Secrets the pods reference. Dropping it stops every watch.
pub struct ObjectManager {
    client: Client,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ObjectManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectManager")
            .field("objects", &self.shared.lock().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ObjectManager {
    /// A manager with no pods yet, and the channel its snapshots go to.
    pub fn new(client: Client) -> (Self, watch::Receiver<Arc<Objects>>) {
        let (tx, rx) = watch::channel(Arc::new(Objects::default()));
        let shared = Arc::new(Shared {
            items: Mutex::new(BTreeMap::new()),
            tx,
        });
        (ObjectManager { client, shared }, rx)
    }

    /// Another receiver of the snapshots.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Objects>> {
        self.shared.tx.subscribe()
    }

    /// The pods that run (or are about to): watches what they reference, stops watching
    /// what none references. A new reference is in the snapshot as pending before this
    /// returns, so a pod handed to its worker after this call never sees it as missing.
    /// Must be called inside a tokio runtime (it spawns the watches).
    pub fn set_pods<'a>(&self, pods: impl IntoIterator<Item = &'a Pod>) {
        let wanted: BTreeSet<ObjectRef> = pods.into_iter().flat_map(pod_refs).collect();
        let mut items = self.shared.lock();
        items.retain(|r, item| {
            let keep = wanted.contains(r);
            if !keep {
                if let Some(t) = item.task.take() {
                    t.abort();
                }
                tracing::debug!(object = %r, "no pod references it: watch stopped");
            }
            keep
        });
        for r in wanted {
            if items.contains_key(&r) {
                continue;
            }
            let task = self.spawn_watch(&r);
            items.insert(
                r,
                Item {
                    value: Value::Pending,
                    task: Some(task),
                    error: None,
                },
            );
        }
        self.shared.publish(&items);
    }

    fn spawn_watch(&self, r: &ObjectRef) -> AbortHandle {
        let shared = Arc::downgrade(&self.shared);
        let span = tracing::info_span!("object_watch", object = %r);
        let client = self.client.clone();
        let handle = match r.kind {
            ObjectKind::ConfigMap => tokio::spawn(
                watch_object(
                    Api::<ConfigMap>::namespaced(client, &r.namespace),
                    r.clone(),
                    shared,
                    Value::ConfigMap,
                )
                .instrument(span),
            ),
            ObjectKind::Secret => tokio::spawn(
                watch_object(
                    Api::<Secret>::namespaced(client, &r.namespace),
                    r.clone(),
                    shared,
                    Value::Secret,
                )
                .instrument(span),
            ),
        };
        handle.abort_handle()
    }
}

impl Drop for ObjectManager {
    fn drop(&mut self) {
        for item in self.shared.lock().values_mut() {
            if let Some(t) = item.task.take() {
                t.abort();
            }
        }
    }
}

/// One object's watch: a list (the object or nothing), then its changes. During a
/// relist the last value stays until the list has finished.
async fn watch_object<K>(api: Api<K>, r: ObjectRef, shared: Weak<Shared>, wrap: fn(K) -> Value)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", r.name));
    let mut stream = std::pin::pin!(watcher::watcher(api, cfg).default_backoff());
    let mut listed: Option<K> = None;
    while let Some(ev) = stream.next().await {
        let value = match ev {
            Ok(Event::Init) => {
                listed = None;
                continue;
            }
            Ok(Event::InitApply(o)) => {
                listed = Some(o);
                continue;
            }
            Ok(Event::InitDone) => listed.take().map_or(Value::Missing, wrap),
            Ok(Event::Apply(o)) => wrap(o),
            Ok(Event::Delete(_)) => Value::Missing,
            Err(e) => {
                tracing::warn!("watch {r}: {e}");
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                shared.set_error(&r, e.to_string());
                continue;
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.set(&r, value) {
            return;
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
