//! Watches: replay from a resourceVersion out of the store's history (or synthetic ADDED
//! events of the current state), then live events, as JSON lines on one chunked response.
//! Selectors apply per event: an object that stops matching reaches the watcher as
//! DELETED, one that starts matching as ADDED. BOOKMARKs when asked for, an ERROR event
//! with 410 Expired for a resourceVersion the history no longer holds, and the stream ends
//! after timeoutSeconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::Shared;
use super::resources::Resource;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{Event, EventType};
use super::verbs;

struct Filter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn matches(&self, o: &Value) -> bool {
        let ns_ok = self
            .ns
            .as_deref()
            .is_none_or(|ns| o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns));
        ns_ok && self.labels.matches(o) && self.fields.matches(o)
    }

    /// The event this watcher sees for a write, if any.
    fn translate(&self, e: &Event) -> Option<(EventType, Value)> {
        let now = self.matches(&e.object);
        let before = e.prev.as_ref().is_some_and(|p| self.matches(p));
        match e.kind {
            EventType::Added => now.then(|| (EventType::Added, e.object.clone())),
            EventType::Deleted => before.then(|| (EventType::Deleted, e.object.clone())),
            EventType::Modified => match (before, now) {
                (true, true) => Some((EventType::Modified, e.object.clone())),
                (false, true) => Some((EventType::Added, e.object.clone())),
                (true, false) => Some((EventType::Deleted, e.object.clone())),
                (false, false) => None,
            },
        }
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(res: &Resource, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta}),
    )
}

/// Starts a watch; its lines arrive on the returned channel, which closes when the watch ends.
pub fn start(
    sh: Arc<Shared>,
    res: &'static Resource,
    ns: Option<String>,
    q: &HashMap<String, String>,
) -> Result<mpsc::Receiver<Bytes>, ApiError> {
    let (labels, fields) = verbs::selectors(q)?;
    let filter = Filter { ns, labels, fields };
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let bookmarks = flag("allowWatchBookmarks");
    let send_initial = flag("sendInitialEvents");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let from: Option<u64> = match q.get("resourceVersion").map_or("", String::as_str) {
        "" | "0" => None,
        s => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let (tx, out) = mpsc::channel::<Bytes>(256);
    let mut first: Vec<Bytes> = Vec::new();
    let registered = {
        let mut st = sh.lock_store();
        let initial = if from.is_none() || send_initial {
            Some(st.list(&res.id(), filter.ns.as_deref()))
        } else {
            None
        };
        let at = st.current_rv();
        match st.watch(&res.id(), if initial.is_some() { None } else { from }) {
            Ok((replay, rx)) => {
                for o in initial.iter().flatten().filter(|o| filter.matches(o)) {
                    first.push(line("ADDED", o));
                }
                if initial.is_some() && send_initial && bookmarks {
                    first.push(bookmark(res, at, true));
                }
                for e in &replay {
                    if let Some((k, o)) = filter.translate(e) {
                        first.push(line(k.as_str(), &o));
                    }
                }
                Some(rx)
            }
            Err(expired) => {
                let status = ApiError::expired(expired.to_string()).to_status();
                first.push(line("ERROR", &status));
                None
            }
        }
    };
    let span = tracing::debug_span!("watch", resource = %res.id());
    tokio::spawn(
        async move {
            for b in first {
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            let Some(mut rx) = registered else { return };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval(sh.opts.bookmark_interval);
            tick.tick().await;
            loop {
                let out: Vec<Bytes> = tokio::select! {
                    _ = &mut deadline => return,
                    ev = rx.recv() => match ev {
                        Some(e) => filter.translate(&e).map(|(k, o)| line(k.as_str(), &o)).into_iter().collect(),
                        None => return,
                    },
                    _ = tick.tick(), if bookmarks => {
                        // Under the store lock every write up to the current rv is already
                        // queued: send those first so a bookmark never runs ahead of an event.
                        let st = sh.lock_store();
                        let mut v = Vec::new();
                        while let Ok(e) = rx.try_recv() {
                            if let Some((k, o)) = filter.translate(&e) {
                                v.push(line(k.as_str(), &o));
                            }
                        }
                        v.push(bookmark(res, st.current_rv(), false));
                        v
                    }
                };
                for b in out {
                    if tx.send(b).await.is_err() {
                        return;
                    }
                }
            }
        }
        .instrument(span),
    );
    Ok(out)
}
