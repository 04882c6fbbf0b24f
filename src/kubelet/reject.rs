//! Pods the kubelet will not run (kubelet.go rejectPod): invalid pods from the API server
//! and pods that admission refuses. A rejected pod is Failed with the reason and message,
//! as upstream sets them, with a Warning event; it never reaches a worker. Once it is
//! deleted in the API (or gone from its source) it is finished, so the status manager
//! deletes its object at once: nothing of it ever ran.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::events::{Event, EventKind, Recorder};
use super::status::store::{PodView, StatusStore};

/// The rejected pods of the node, by UID.
#[derive(Debug)]
pub struct Rejected {
    store: Arc<StatusStore>,
    recorder: Recorder,
    pods: BTreeMap<String, Pod>,
}

impl Rejected {
    pub fn new(store: Arc<StatusStore>, recorder: Recorder) -> Self {
        Rejected {
            store,
            recorder,
            pods: BTreeMap::new(),
        }
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// Rejects `pod` (once): Failed with `reason` and `message`, and a Warning event
    /// with `event_reason`.
    pub fn reject(
        &mut self,
        uid: &str,
        pod: &Pod,
        event_reason: &str,
        reason: &str,
        message: &str,
    ) {
        if self.pods.contains_key(uid) {
            return;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.recorder.record(Event {
            pod_uid: uid.to_string(),
            namespace: ns,
            pod: name,
            container: None,
            kind: EventKind::Warning,
            reason: event_reason.to_string(),
            message: message.to_string(),
            time: std::time::SystemTime::now(),
        });
        let mut shown = pod.clone();
        shown.status = Some(failed(pod, reason, message));
        self.store.set(
            uid,
            PodView {
                pod: shown,
                probes: BTreeMap::new(),
            },
        );
        self.pods.insert(uid.to_string(), pod.clone());
    }

    /// Rejected pods that are gone from their source or being deleted are finished.
    pub fn settle(&mut self, alive: impl Fn(&str, &Pod) -> bool) {
        let done: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, p)| !alive(uid, p) || p.metadata.deletion_timestamp.is_some())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in done {
            self.pods.remove(&uid);
            self.store.remove(&uid);
        }
    }

    /// Records a newer copy of a rejected pod (its deletionTimestamp, say).
    pub fn refresh(&mut self, uid: &str, pod: &Pod) {
        if let Some(p) = self.pods.get_mut(uid) {
            *p = pod.clone();
        }
    }
}

/// The status of a rejected pod, as kubelet's rejectPod writes it: phase Failed, the
/// reason and message, the previous status otherwise kept.
pub fn failed(pod: &Pod, reason: &str, message: &str) -> PodStatus {
    let mut st = pod.status.clone().unwrap_or_default();
    st.phase = Some("Failed".into());
    st.reason = Some(reason.into());
    st.message = Some(message.into());
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_rejected_pod_is_failed_once_and_finished_when_deleted() {
        let store = Arc::new(StatusStore::keeping_finished());
        let rec = Recorder::new();
        let mut events = rec.subscribe();
        let mut r = Rejected::new(store.clone(), rec);
        let p = pod("big");
        r.reject(
            "uid-big",
            &p,
            "OutOfcpu",
            "OutOfcpu",
            "Node didn't have enough resource: cpu",
        );
        r.reject("uid-big", &p, "OutOfcpu", "OutOfcpu", "again");
        let v = store.get("uid-big").expect("a view");
        let st = v.pod.status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert_eq!(st.reason.as_deref(), Some("OutOfcpu"));
        let ev = events.try_recv().expect("an event");
        assert_eq!(
            (ev.kind, ev.reason.as_str()),
            (EventKind::Warning, "OutOfcpu")
        );
        assert!(events.try_recv().is_err(), "rejected once");
        r.settle(|_, _| true);
        assert!(r.contains("uid-big"));
        let mut deleted = p.clone();
        deleted.metadata.deletion_timestamp = Some(crate::kubelet::status::now());
        r.refresh("uid-big", &deleted);
        r.settle(|_, _| true);
        assert!(!r.contains("uid-big"));
        assert!(store.take_finished().contains_key("uid-big"));
    }
}
