//! Test-only: a kube::Client whose requests are answered in process by a closure, so the
//! object and token managers' unit tests see the real client and watcher code paths
//! (list, then a watch stream of JSON lines; POST of a subresource) without a network.
//! The full API server fixture lives in integration-tests.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::Stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use kube::Client;
use tokio::sync::mpsc;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn is_watch(&self) -> bool {
        self.uri.contains("watch=true")
    }
}

/// An answer: one JSON document, or a stream of watch events (each a JSON line) that
/// stays open while its sender lives.
#[derive(Debug)]
pub enum Reply {
    Json(u16, serde_json::Value),
    Watch(mpsc::UnboundedReceiver<serde_json::Value>),
}

type Frames = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;

/// A client answered by `handler`, and the log of what it was asked.
pub fn client<F>(handler: F) -> (Client, Arc<Mutex<Vec<Seen>>>)
where
    F: Fn(&Seen) -> Reply + Send + Sync + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = Arc::new(handler);
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (log, handler) = (log.clone(), handler.clone());
        async move {
            let method = req.method().to_string();
            let uri = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes().to_vec())
                .unwrap_or_default();
            let s = Seen { method, uri, body };
            log.lock().unwrap().push(s.clone());
            let (code, frames): (u16, Frames) = match handler(&s) {
                Reply::Json(code, v) => {
                    let b = Bytes::from(v.to_string());
                    (
                        code,
                        Box::pin(futures_util::stream::iter([Ok(Frame::data(b))])),
                    )
                }
                Reply::Watch(rx) => {
                    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
                        let v = rx.recv().await?;
                        let line = Bytes::from(format!("{v}\n"));
                        Some((Ok(Frame::data(line)), rx))
                    });
                    (200, Box::pin(lines))
                }
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(StreamBody::new(frames))
                .unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    (Client::new(svc, "default"), seen)
}
