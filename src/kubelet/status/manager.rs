//! The status manager (pkg/kubelet/status/status_manager.go): brings every pod's status in
//! the API server to what the kubelet computed, and deletes the API object of a pod whose
//! graceful deletion the kubelet has finished.
//!
//! - A pod's status goes out when its worker publishes a new one; at most one PATCH per
//!   pod is in flight, and the newest status wins over a pending one.
//! - A static pod's status goes to its mirror pod (the same namespace and name).
//! - Every 10 s (upstream's syncPeriod) each pod's API status is compared with the
//!   kubelet's and patched where they differ: a write lost to an error, a restart of berth
//!   or someone else's change is repaired then.
//! - A pod from the API whose worker has finished (terminated, containers and volumes
//!   gone) while the pod has a deletionTimestamp gets its last status, then is deleted
//!   with grace 0 and its UID as a precondition, as kubelet does.
//!
//! It only talks to the API server; it never touches pods, containers or the runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::patch;
use super::store::{PodView, StatusStore};
use crate::kubelet::config::SOURCE_ANNOTATION;
use crate::kubelet::config::apiserver::{API_SOURCE, ApiView, is_mirror};

/// How often every pod's API status is compared with the kubelet's (syncPeriod).
const RECONCILE: Duration = Duration::from_secs(10);

/// The status manager's inputs.
#[derive(Clone)]
pub struct StatusManager {
    pub client: kube::Client,
    pub store: Arc<StatusStore>,
    pub view: watch::Receiver<Arc<ApiView>>,
}

impl std::fmt::Debug for StatusManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusManager").finish_non_exhaustive()
    }
}

/// What a finished request tells the loop.
#[derive(Debug)]
struct Done {
    uid: String,
    target: String,
    /// The status the API now holds; None when the request failed (the periodic
    /// comparison tries again) or the pod is gone.
    stored: Option<PodStatus>,
    deleted: bool,
}

/// The API pod a kubelet pod's status goes to: the pod itself (a pod from the API has
/// its UID there), or a static pod's mirror (the same namespace and name).
fn target<'a>(view: &'a ApiView, uid: &str, pod: &Pod) -> Option<&'a Pod> {
    if let Some(p) = view.pods.get(uid).filter(|p| !is_mirror(p)) {
        return Some(p);
    }
    let from_api = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SOURCE_ANNOTATION))
        .is_some_and(|s| s == API_SOURCE);
    if from_api {
        return None;
    }
    view.pods.values().map(|p| &**p).find(|p| {
        is_mirror(p)
            && p.metadata.namespace == pod.metadata.namespace
            && p.metadata.name == pod.metadata.name
    })
}

