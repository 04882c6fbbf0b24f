//! The kubelet's main loop (upstream's syncLoop and HandlePodCleanups): the desired pods
//! from the sources go to their workers, pods that left their source are terminated,
//! probe results wake their pods, and every two seconds housekeeping finds what no
//! worker owns (sandboxes left by an earlier run, pod volume dirs, pod cgroups) and
//! removes it. At stop, every pod is terminated gracefully before the loop returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::{mpsc, watch};

use super::config::Desired;
use super::kuberuntime::labels;
use super::objects::Objects;
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
}

impl SyncLoop {
    /// Runs until `stop` completes, then terminates every pod and returns once they are
    /// gone (or `shutdown_limit` has passed).
    pub async fn run(
        mut self,
        stop: impl std::future::Future<Output = ()>,
        shutdown_limit: Duration,
    ) {
        let pleg = tokio::spawn(super::pleg::run(
            self.syncer.runtime.clone(),
            self.workers.clone(),
        ));
        let mut sent: HashMap<String, Pod> = HashMap::new();
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
                    _ = tick.tick() => {
                        for pod in sent.values() {
                            if !self.workers.has(labels::uid(pod)) {
                                self.workers.update(pod.clone());
                            }
                        }
                        self.housekeeping(&sent).await;
                    }
                }
            }
        }
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
    fn reconcile(&self, sent: &mut HashMap<String, Pod>, reported: &mut BTreeSet<String>) {
        let desired = self.desired.borrow().clone();
        for e in &desired.errors {
            let msg = e.to_string();
            if reported.insert(msg.clone()) {
                tracing::error!("rejected: {msg}");
            }
        }
        let objects_changed = self.objects.send_if_modified(|o| {
            if **o == desired.objects {
                false
            } else {
                *o = Arc::new(desired.objects.clone());
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
            if sent.get(uid) != Some(pod) {
                sent.insert(uid.clone(), pod.clone());
                self.workers.update(pod.clone());
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
    async fn housekeeping(&self, sent: &HashMap<String, Pod>) {
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
        let active: Vec<Pod> = sent.values().cloned().collect();
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
