//! The kubelet's main loop (upstream's syncLoop and HandlePodCleanups): the desired pods
//! from the sources go to their workers, pods that left their source are terminated,
//! probe results wake their pods, and every two seconds housekeeping finds what no
//! worker owns (sandboxes left by an earlier run, pod volume dirs, pod cgroups) and
//! removes it. At stop, every pod is terminated gracefully before the loop returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::{mpsc, watch};

use super::config::Desired;
use super::config::apiserver::ApiView;
use super::kuberuntime::labels;
use super::lifecycle;
use super::mirror::is_static;
use super::objects::ObjectManager;
use super::objects::Objects;
use super::reject::Rejected;
use super::sync::Syncer;
use super::worker::Workers;

/// How often housekeeping runs (upstream's housekeeping period).
const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// The main loop's parts.
#[derive(Debug)]
pub struct SyncLoop {
    pub syncer: Arc<Syncer>,
    pub workers: Workers,
    pub desired: watch::Receiver<Arc<Desired>>,
    pub objects: watch::Sender<Arc<Objects>>,
    pub probe_wake: mpsc::UnboundedReceiver<String>,
    /// With an API server: its view of the node's pods, and the pods not run.
    pub api: Option<ApiInputs>,
}

/// What the loop reads from the API server besides the desired pods.
#[derive(Debug)]
pub struct ApiInputs {
    pub view: watch::Receiver<Arc<ApiView>>,
    pub rejected: Rejected,
    /// Watches the ConfigMaps and Secrets the API's pods use.
    pub objects: ObjectManager,
    pub api_objects: watch::Receiver<Arc<Objects>>,
    /// The Node as the API holds it, for admission; `initial_node` until it is known
    /// (upstream's initialNode).
    pub node: watch::Receiver<Option<Arc<Node>>>,
    pub initial_node: Node,
    /// The desired set the object watches were last set for (None at first).
    pub watched_for: Option<Arc<Desired>>,
}

/// Resolves when the API view or the API's objects change; never without an API server.
async fn api_changed(api: &mut Option<ApiInputs>) -> bool {
    match api {
        Some(a) => tokio::select! {
            r = a.view.changed() => r.is_ok(),
            r = a.api_objects.changed() => r.is_ok(),
        },
        None => std::future::pending().await,
    }
}

