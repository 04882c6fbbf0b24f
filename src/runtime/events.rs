//! Container events for GetContainerEvents, pushed by the pods' holders as they happen
//! (no polling): each pod's holder has one subscribed connection to the daemon, read by
//! a thread of its own that forwards every event to a broadcast channel; the CRI stream
//! of each client is a receiver of that channel.

use tokio::sync::broadcast;

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
    /// holder goes away. The caller subscribes before it returns, so no event of a call
    /// made after it is missed.
    pub fn forward(
        &self,
        id: &str,
        mut events: Box<dyn HolderEvents>,
    ) -> super::holder::Result<()> {
        let tx = self.tx.clone();
        let sandbox_id = id.to_string();
        let name = format!("events-{}", &id[..id.len().min(12)]);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                // A closed connection is the holder shutting down with its pod.
                while let Ok(event) = events.next_event() {
                    // No receiver is no error: nobody is listening yet.
                    let _ = tx.send(PodEvent {
                        sandbox_id: sandbox_id.clone(),
                        event,
                    });
                }
                tracing::debug!(sandbox = %sandbox_id, "event stream of the holder ended");
            })
            .map_err(|source| super::holder::HolderError::Io {
                pod: id.into(),
                op: "start the event thread",
                path: std::path::PathBuf::new(),
                source,
            })?;
        Ok(())
    }
}
