//! Port forwarding over SPDY, as kubelet serves it (portforward.k8s.io).
//!
//! Each forwarded connection is a pair of client streams with the same `requestid` and
//! `port` headers: `streamtype: error` then `streamtype: data`. When both are there the
//! runtime copies the data stream to the port in the sandbox; a failure goes back on the
//! error stream as kubelet's JSON `{"closeConnection":..,"message":..}`. One upgraded
//! connection carries any number of pairs until the client leaves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::backend::StreamingRuntime;
use super::spdy::{ConnOptions, Connection, HeaderBlock, SpdyStream};

pub const PROTOCOLS: &[&str] = &["portforward.k8s.io"];

/// kubelet's stream acceptance rules (httpStreamReceived), with its messages.
fn accept(h: &HeaderBlock) -> Result<(), String> {
    let port = h.get("port").unwrap_or("");
    if port.is_empty() {
        return Err("\"port\" header is required".into());
    }
    let n: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if n < 1 {
        return Err(format!("port {port:?} must be > 0"));
    }
    match h.get("streamtype").unwrap_or("") {
        "" => Err("\"streamType\" header is required".into()),
        "error" | "data" => Ok(()),
        other => Err(format!("invalid stream type {other:?}")),
    }
}

#[derive(Default)]
struct Pair {
    data: Option<SpdyStream>,
    error: Option<SpdyStream>,
}

/// kubelet's portForwardErrResponse.
#[derive(serde::Serialize)]
struct ErrResponse {
    #[serde(rename = "closeConnection", skip_serializing_if = "std::ops::Not::not")]
    close_connection: bool,
    message: String,
}

/// Serves port-forward pairs on an upgraded connection until the client leaves.
pub async fn serve<R: StreamingRuntime>(
    io: TcpStream,
    prefix: Bytes,
    sandbox_id: String,
    runtime: Arc<R>,
    idle_timeout: Duration,
    creation_timeout: Duration,
) {
    let (conn, mut incoming) =
        Connection::serve(io, prefix, ConnOptions { idle_timeout }, Box::new(accept));
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let (expired_tx, mut expired_rx) = mpsc::channel::<String>(16);
    let mut forwards = JoinSet::new();
    loop {
        while forwards.try_join_next().is_some() {}
        let stream = tokio::select! {
            st = incoming.recv() => match st { Some(st) => st, None => break },
            Some(id) = expired_rx.recv() => {
                if let Some(mut p) = pairs.remove(&id) {
                    let msg = format!("(request={id}) timed out waiting for streams");
                    tracing::warn!(sandbox_id, request = %id, "portforward: timed out waiting for streams");
                    if let Some(e) = p.error.as_mut() {
                        let _ = e.write_all(msg.as_bytes()).await;
                    }
                }
                continue;
            }
        };
        let kind = stream.headers().get("streamtype").unwrap_or("").to_string();
        let id = match stream.headers().get("requestid") {
            Some(id) if !id.is_empty() => id.to_string(),
            // Clients older than the requestID header: kubelet pairs consecutive stream ids.
            _ if kind == "error" => stream.id().to_string(),
            _ => stream.id().saturating_sub(2).to_string(),
        };
        let pair = pairs.entry(id.clone()).or_insert_with(|| {
            let tx = expired_tx.clone();
            let id = id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(creation_timeout).await;
                let _ = tx.send(id).await;
            });
            Pair::default()
        });
        let slot = if kind == "error" {
            &mut pair.error
        } else {
            &mut pair.data
        };
        if slot.is_some() {
            let msg =
                format!("error processing stream for request {id}: {kind} stream already assigned");
            tracing::warn!(sandbox_id, "portforward: {msg}");
            if let Some(e) = pair.error.as_mut() {
                let _ = e.write_all(msg.as_bytes()).await;
            }
            continue;
        }
        *slot = Some(stream);
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                data: Some(data),
                error: Some(error),
            }) = pairs.remove(&id)
        {
            forwards.spawn(forward(
                runtime.clone(),
                sandbox_id.clone(),
                id,
                data,
                error,
            ));
        }
    }
    forwards.abort_all();
    conn.close().await;
}

async fn forward<R: StreamingRuntime>(
    runtime: Arc<R>,
    sandbox_id: String,
    id: String,
    data: SpdyStream,
    error: SpdyStream,
) {
    // accept() has checked the header.
    let port: u16 = data
        .headers()
        .get("port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    tracing::debug!(sandbox_id, request = %id, port, "portforward: forwarding");
    let result = runtime
        .port_forward(&sandbox_id, port, Box::new(data))
        .await;
    let (_, mut err_tx) = error.into_split();
    if let Err(e) = result {
        let keep_open = matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        );
        let message = format!("error forwarding port {port} to pod {sandbox_id}, uid : {e}");
        tracing::warn!(sandbox_id, request = %id, port, error = %e, "portforward: forwarding failed");
        let mut body = serde_json::to_vec(&ErrResponse {
            close_connection: !keep_open,
            message,
        })
        .unwrap_or_default();
        body.push(b'\n');
        let _ = err_tx.write_all(&body).await;
    }
    let _ = err_tx.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderBlock {
        HeaderBlock(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn streams_are_checked_like_kubelet() {
        assert!(accept(&h(&[("port", "80"), ("streamtype", "data")])).is_ok());
        assert_eq!(
            accept(&h(&[("streamtype", "data")])).unwrap_err(),
            "\"port\" header is required"
        );
        assert!(
            accept(&h(&[("port", "x"), ("streamtype", "data")]))
                .unwrap_err()
                .starts_with("unable to parse \"x\"")
        );
        assert_eq!(
            accept(&h(&[("port", "0"), ("streamtype", "data")])).unwrap_err(),
            "port \"0\" must be > 0"
        );
        assert_eq!(
            accept(&h(&[("port", "1")])).unwrap_err(),
            "\"streamType\" header is required"
        );
        assert_eq!(
            accept(&h(&[("port", "1"), ("streamtype", "x")])).unwrap_err(),
            "invalid stream type \"x\""
        );
    }
}
