//! Events as kubelet records them (reason and message on a pod or one of its
//! containers). In standalone mode they are logged and the live view shows each pod's
//! last one; later the API join posts them as Event objects.

use std::time::SystemTime;

use tokio::sync::broadcast;

/// Normal or Warning, as the Event API's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Normal,
    Warning,
}

/// One event on a pod (`container` names the container for a container's event, as
/// kubelet's `spec.containers{name}` field path).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub pod_uid: String,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub kind: EventKind,
    /// Upstream's reason: Pulling, Pulled, Created, Started, Killing, Unhealthy, BackOff,
    /// Failed, FailedMount, ...
    pub reason: String,
    pub message: String,
    pub time: SystemTime,
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
        let object = match &event.container {
            Some(c) => format!("{}/{} {}", event.namespace, event.pod, c),
            None => format!("{}/{}", event.namespace, event.pod),
        };
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
