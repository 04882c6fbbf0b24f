//! The latest status of every pod the kubelet runs, for whoever shows or reports it
//! (the standalone view and output now, the API status manager later).

use std::collections::BTreeMap;
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
    pods: Mutex<BTreeMap<String, PodView>>,
    generation: watch::Sender<u64>,
}

impl Default for StatusStore {
    fn default() -> Self {
        StatusStore {
            pods: Mutex::new(BTreeMap::new()),
            generation: watch::channel(0).0,
        }
    }
}

impl StatusStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PodView>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a pod's view; a view equal to the last one changes nothing.
    pub fn set(&self, uid: &str, view: PodView) {
        let mut m = self.lock();
        if m.get(uid) == Some(&view) {
            return;
        }
        m.insert(uid.to_string(), view);
        drop(m);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn remove(&self, uid: &str) {
        if self.lock().remove(uid).is_some() {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    pub fn get(&self, uid: &str) -> Option<PodView> {
        self.lock().get(uid).cloned()
    }

    /// Every pod, by UID.
    pub fn snapshot(&self) -> BTreeMap<String, PodView> {
        self.lock().clone()
    }

    /// Changes whenever a pod's view does.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}
