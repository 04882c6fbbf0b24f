use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::*;
use crate::kubelet::events::EventKind;

/// What the fake server saw, and the answers it gives in turn (then success).
#[derive(Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
    answers: Arc<Mutex<VecDeque<&'static str>>>,
    stored: Arc<Mutex<u32>>,
}

impl Fake {
    fn answering(answers: &[&'static str]) -> Fake {
        let f = Fake::default();
        f.answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(answers);
        f
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn answer(&self, what: String, e: &CoreEvent) -> Result<CoreEvent, WriteError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
        let ns = e.metadata.namespace.clone().unwrap_or_default();
        let name = e.metadata.name.clone().unwrap_or_default();
        let next = self
            .answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        match next {
            Some("down") => Err(WriteError::Transport {
                namespace: ns,
                name,
                source: kube::Error::ReadEvents(std::io::Error::other("connection refused")),
            }),
            Some("404") => Err(WriteError::NotFound {
                namespace: ns,
                name,
            }),
            Some("422") => Err(WriteError::Rejected {
                namespace: ns,
                name,
                message: "invalid".into(),
            }),
            _ => {
                let mut rv = self.stored.lock().unwrap_or_else(|e| e.into_inner());
                *rv += 1;
                let mut out = e.clone();
                out.metadata.resource_version = Some(rv.to_string());
                Ok(out)
            }
        }
    }
}

impl EventSink for Fake {
    async fn create(&self, event: &CoreEvent) -> Result<CoreEvent, WriteError> {
        let what = format!(
            "create {} rv={:?}",
            event.message.as_deref().unwrap_or(""),
            event.metadata.resource_version
        );
        self.answer(what, event)
    }

    async fn patch(
        &self,
        event: &CoreEvent,
        patch: &serde_json::Value,
    ) -> Result<CoreEvent, WriteError> {
        let what = format!(
            "patch {} count={}",
            event.metadata.name.as_deref().unwrap_or(""),
            patch["count"]
        );
        self.answer(what, event)
    }
}

fn cfg() -> SinkConfig {
    SinkConfig::new("node-1")
}

fn ev(message: &str) -> Event {
    Event::node("node-1", EventKind::Normal, "NodeReady", message.into())
}

async fn send_all(fake: &Fake, events: &[Event]) {
    let recorder = Recorder::new();
    let rx = recorder.subscribe();
    for e in events {
        recorder.record(e.clone());
    }
    drop(recorder);
    run(fake.clone(), rx, cfg()).await;
}

#[tokio::test(start_paused = true)]
async fn a_repeat_is_a_patch_of_the_first() {
    let fake = Fake::default();
    let first = ev("ready");
    send_all(&fake, &[first.clone(), ev("ready"), ev("ready")]).await;
    let name = make_event(&first, COMPONENT, "node-1")
        .metadata
        .name
        .unwrap_or_default();
    assert_eq!(
        fake.calls(),
        vec![
            "create ready rv=None".to_string(),
            format!("patch {name} count=2"),
            format!("patch {name} count=3"),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_patch_of_a_deleted_event_creates_it_without_resource_version() {
    let fake = Fake::answering(&["ok", "404"]);
    send_all(&fake, &[ev("ready"), ev("ready")]).await;
    let calls = fake.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[1].starts_with("patch "));
    assert_eq!(calls[2], "create ready rv=None");
}

#[tokio::test(start_paused = true)]
async fn transport_errors_are_retried_twelve_times_then_dropped() {
    let fake = Fake::answering(&["down"; 12]);
    let start = tokio::time::Instant::now();
    send_all(&fake, &[ev("lost"), ev("next")]).await;
    let calls = fake.calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "create lost rv=None").count(),
        12
    );
    assert_eq!(
        calls.last().map(String::as_str),
        Some("create next rv=None")
    );
    // Ten full waits after the randomized first one.
    let waited = start.elapsed();
    assert!(
        waited >= SLEEP_BETWEEN_TRIES * 10 && waited < SLEEP_BETWEEN_TRIES * 11,
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_succeeds_stops_retrying() {
    let fake = Fake::answering(&["down", "down"]);
    send_all(&fake, &[ev("flaky")]).await;
    assert_eq!(fake.calls().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_from_the_server_is_not_retried() {
    let fake = Fake::answering(&["422"]);
    send_all(&fake, &[ev("bad"), ev("good")]).await;
    assert_eq!(
        fake.calls(),
        vec![
            "create bad rv=None".to_string(),
            "create good rv=None".to_string()
        ]
    );
}
