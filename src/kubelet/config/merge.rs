//! PodConfig's merge (pkg/kubelet/config/config.go): the latest set of every source (SET
//! semantics: each update replaces the whole set of that source), joined into one
//! [`Desired`] keyed by UID and published only when it changed.
//!
//! Owns the `kubernetes.io/config.seen` stamps: the first time a UID is seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, watch};

use super::Desired;
use super::parse::{SourceSet, join};
use super::static_pod::SEEN_ANNOTATION;

/// The merge state: the last set of each source, and per UID when it was first seen with
/// the stamped pod last made from a source's pod.
#[derive(Debug)]
pub(crate) struct Merger {
    latest: Vec<Option<SourceSet>>,
    stamped: HashMap<String, Stamped>,
}

/// A source's pod and the copy of it that carries the config.seen stamp. A source that
/// sends the same pod again (the same object, or an equal one: a file read again, an API
/// pod whose status alone changed) gets the same copy back, so an unchanged pod is not
/// copied at every update of its source and the workers keep sharing it.
#[derive(Debug)]
struct Stamped {
    seen: String,
    from: Arc<Pod>,
    pod: Arc<Pod>,
}

impl Merger {
    pub fn new(sources: usize) -> Self {
        Merger {
            latest: vec![None; sources],
            stamped: HashMap::new(),
        }
    }

    /// Records the new set of source `id`. Returns the merged state once every source has
    /// given its first set (so that a pod of a source not read yet is not taken as
    /// removed); `now` stamps the pods seen for the first time.
    pub fn update(&mut self, id: usize, set: SourceSet, now: &str) -> Option<Desired> {
        *self.latest.get_mut(id)? = Some(set);
        if self.latest.iter().any(Option::is_none) {
            return None;
        }
        let (pods, objects, errors) = join(self.latest.iter().flatten());
        let mut by_uid = BTreeMap::new();
        for from in pods {
            let uid = from.metadata.uid.clone().unwrap_or_default();
            let pod = match self.stamped.get(&uid) {
                Some(s) if Arc::ptr_eq(&s.from, &from) || s.from == from => s.pod.clone(),
                known => {
                    let seen = known.map_or_else(|| now.to_string(), |s| s.seen.clone());
                    let mut pod = Pod::clone(&from);
                    pod.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(SEEN_ANNOTATION.to_string(), seen.clone());
                    let pod = Arc::new(pod);
                    self.stamped.insert(
                        uid.clone(),
                        Stamped {
                            seen,
                            from,
                            pod: pod.clone(),
                        },
                    );
                    pod
                }
            };
            by_uid.insert(uid, pod);
        }
        self.stamped.retain(|uid, _| by_uid.contains_key(uid));
        Some(Desired {
            pods: by_uid,
            objects,
            errors,
        })
    }
}

/// The merge task: publishes the first complete state, then every state that differs
/// from the last published one. Ends when every source task is gone.
pub(crate) async fn run(
    mut merger: Merger,
    mut rx: mpsc::UnboundedReceiver<(usize, SourceSet)>,
    tx: watch::Sender<Arc<Desired>>,
) {
    let mut published = false;
    while let Some((id, set)) = rx.recv().await {
        let now = rfc3339_now();
        let Some(desired) = merger.update(id, set, &now) else {
            continue;
        };
        if !published || **tx.borrow() != desired {
            let before = tx.borrow().errors.clone();
            for e in desired.errors.iter().filter(|e| !before.contains(e)) {
                tracing::warn!("manifest rejected: {e}");
            }
            tracing::info!(
                pods = desired.pods.len(),
                errors = desired.errors.len(),
                "desired pods changed"
            );
            tx.send_replace(Arc::new(desired));
            published = true;
        }
    }
}

/// Now as RFC 3339 with nanoseconds, the form of kubelet's config.seen.
fn rfc3339_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let nanos = i32::try_from(since.subsec_nanos()).unwrap_or(0);
    k8s_openapi::jiff::Timestamp::new(secs, nanos)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
