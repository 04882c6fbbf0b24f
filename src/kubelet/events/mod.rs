//! Events as kubelet records them: a reason and a message on an object (a pod, one of its
//! containers, or the node). [`Recorder`] logs each one and hands it to whoever
//! subscribes: in standalone mode the live view shows each pod's last one; joined to a
//! cluster, [`sink`] posts them as core/v1 Event objects, correlated by [`correlator`]
//! as client-go's event recorder does.
//!
//! Recording never blocks and never fails: a subscriber that falls behind loses the
//! oldest events, as client-go drops events when its queue is full.

pub mod correlator;
pub mod make;
pub mod sink;

use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::broadcast;

/// Normal or Warning, as the Event API's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        }
    }
}

/// The object an event is about, as an ObjectReference (apiVersion v1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectRef {
    /// "Pod" or "Node".
    pub kind: String,
    /// Empty for the node.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The pod's resourceVersion when the event was made (GetReference records it).
    pub resource_version: Option<String>,
    /// `spec.containers{name}` (or `spec.initContainers{name}`,
    /// `spec.ephemeralContainers{name}`) for a container's event.
    pub field_path: Option<String>,
}

impl ObjectRef {
    pub const API_VERSION: &'static str = "v1";

    /// The container a container's event is about, from its field path.
    pub fn container(&self) -> Option<&str> {
        let p = self.field_path.as_deref()?;
        let start = p.find('{')? + 1;
        p.strip_suffix('}').map(|s| &s[start..])
    }

    /// How logs name the object: `ns/pod container` or `node/name`.
    fn display(&self) -> String {
        match (self.kind.as_str(), self.container()) {
            ("Node", _) => format!("node/{}", self.name),
            (_, Some(c)) => format!("{}/{} {c}", self.namespace, self.name),
            (_, None) => format!("{}/{}", self.namespace, self.name),
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub object: ObjectRef,
    pub kind: EventKind,
    /// Upstream's reason: Pulling, Pulled, Created, Started, Killing, Unhealthy, BackOff,
    /// Failed, FailedMount, NodeReady, NodeNotReady, Starting, ...
    pub reason: String,
    pub message: String,
    pub time: SystemTime,
}

impl Event {
    /// An event on a pod, or on one of its containers (GenerateContainerRef: the field
    /// path names the list the container is in).
    pub fn pod(
        pod: &Pod,
        container: Option<&str>,
        kind: EventKind,
        reason: &str,
        message: String,
    ) -> Event {
        let meta = &pod.metadata;
        Event {
            object: ObjectRef {
                kind: "Pod".into(),
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                resource_version: meta.resource_version.clone(),
                field_path: container.map(|c| container_field_path(pod, c)),
            },
            kind,
            reason: reason.into(),
            message,
            time: SystemTime::now(),
        }
    }

    /// An event on the node: kubelet's node reference has the node's name as its UID
    /// and no namespace (the Event goes to `default`).
    pub fn node(node_name: &str, kind: EventKind, reason: &str, message: String) -> Event {
        Event {
            object: ObjectRef {
                kind: "Node".into(),
                namespace: String::new(),
                name: node_name.into(),
                uid: node_name.into(),
                resource_version: None,
                field_path: None,
            },
            kind,
            reason: reason.into(),
            message,
            time: SystemTime::now(),
        }
    }
}

/// `spec.containers{name}`, or the init or ephemeral list when the name is there.
fn container_field_path(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.as_ref();
    let in_list = |l: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
        l.is_some_and(|l| l.iter().any(|c| c.name == name))
    };
    let list = if spec.is_some_and(|s| s.containers.iter().any(|c| c.name == name)) {
        "containers"
    } else if in_list(spec.and_then(|s| s.init_containers.as_ref())) {
        "initContainers"
    } else if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == name))
    {
        "ephemeralContainers"
    } else {
        "containers"
    };
    format!("spec.{list}{{{name}}}")
}

/// Where events go: every subscriber sees every event from its subscription on.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: broadcast::Sender<Event>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            tx: broadcast::channel(1024).0,
        }
    }

    /// Records one event; it is logged at info (Normal) or warn (Warning).
    pub fn record(&self, event: Event) {
        let object = event.object.display();
        match event.kind {
            EventKind::Normal => {
                tracing::info!(object, reason = %event.reason, "{}", event.message)
            }
            EventKind::Warning => {
                tracing::warn!(object, reason = %event.reason, "{}", event.message)
            }
        }
        // No subscriber is fine: the event was logged.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn pod() -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("web".into());
        p.metadata.namespace = Some("ns".into());
        p.metadata.uid = Some("u1".into());
        p.spec = Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            init_containers: Some(vec![Container {
                name: "setup".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn container_events_carry_the_field_path_of_their_list() {
        let e = Event::pod(
            &pod(),
            Some("app"),
            EventKind::Normal,
            "Started",
            "x".into(),
        );
        assert_eq!(e.object.field_path.as_deref(), Some("spec.containers{app}"));
        assert_eq!(e.object.container(), Some("app"));
        let e = Event::pod(
            &pod(),
            Some("setup"),
            EventKind::Normal,
            "Started",
            "x".into(),
        );
        assert_eq!(
            e.object.field_path.as_deref(),
            Some("spec.initContainers{setup}")
        );
        let e = Event::pod(&pod(), None, EventKind::Warning, "Failed", "x".into());
        assert_eq!(
            (e.object.kind.as_str(), e.object.container()),
            ("Pod", None)
        );
        assert_eq!(e.object.uid, "u1");
    }

    #[test]
    fn node_events_use_the_node_name_as_uid() {
        let e = Event::node("n1", EventKind::Normal, "NodeReady", "ready".into());
        assert_eq!(
            (
                e.object.kind.as_str(),
                e.object.uid.as_str(),
                e.object.namespace.as_str()
            ),
            ("Node", "n1", "")
        );
    }
}