impl StatusManager {
    /// Runs until the store's sender is gone.
    pub async fn run(self) {
        let mut generation = self.store.watch();
        let mut view_rx = self.view.clone();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let mut in_flight: BTreeSet<String> = BTreeSet::new();
        let mut sent: HashMap<String, PodStatus> = HashMap::new();
        let mut pending: BTreeSet<String> = BTreeSet::new();
        let mut finished: BTreeMap<String, PodView> = BTreeMap::new();
        // Pods whose API object (or mirror pod) is not there yet.
        let mut no_target: BTreeSet<String> = BTreeSet::new();
        let mut tick = tokio::time::interval(RECONCILE);
        loop {
            let mut reconcile = false;
            tokio::select! {
                r = generation.changed() => {
                    if r.is_err() {
                        return;
                    }
                    pending.extend(self.store.take_dirty());
                    for (uid, v) in self.store.take_finished() {
                        pending.insert(uid.clone());
                        finished.insert(uid, v);
                    }
                }
                r = view_rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let view = view_rx.borrow_and_update().clone();
                    sent.retain(|t, _| view.pods.contains_key(t));
                    // A pod that got its deletionTimestamp after its worker finished,
                    // and pods whose API object just appeared.
                    pending.extend(finished.keys().cloned());
                    pending.append(&mut no_target);
                }
                Some(d) = done_rx.recv() => {
                    in_flight.remove(&d.target);
                    let stored = d.stored.is_some();
                    match d.stored {
                        Some(s) => { sent.insert(d.target.clone(), s); }
                        None => { sent.remove(&d.target); }
                    }
                    if d.deleted {
                        finished.remove(&d.uid);
                    } else if stored && finished.contains_key(&d.uid) {
                        // The last status is in: the pod can be deleted now.
                        pending.insert(d.uid);
                    }
                }
                _ = tick.tick() => {
                    reconcile = true;
                    pending.extend(self.store.snapshot().into_keys());
                    pending.extend(finished.keys().cloned());
                }
            }
            let view = self.view.borrow().clone();
            let mut busy = BTreeSet::new();
            for uid in std::mem::take(&mut pending) {
                let (pod_view, is_finished) = match self.store.get(&uid) {
                    Some(v) => (v, false),
                    None => match finished.get(&uid) {
                        Some(v) => (v.clone(), true),
                        None => continue,
                    },
                };
                let Some(api_pod) = target(&view, &uid, &pod_view.pod) else {
                    // No API object (yet, or any more): nothing to report to.
                    if is_finished && !view.pods.contains_key(&uid) {
                        finished.remove(&uid);
                    } else {
                        no_target.insert(uid);
                    }
                    continue;
                };
                let target_uid = api_pod.metadata.uid.clone().unwrap_or_default();
                if in_flight.contains(&target_uid) {
                    busy.insert(uid);
                    continue;
                }
                let Some(new) = pod_view.pod.status.as_ref() else {
                    continue;
                };
                let merged = patch::merge(api_pod.status.as_ref(), new);
                let change = patch::patch(&target_uid, api_pod.status.as_ref(), &merged);
                // Just sent and not yet seen back through the watch: wait for it, unless
                // this is the periodic comparison with the API.
                let fresh = sent
                    .get(&target_uid)
                    .is_some_and(|s| patch::same(s, &merged));
                let delete = is_finished && api_pod.metadata.deletion_timestamp.is_some();
                let req = match (change, delete) {
                    (Some(p), _) if !fresh || reconcile => Request::Patch(p, Box::new(merged)),
                    (_, true) => Request::Delete,
                    _ => continue,
                };
                in_flight.insert(target_uid.clone());
                let ns = api_pod.metadata.namespace.clone().unwrap_or_default();
                let name = api_pod.metadata.name.clone().unwrap_or_default();
                let span = tracing::debug_span!("pod status", pod = %format!("{ns}/{name}"));
                let task = send(
                    self.client.clone(),
                    ns,
                    name,
                    uid,
                    target_uid,
                    req,
                    done_tx.clone(),
                );
                tokio::spawn(task.instrument(span));
            }
            pending.extend(busy);
        }
    }
}

#[derive(Debug)]
enum Request {
    Patch(serde_json::Value, Box<PodStatus>),
    Delete,
}

async fn send(
    client: kube::Client,
    ns: String,
    name: String,
    uid: String,
    target: String,
    req: Request,
    done: mpsc::UnboundedSender<Done>,
) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let mut d = Done {
        uid,
        target: target.clone(),
        stored: None,
        deleted: false,
    };
    match req {
        Request::Patch(body, merged) => {
            let phase = merged.phase.clone().unwrap_or_default();
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(p) => {
                    tracing::debug!(phase, "status patched");
                    d.stored = p.status;
                }
                Err(e) => tracing::warn!("patch the pod's status: {e}"),
            }
        }
        Request::Delete => {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(target),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!("pod deleted from the API server");
                    d.deleted = true;
                }
                Err(e) if gone(&e) => d.deleted = true,
                Err(e) => tracing::warn!("delete the pod: {e}"),
            }
        }
    }
    let _ = done.send(d);
}

/// NotFound, or a Conflict on the UID precondition: the object we meant is gone.
fn gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}
