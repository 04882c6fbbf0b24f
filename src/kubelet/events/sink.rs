//! Writing events to the API server as core/v1 Event objects (client-go
//! tools/record/event.go recordToSink and recordEvent).
//!
//! One task subscribes to the [`Recorder`] and handles events in order: each is made into
//! an Event object, passed through the [`Correlator`] (aggregated, deduplicated or
//! dropped as spam), then created, or PATCHed when it repeats one already written (and
//! created after all when that one is gone). A refusal from the server (any API status)
//! is logged and not retried; a transport error is retried up to 12 tries in all, 10 s
//! apart (the first wait randomized so that nodes do not retry in step), then the event
//! is dropped. The kubelet never waits on this task: recording only sends on a
//! broadcast channel, and a sink that falls behind loses the oldest events.

use std::future::Future;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Event as CoreEvent;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::correlator::{Correlated, Correlator};
use super::make::{COMPONENT, make_event};
use super::{Event, Recorder};

/// client-go's maxTriesPerEvent.
pub const MAX_TRIES_PER_EVENT: u32 = 12;
/// client-go's defaultSleepDuration between tries.
pub const SLEEP_BETWEEN_TRIES: Duration = Duration::from_secs(10);

/// Why one write of an Event failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The Event to patch is gone (404): create it instead.
    #[error("event {namespace}/{name}: not found")]
    NotFound { namespace: String, name: String },
    /// The server answered with an error status: not retried.
    #[error("event {namespace}/{name}: the server rejected it: {message}")]
    Rejected {
        namespace: String,
        name: String,
        message: String,
    },
    /// No answer (connection, TLS, timeout): retried.
    #[error("event {namespace}/{name}: {source}")]
    Transport {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl WriteError {
    fn retry(&self) -> bool {
        matches!(self, WriteError::Transport { .. })
    }
}

/// Where Event objects are written: the API server through kube, or a test's recorder.
pub trait EventSink {
    fn create(
        &self,
        event: &CoreEvent,
    ) -> impl Future<Output = Result<CoreEvent, WriteError>> + Send;
    fn patch(
        &self,
        event: &CoreEvent,
        patch: &serde_json::Value,
    ) -> impl Future<Output = Result<CoreEvent, WriteError>> + Send;
}

/// The API server's events resource (EventSinkImpl).
#[derive(Clone)]
pub struct ApiSink {
    client: kube::Client,
}

impl std::fmt::Debug for ApiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSink").finish_non_exhaustive()
    }
}

impl ApiSink {
    pub fn new(client: kube::Client) -> Self {
        ApiSink { client }
    }

    fn api(&self, e: &CoreEvent) -> (Api<CoreEvent>, String, String) {
        let ns = e
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = e.metadata.name.clone().unwrap_or_default();
        (Api::namespaced(self.client.clone(), &ns), ns, name)
    }
}

fn classify(namespace: String, name: String, e: kube::Error) -> WriteError {
    match e {
        kube::Error::Api(s) if s.is_not_found() => WriteError::NotFound { namespace, name },
        kube::Error::Api(s) => WriteError::Rejected {
            namespace,
            name,
            message: format!("{} ({})", s.message, s.code),
        },
        // A request that cannot be built never will be (RequestConstructionError).
        kube::Error::BuildRequest(e) => WriteError::Rejected {
            namespace,
            name,
            message: e.to_string(),
        },
        source => WriteError::Transport {
            namespace,
            name,
            source,
        },
    }
}

impl EventSink for ApiSink {
    async fn create(&self, event: &CoreEvent) -> Result<CoreEvent, WriteError> {
        let (api, ns, name) = self.api(event);
        api.create(&PostParams::default(), event)
            .await
            .map_err(|e| classify(ns, name, e))
    }

    async fn patch(
        &self,
        event: &CoreEvent,
        patch: &serde_json::Value,
    ) -> Result<CoreEvent, WriteError> {
        let (api, ns, name) = self.api(event);
        api.patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map_err(|e| classify(ns, name, e))
    }
}

/// What the sink reports as: source.component and reportingComponent `kubelet`,
/// source.host and reportingInstance the node name.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub node_name: String,
    pub component: String,
    pub sleep: Duration,
}

impl SinkConfig {
    pub fn new(node_name: &str) -> Self {
        SinkConfig {
            node_name: node_name.into(),
            component: COMPONENT.into(),
            sleep: SLEEP_BETWEEN_TRIES,
        }
    }
}

/// Starts writing the recorder's events to the API server as `node_name`'s kubelet.
/// The task ends when every [`Recorder`] clone is dropped, or when aborted.
pub fn spawn(client: kube::Client, recorder: &Recorder, node_name: &str) -> JoinHandle<()> {
    let rx = recorder.subscribe();
    let span = tracing::info_span!("events", node = node_name);
    tokio::spawn(run(ApiSink::new(client), rx, SinkConfig::new(node_name)).instrument(span))
}

/// The sink's loop over `rx`.
pub async fn run<S: EventSink>(sink: S, mut rx: broadcast::Receiver<Event>, cfg: SinkConfig) {
    let mut correlator = Correlator::new();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("{n} events dropped: the API sink fell behind");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let event = make_event(&ev, &cfg.component, &cfg.node_name);
        let Some(result) = correlator.correlate(event, SystemTime::now()) else {
            tracing::debug!(reason = %ev.reason, "event dropped by the spam filter");
            continue;
        };
        record_to_sink(&sink, &mut correlator, result, cfg.sleep).await;
    }
}

/// recordToSink: up to [`MAX_TRIES_PER_EVENT`] tries.
async fn record_to_sink<S: EventSink>(
    sink: &S,
    correlator: &mut Correlator,
    result: Correlated,
    sleep: Duration,
) {
    for tries in 1..=MAX_TRIES_PER_EVENT {
        match record_event(sink, &result).await {
            Ok(written) => {
                correlator.update_state(&written);
                return;
            }
            Err(e) if !e.retry() => {
                tracing::error!("{e} (will not retry)");
                return;
            }
            Err(e) if tries == MAX_TRIES_PER_EVENT => {
                tracing::error!("{e} (retry limit exceeded, event dropped)");
                return;
            }
            Err(e) => {
                tracing::warn!("{e} (will retry)");
                let wait = if tries == 1 {
                    sleep.mul_f64(random_fraction())
                } else {
                    sleep
                };
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// recordEvent: patch a repeat, create a new one (or a repeat whose Event is gone).
async fn record_event<S: EventSink>(sink: &S, r: &Correlated) -> Result<CoreEvent, WriteError> {
    if r.event.count.unwrap_or(1) > 1
        && let Some(patch) = &r.patch
    {
        match sink.patch(&r.event, patch).await {
            Err(WriteError::NotFound { .. }) => {}
            other => return other,
        }
    }
    let mut e = r.event.clone();
    e.metadata.resource_version = None;
    sink.create(&e).await
}

/// A number in [0, 1) to spread the first retry.
fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    match getrandom::fill(&mut b) {
        Ok(()) => f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
