//! Exec and attach sessions over SPDY, as kubelet's remotecommand server runs them.
//!
//! The client opens one stream per channel, named by its `streamtype` header: `error`
//! always, `stdin`/`stdout`/`stderr` as the request asked, and `resize` for a tty from v3 on.
//! Once all expected streams are there (within the creation timeout) the runtime runs the
//! session; then the outcome goes on the error stream (v4+: a metav1.Status with the exit
//! code; earlier: the failure's message) and the connection is closed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::backend::{SessionIo, StreamingRuntime, TerminalSize};
use super::spdy::{ConnOptions, Connection, RecvHalf, SendHalf};
use super::status::Outcome;

/// Subprotocols served, best first. v5 adds only a websocket CLOSE signal, so over SPDY it
/// is v4, as in kubelet.
pub const PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V1,
    V2,
    V3,
    V4,
}

fn version(protocol: &str) -> Version {
    match protocol {
        "v5.channel.k8s.io" | "v4.channel.k8s.io" => Version::V4,
        "v3.channel.k8s.io" => Version::V3,
        "v2.channel.k8s.io" => Version::V2,
        _ => Version::V1,
    }
}

/// What the session runs.
#[derive(Debug, Clone)]
pub enum Session {
    Exec {
        container_id: String,
        cmd: Vec<String>,
    },
    Attach {
        container_id: String,
    },
}

/// The channels the cached request asked for.
#[derive(Debug, Clone, Copy)]
pub struct Channels {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

#[derive(Default)]
struct Streams {
    error: Option<SendHalf>,
    stdin: Option<RecvHalf>,
    stdout: Option<SendHalf>,
    stderr: Option<SendHalf>,
    resize: Option<RecvHalf>,
    /// Halves nobody uses, kept open until the connection closes, as kubelet does.
    keep: Vec<(Option<RecvHalf>, Option<SendHalf>)>,
}

/// Runs one session on an upgraded connection.
#[allow(clippy::too_many_arguments)]
pub async fn serve<R: StreamingRuntime>(
    io: TcpStream,
    prefix: Bytes,
    protocol: &str,
    session: Session,
    ch: Channels,
    runtime: Arc<R>,
    idle_timeout: Duration,
    creation_timeout: Duration,
) {
    let v = version(protocol);
    let (conn, mut incoming) = Connection::serve(
        io,
        prefix,
        ConnOptions { idle_timeout },
        Box::new(|_| Ok(())),
    );
    let expected = 1
        + usize::from(ch.stdin)
        + usize::from(ch.stdout)
        + usize::from(ch.stderr)
        + usize::from(ch.tty && v >= Version::V3);
    let mut s = Streams::default();
    let mut received = 0;
    let deadline = tokio::time::sleep(creation_timeout);
    tokio::pin!(deadline);
    while received < expected {
        let stream = tokio::select! {
            st = incoming.recv() => match st {
                Some(st) => st,
                None => {
                    tracing::debug!("remotecommand: client left before opening its streams");
                    conn.close().await;
                    return;
                }
            },
            _ = &mut deadline => {
                tracing::warn!(?creation_timeout, received, expected, "remotecommand: timed out waiting for client to create streams");
                conn.close().await;
                return;
            }
        };
        let kind = stream.headers().get("streamtype").unwrap_or("").to_string();
        let (rx, tx) = stream.into_split();
        match kind.as_str() {
            "error" => {
                s.error = Some(tx);
                s.keep.push((Some(rx), None));
            }
            "stdin" => {
                s.stdin = Some(rx);
                s.keep.push((None, Some(tx)));
            }
            "stdout" => {
                s.stdout = Some(tx);
                s.keep.push((Some(rx), None));
            }
            "stderr" => {
                s.stderr = Some(tx);
                s.keep.push((Some(rx), None));
            }
            "resize" if v >= Version::V3 => {
                s.resize = Some(rx);
                s.keep.push((None, Some(tx)));
            }
            other => {
                tracing::warn!(stream_type = other, "remotecommand: unexpected stream type");
                s.keep.push((Some(rx), Some(tx)));
                continue;
            }
        }
        received += 1;
    }
    if v == Version::V1 {
        // channel.k8s.io closes the server's side of stdin at once; kept for old clients.
        s.keep.retain_mut(|(_, tx)| tx.is_none());
    }

    let resize = s.resize.take().map(|rx| {
        let (tx, out) = mpsc::channel(4);
        tokio::spawn(decode_resizes(rx, tx));
        out
    });
    let io = SessionIo {
        stdin: s.stdin.take().map(|r| Box::new(r) as _),
        stdout: s.stdout.take().map(|w| Box::new(w) as _),
        stderr: s.stderr.take().map(|w| Box::new(w) as _),
        resize,
    };
    let run = async {
        match &session {
            Session::Exec { container_id, cmd } => {
                match runtime.exec(container_id, cmd, ch.tty, io).await {
                    Ok(0) => Outcome::Success,
                    Ok(code) => Outcome::ExitCode {
                        code,
                        what: format!(
                            "error executing command [{}], exit code {code}",
                            cmd.join(" ")
                        ),
                    },
                    Err(e) => {
                        Outcome::Internal(format!("error executing command in container: {e}"))
                    }
                }
            }
            Session::Attach { container_id } => {
                match runtime.attach(container_id, ch.tty, io).await {
                    Ok(()) => Outcome::Success,
                    Err(e) => Outcome::Internal(format!("error attaching to container: {e}")),
                }
            }
        }
    };
    // A client that goes away (its connection closes) ends the session: the runtime's
    // future is dropped, which is how a runtime learns to stop the process it runs.
    let gone = async {
        let mut late = Vec::new();
        while let Some(st) = incoming.recv().await {
            late.push(st);
        }
    };
    let outcome = tokio::select! {
        o = run => o,
        () = gone => {
            tracing::debug!("remotecommand: client left; session cancelled");
            conn.close().await;
            return;
        }
    };
    tracing::debug!(?outcome, "remotecommand: session over");
    if let Some(mut err) = s.error.take() {
        let bytes = if v >= Version::V4 {
            outcome.v4_bytes()
        } else {
            outcome.v1_bytes()
        };
        if !bytes.is_empty()
            && let Err(e) = err.write_all(&bytes).await
        {
            tracing::debug!(error = %e, "remotecommand: could not report the outcome");
        }
        let _ = err.shutdown().await;
    }
    conn.close().await;
}

/// Turns the resize stream's JSON objects into terminal sizes until it ends.
async fn decode_resizes(mut rx: RecvHalf, tx: mpsc::Sender<TerminalSize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match rx.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<TerminalSize>();
        let mut used = 0;
        loop {
            match it.next() {
                Some(Ok(size)) => {
                    used = it.byte_offset();
                    if tx.send(size).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    // kubelet stops reading resizes at the first undecodable object.
                    tracing::warn!(error = %e, "remotecommand: bad resize event");
                    return;
                }
                None => {
                    used = buf.len();
                    break;
                }
            }
        }
        buf.drain(..used);
        if buf.len() > 64 * 1024 {
            tracing::warn!("remotecommand: resize event larger than 64 KiB");
            return;
        }
    }
}