fn is_terminal(p: &Pod) -> bool {
    p.status
        .as_ref()
        .is_some_and(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
}

impl SyncLoop {
    /// Runs until `stop` completes. With a `shutdown_limit` (standalone mode) it then
    /// terminates every pod and returns once they are gone or the limit has passed;
    /// without (a node of a cluster, as kubelet) the pods keep running for the next start
    /// to adopt.
    pub async fn run(
        mut self,
        stop: impl std::future::Future<Output = ()>,
        shutdown_limit: Option<Duration>,
    ) {
        let pleg = tokio::spawn(super::pleg::run(
            self.syncer.runtime.clone(),
            self.workers.clone(),
        ));
        let mut sent: HashMap<String, Arc<Pod>> = HashMap::new();
        let mut reported: BTreeSet<String> = BTreeSet::new();
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tokio::pin!(stop);
        // Nothing is an orphan before every source has been read once: the first desired
        // set decides which of the runtime's pods are adopted.
        let first = tokio::select! {
            _ = &mut stop => false,
            r = self.desired.changed() => r.is_ok(),
        };
        if first {
            self.reconcile(&mut sent, &mut reported);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    r = self.desired.changed() => {
                        if r.is_err() {
                            break;
                        }
                        self.reconcile(&mut sent, &mut reported);
                    }
                    Some(uid) = self.probe_wake.recv() => self.workers.wake(&uid),
                    true = api_changed(&mut self.api) => self.reconcile(&mut sent, &mut reported),
                    _ = tick.tick() => {
                        for pod in sent.values() {
                            // A pod being deleted whose worker finished stays finished.
                            if pod.metadata.deletion_timestamp.is_none()
                                && !self.workers.has(labels::uid(pod))
                            {
                                self.workers.update(pod.clone());
                            }
                        }
                        self.housekeeping(&sent).await;
                    }
                }
            }
        }
        let Some(shutdown_limit) = shutdown_limit else {
            tracing::info!(pods = sent.len(), "stopping; the pods keep running");
            pleg.abort();
            return;
        };
        tracing::info!(pods = sent.len(), "stopping: terminating every pod");
        for uid in self.workers.uids() {
            self.workers.remove(&uid, None);
        }
        if tokio::time::timeout(shutdown_limit, self.workers.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(left = ?self.workers.uids(), "pods still terminating at the shutdown limit");
        }
        pleg.abort();
    }

    /// Hands the desired pods to their workers; pods that left go to termination.
    fn reconcile(&mut self, sent: &mut HashMap<String, Arc<Pod>>, reported: &mut BTreeSet<String>) {
        let desired = self.desired.borrow().clone();
        if let Some(api) = &mut self.api {
            let view = api.view.borrow().clone();
            for (uid, inv) in &view.invalid {
                let why = format!("the pod is not valid: {}", inv.message);
                let r = "FailedValidation";
                api.rejected.reject(uid, &inv.pod, r, r, &why);
                api.rejected.refresh(uid, &inv.pod);
            }
            for (uid, pod) in &desired.pods {
                api.rejected.refresh(uid, pod);
            }
            api.rejected
                .settle(|uid, _| desired.pods.contains_key(uid) || view.invalid.contains_key(uid));
            // Static pods cannot use the API's objects (the node may not read them). Only a
            // new desired set can change which objects are used: a status echo cannot.
            if !api
                .watched_for
                .as_ref()
                .is_some_and(|d| Arc::ptr_eq(d, &desired))
            {
                api.objects.set_pods(
                    desired
                        .pods
                        .values()
                        .map(|p| &**p)
                        .filter(|p| !is_static(p)),
                );
                api.watched_for = Some(desired.clone());
            }
            // New pods are admitted in creation order, each against those before it.
            let mut new: Vec<(&String, &Pod)> = desired
                .pods
                .iter()
                .map(|(uid, p)| (uid, &**p))
                .filter(|(uid, p)| {
                    !sent.contains_key(*uid)
                        && !api.rejected.contains(uid)
                        && p.metadata.deletion_timestamp.is_none()
                        && !is_terminal(p)
                })
                .collect();
            new.sort_by(|a, b| {
                let t = |p: &Pod| p.metadata.creation_timestamp.clone().map(|t| t.0);
                t(a.1).cmp(&t(b.1)).then(a.0.cmp(b.0))
            });
            if !new.is_empty() {
                let node = api
                    .node
                    .borrow()
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| api.initial_node.clone());
                let mut admitted: Vec<&Pod> = sent
                    .values()
                    .map(|p| &**p)
                    .filter(|p| p.metadata.deletion_timestamp.is_none() && !is_terminal(p))
                    .collect();
                for (uid, pod) in new {
                    match lifecycle::admit(pod, &admitted, &node) {
                        Ok(()) => admitted.push(pod),
                        Err(r) => {
                            let shown = format!("Pod was rejected: {}", r.message);
                            api.rejected.reject(uid, pod, &r.reason, &r.reason, &shown);
                        }
                    }
                }
            }
        }
        for e in &desired.errors {
            let msg = e.to_string();
            if reported.insert(msg.clone()) {
                tracing::error!("rejected: {msg}");
            }
        }
        let objects = match &self.api {
            Some(a) => desired.objects.merged(&a.api_objects.borrow()),
            None => desired.objects.clone(),
        };
        let objects_changed = self.objects.send_if_modified(|o| {
            if **o == objects {
                false
            } else {
                *o = Arc::new(objects);
                true
            }
        });
        if objects_changed {
            // ConfigMaps and Secrets changed: every pod's volumes are brought up to date
            // (one `..data` swap each where they changed).
            for uid in self.workers.uids() {
                self.workers.wake(&uid);
            }
        }
        for (uid, pod) in &desired.pods {
            if self.api.as_ref().is_some_and(|a| a.rejected.contains(uid)) {
                continue;
            }
            if sent.get(uid) != Some(pod) {
                sent.insert(uid.clone(), pod.clone());
                self.workers.update(pod.clone());
                // Graceful deletion through the API: terminate within the grace it gives
                // (a grace period only ever shortens); the status manager deletes the
                // object once the worker is done.
                if pod.metadata.deletion_timestamp.is_some() {
                    self.workers
                        .remove(uid, pod.metadata.deletion_grace_period_seconds);
                }
            }
        }
        let gone: Vec<String> = sent
            .keys()
            .filter(|u| !desired.pods.contains_key(*u))
            .cloned()
            .collect();
        for uid in gone {
            sent.remove(&uid);
            self.workers.remove(&uid, None);
        }
    }

    /// Terminates runtime pods no worker owns; removes volume dirs and cgroups of pods
    /// that are gone from everywhere.
    async fn housekeeping(&self, sent: &HashMap<String, Arc<Pod>>) {
        let rt = &self.syncer.runtime;
        let sandboxes = match rt
            .pods
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
        {
            Ok(r) => r.items,
            Err(e) => {
                tracing::warn!("housekeeping: list sandboxes: {e}");
                return;
            }
        };
        let mut in_runtime = BTreeSet::new();
        let mut orphans: BTreeMap<String, Pod> = BTreeMap::new();
        for sb in &sandboxes {
            let Some(uid) = sb.labels.get(labels::POD_UID) else {
                continue;
            };
            in_runtime.insert(uid.clone());
            if sent.contains_key(uid) || self.workers.has(uid) {
                continue;
            }
            orphans
                .entry(uid.clone())
                .or_insert_with(|| restored_pod(&sb.labels));
        }
        for (_, pod) in orphans {
            tracing::info!(pod = %labels::full_name(&pod), "terminating a pod no source wants");
            self.workers.remove_orphan(pod);
        }
        let active: Vec<&Pod> = sent.values().map(|p| &**p).collect();
        if let Err(e) = self.syncer.cgroups.update_qos_cgroups(&active) {
            tracing::warn!("update the QoS cgroups: {e}");
        }
        let owned = |uid: &String| {
            sent.contains_key(uid) || self.workers.has(uid) || in_runtime.contains(uid)
        };
        if let Ok(uids) = self.syncer.volumes.pod_uids() {
            for uid in uids.iter().filter(|u| !owned(u)) {
                if let Err(e) = self.syncer.volumes.teardown_pod(uid) {
                    tracing::warn!(uid, "remove an orphaned pod's volumes: {e}");
                }
            }
        }
        if let Ok(uids) = self.syncer.cgroups.pod_uids() {
            for uid in uids.iter().filter(|u| !owned(u)) {
                if let Err(e) = self.syncer.cgroups.destroy_pod(uid) {
                    tracing::warn!(uid, "remove an orphaned pod's cgroup: {e}");
                }
            }
        }
    }
}

/// A pod rebuilt from its sandbox's labels: enough to terminate it (kubelet restores
/// the grace period and preStop hooks from the containers' annotations).
fn restored_pod(l: &HashMap<String, String>) -> Pod {
    let get = |k: &str| l.get(k).cloned();
    Pod {
        metadata: ObjectMeta {
            name: get(labels::POD_NAME),
            namespace: get(labels::POD_NAMESPACE),
            uid: get(labels::POD_UID),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: Vec::<Container>::new(),
            ..Default::default()
        }),
        status: None,
    }
}
