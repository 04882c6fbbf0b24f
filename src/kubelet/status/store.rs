//! The latest status of every pod the kubelet runs, for whoever shows or reports it
//! (the standalone view and output, the API status manager). The status manager also
//! takes which pods changed since it last looked, and the last status of pods whose worker
//! finished (terminated and cleaned up), to report them and delete their API objects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::watch;

/// One pod as shown: the pod with its status, the probes' last word, the last event.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub pod: Pod,
    /// Per container: `ready`, `started`, or the last probe failure.
    pub probes: BTreeMap<String, String>,
}

/// Pods by UID; every change bumps a generation that watchers wait on.
#[derive(Debug)]
pub struct StatusStore {
    pods: Mutex<Pods>,
    generation: watch::Sender<u64>,
    /// Whether removed pods are kept for [`StatusStore::take_finished`] (an API server
    /// takes them; standalone mode has no one to).
    keep_finished: bool,
}

#[derive(Debug, Default)]
struct Pods {
    views: BTreeMap<String, PodView>,
    dirty: BTreeSet<String>,
    finished: BTreeMap<String, PodView>,
}

impl Default for StatusStore {
    fn default() -> Self {
        StatusStore {
            pods: Mutex::new(Pods::default()),
            generation: watch::channel(0).0,
            keep_finished: false,
        }
    }
}

impl StatusStore {
    /// A store whose removed pods are kept until the status manager takes them.
    pub fn keeping_finished() -> Self {
        StatusStore {
            keep_finished: true,
            ..Default::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pods> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a pod's view; a view equal to the last one changes nothing.
    pub fn set(&self, uid: &str, view: PodView) {
        let mut m = self.lock();
        if m.views.get(uid) == Some(&view) {
            return;
        }
        m.views.insert(uid.to_string(), view);
        m.dirty.insert(uid.to_string());
        m.finished.remove(uid);
        drop(m);
        self.generation.send_modify(|g| *g += 1);
    }

    /// The pod's worker is done with it: terminated, and its containers, sandbox and
    /// volumes removed.
    pub fn remove(&self, uid: &str) {
        let mut m = self.lock();
        if let Some(v) = m.views.remove(uid) {
            m.dirty.remove(uid);
            if self.keep_finished {
                m.finished.insert(uid.to_string(), v);
            }
            drop(m);
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// The pods whose view changed since the last call.
    pub fn take_dirty(&self) -> BTreeSet<String> {
        std::mem::take(&mut self.lock().dirty)
    }

    /// The pods removed since the last call, with their last view.
    pub fn take_finished(&self) -> BTreeMap<String, PodView> {
        std::mem::take(&mut self.lock().finished)
    }

    pub fn get(&self, uid: &str) -> Option<PodView> {
        self.lock().views.get(uid).cloned()
    }

    /// Every pod, by UID.
    pub fn snapshot(&self) -> BTreeMap<String, PodView> {
        self.lock().views.clone()
    }

    /// Changes whenever a pod's view does.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
