//! Container events for GetContainerEvents, pushed by the pods' holders as they happen
//! (no polling): each pod's holder has one subscribed connection to the daemon, read by
//! a task of its own that forwards every event to a broadcast channel; the CRI stream of
//! each client is a receiver of that channel.

use tokio::sync::broadcast;
use tracing::Instrument;

use super::holder::ContainerEvent;
use super::sandbox::HolderEvents;

/// How many events a slow client may fall behind before it misses some (it is told, and
/// the kubelet relists on a gap).
const BACKLOG: usize = 1024;

/// One event of one pod.
#[derive(Debug, Clone)]
pub struct PodEvent {
    pub sandbox_id: String,
    pub event: ContainerEvent,
}

/// Where the events of every pod meet.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<PodEvent>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl EventHub {
    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PodEvent> {
        self.tx.subscribe()
    }

    /// Forwards `events`, the subscribed stream of sandbox `id`'s holder, until the
    /// holder goes away, from a task on the async runtime (a pod's stream is open for as
    /// long as the pod lives; a thread each would cost a stack and an allocator arena
    /// per pod). The caller subscribes before it returns, so no event of a call made
    /// after it is missed.
    pub fn forward(&self, id: &str, mut events: Box<dyn HolderEvents>) {
        let tx = self.tx.clone();
        let sandbox_id = id.to_string();
        let span = tracing::debug_span!("events", sandbox = %&id[..id.len().min(12)]);
        tokio::spawn(
            async move {
                // A closed connection is the holder shutting down with its pod.
                while let Ok(event) = events.next_event_async().await {
                    // No receiver is no error: nobody is listening yet.
                    let _ = tx.send(PodEvent {
                        sandbox_id: sandbox_id.clone(),
                        event,
                    });
                }
                tracing::debug!("event stream of the holder ended");
            }
            .instrument(span),
        );
    }
}
