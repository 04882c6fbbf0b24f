//! The pod lifecycle event generator: wakes a pod's worker when one of its containers
//! changes. Fed by the runtime's container events (GetContainerEvents), so a change
//! reaches the worker in milliseconds; a relist every five minutes is only a safety net.
//! A runtime without the events stream (containerd 1.6 answers UNIMPLEMENTED) is
//! relisted every second instead, as upstream's generic PLEG does.

use std::collections::HashMap;
use std::time::Duration;

use cri_proto::v1 as cri;
use tokio_stream::StreamExt;

use super::kuberuntime::labels;
use super::runtime::Runtime;
use super::worker::Workers;

/// How often a runtime with events is relisted anyway.
pub const SAFETY_RELIST: Duration = Duration::from_secs(300);
/// How often a runtime without events is relisted (upstream's relist period).
pub const RELIST: Duration = Duration::from_secs(1);

fn uid_of(ev: &cri::ContainerEventResponse) -> Option<String> {
    ev.pod_sandbox_status
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .map(|m| m.uid.clone())
        .or_else(|| {
            ev.containers_statuses
                .iter()
                .find_map(|c| c.labels.get(labels::POD_UID).cloned())
        })
        .filter(|u| !u.is_empty())
}

/// Runs until the task is dropped.
pub async fn run(rt: Runtime, workers: Workers) {
    let mut events = rt.pods.container_events();
    let mut safety = tokio::time::interval(SAFETY_RELIST);
    safety.tick().await;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(ev) => {
                    if let Some(uid) = uid_of(&ev) {
                        tracing::trace!(uid, kind = ev.container_event_type, "container event");
                        workers.wake(&uid);
                    }
                }
                None => break,
            },
            _ = safety.tick() => {
                for uid in workers.uids() {
                    workers.wake(&uid);
                }
            }
        }
    }
    tracing::info!("the runtime sends no container events: relisting every second");
    relist(rt, workers).await;
}

/// Relists containers and sandboxes every second and wakes the pods whose state changed.
async fn relist(rt: Runtime, workers: Workers) {
    let mut last: HashMap<String, (String, i32)> = HashMap::new();
    let mut tick = tokio::time::interval(RELIST);
    loop {
        tick.tick().await;
        let mut now: HashMap<String, (String, i32)> = HashMap::new();
        match rt
            .pods
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
        {
            Ok(r) => {
                for c in r.containers {
                    if let Some(uid) = c.labels.get(labels::POD_UID) {
                        now.insert(c.id, (uid.clone(), c.state));
                    }
                }
            }
            Err(e) => {
                tracing::warn!("relist containers: {e}");
                continue;
            }
        }
        if let Ok(r) = rt
            .pods
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
        {
            for s in r.items {
                if let Some(uid) = s.labels.get(labels::POD_UID) {
                    now.insert(s.id, (uid.clone(), 100 + s.state));
                }
            }
        }
        let mut changed = std::collections::BTreeSet::new();
        for (id, (uid, st)) in &now {
            if last.get(id).map(|(_, s)| s) != Some(st) {
                changed.insert(uid.clone());
            }
        }
        for (id, (uid, _)) in &last {
            if !now.contains_key(id) {
                changed.insert(uid.clone());
            }
        }
        for uid in changed {
            workers.wake(&uid);
        }
        last = now;
    }
}
