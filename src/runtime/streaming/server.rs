//! The streaming server: hands out single-use URLs for CRI Exec, Attach and PortForward
//! requests and serves them over HTTP/1.1 upgraded to SPDY/3.1.
//!
//! Routes are kubelet's: `GET|POST /exec/{token}`, `/attach/{token}`, `/portforward/{token}`.
//! An unknown, used or expired token gets 404; a refused protocol negotiation or a request
//! without the SPDY upgrade headers gets kubelet's 400/403 with its message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::backend::StreamingRuntime;
use super::cache::RequestCache;
use super::error::StreamingError;
use super::http::{self, Refusal, RequestHead};
use super::request::{AttachRequest, CachedRequest, ExecRequest, PortForwardRequest};
use super::{portforward, remotecommand};

/// Settings of the streaming server; the defaults are kubelet's and containerd's.
#[derive(Debug, Clone)]
pub struct StreamingConfig {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Base of the URLs handed out (`http://host:port`); the listening address when unset.
    pub base_url: Option<String>,
    /// A connection with no frame for this long is closed (kubelet: 4 h).
    pub stream_idle_timeout: Duration,
    /// How long a client has to open a session's streams (kubelet: 30 s).
    pub stream_creation_timeout: Duration,
    /// How long a handed-out URL stays valid (kubelet: 1 min).
    pub request_ttl: Duration,
    /// How many handed-out URLs may wait at once (kubelet: 1000).
    pub max_in_flight: usize,
    /// How long a client has to send its request head.
    pub request_head_timeout: Duration,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_url: None,
            stream_idle_timeout: Duration::from_secs(4 * 3600),
            stream_creation_timeout: Duration::from_secs(30),
            request_ttl: Duration::from_secs(60),
            max_in_flight: 1000,
            request_head_timeout: Duration::from_secs(30),
        }
    }
}

impl StreamingConfig {
    pub fn validate(&self) -> Result<(), StreamingError> {
        let positive = |field, d: Duration| {
            if d.is_zero() {
                Err(StreamingError::Config {
                    field,
                    reason: "must be greater than zero".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("stream_idle_timeout", self.stream_idle_timeout)?;
        positive("stream_creation_timeout", self.stream_creation_timeout)?;
        positive("request_ttl", self.request_ttl)?;
        positive("request_head_timeout", self.request_head_timeout)?;
        if self.max_in_flight == 0 {
            return Err(StreamingError::Config {
                field: "max_in_flight",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(u) = &self.base_url
            && !u
                .strip_prefix("http://")
                .or_else(|| u.strip_prefix("https://"))
                .is_some_and(|host| !host.is_empty() && !host.contains(['/', '?', '#']))
        {
            // The routes are served at the root, so a base URL cannot carry a path.
            return Err(StreamingError::Config {
                field: "base_url",
                reason: format!("{u:?} is not http(s)://host[:port] without a path"),
            });
        }
        Ok(())
    }
}

struct Shared<R> {
    cache: RequestCache,
    runtime: Arc<R>,
    config: StreamingConfig,
}

/// A running streaming server. Dropping it stops the listener and every open session.
pub struct StreamingServer<R: StreamingRuntime> {
    shared: Arc<Shared<R>>,
    addr: SocketAddr,
    base_url: String,
    task: JoinHandle<()>,
}

impl<R: StreamingRuntime> std::fmt::Debug for StreamingServer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingServer")
            .field("addr", &self.addr)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl<R: StreamingRuntime> StreamingServer<R> {
    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn start(config: StreamingConfig, runtime: Arc<R>) -> Result<Self, StreamingError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.addr)
                .await
                .map_err(|source| StreamingError::Bind {
                    addr: config.addr,
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StreamingError::Bind {
                addr: config.addr,
                source,
            })?;
        let base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let shared = Arc::new(Shared {
            cache: RequestCache::new(config.request_ttl, config.max_in_flight),
            runtime,
            config,
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        tracing::info!(%addr, "streaming server listening");
        Ok(Self {
            shared,
            addr,
            base_url,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// URLs handed out and not used or expired yet.
    pub fn pending(&self) -> usize {
        self.shared.cache.len()
    }

    /// CRI GetExec: validates the request and returns its single-use URL.
    pub fn get_exec(&self, req: &ExecRequest) -> Result<String, StreamingError> {
        req.validate()?;
        self.url("exec", CachedRequest::Exec(req.clone()))
    }

    /// CRI GetAttach.
    pub fn get_attach(&self, req: &AttachRequest) -> Result<String, StreamingError> {
        req.validate()?;
        self.url("attach", CachedRequest::Attach(req.clone()))
    }

    /// CRI GetPortForward.
    pub fn get_port_forward(&self, req: &PortForwardRequest) -> Result<String, StreamingError> {
        req.validate()?;
        self.url("portforward", CachedRequest::PortForward(req.clone()))
    }

    fn url(&self, method: &str, req: CachedRequest) -> Result<String, StreamingError> {
        let token = self.shared.cache.insert(req)?;
        Ok(format!("{}/{method}/{token}", self.base_url))
    }
}

impl<R: StreamingRuntime> Drop for StreamingServer<R> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop<R: StreamingRuntime>(listener: TcpListener, shared: Arc<Shared<R>>) {
    // Owned here so that aborting this task ends every session with it.
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                sessions.spawn(handle(sock, peer, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "streaming server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn refuse(sock: &mut TcpStream, r: &Refusal) {
    let extra: Vec<(&str, &str)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let _ = http::write_error(sock, r.code, &r.message, &extra).await;
}

async fn not_found(sock: &mut TcpStream) {
    let _ = http::write_error(sock, 404, "404 page not found", &[]).await;
}

async fn handle<R: StreamingRuntime>(
    mut sock: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared<R>>,
) {
    let (head, rest) = match http::read_head(&mut sock, shared.config.request_head_timeout).await {
        Ok(h) => h,
        Err(http::HeadError::Closed) => return,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "streaming server: bad request");
            let _ = http::write_error(&mut sock, 400, &format!("400 Bad Request: {e}"), &[]).await;
            return;
        }
    };
    let Some((method, token)) = route(&head) else {
        not_found(&mut sock).await;
        return;
    };
    if head.method != "GET" && head.method != "POST" {
        let _ = http::write_error(&mut sock, 405, "405: Method Not Allowed", &[]).await;
        return;
    }
    let cached = shared.cache.consume(token);
    tracing::debug!(%peer, method, found = cached.is_some(), "streaming server: request");
    let cfg = &shared.config;
    match (method, cached) {
        ("exec", Some(CachedRequest::Exec(r))) => {
            let ch = remotecommand::Channels {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            };
            let session = remotecommand::Session::Exec {
                container_id: r.container_id,
                cmd: r.cmd,
            };
            session_upgrade(sock, rest, &head, session, ch, &shared).await;
        }
        ("attach", Some(CachedRequest::Attach(r))) => {
            let ch = remotecommand::Channels {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            };
            let session = remotecommand::Session::Attach {
                container_id: r.container_id,
            };
            session_upgrade(sock, rest, &head, session, ch, &shared).await;
        }
        ("portforward", Some(CachedRequest::PortForward(r))) => {
            let Some(protocol) = upgrade(&mut sock, &head, portforward::PROTOCOLS).await else {
                return;
            };
            if http::write_switching(&mut sock, &protocol).await.is_err() {
                return;
            }
            portforward::serve(
                sock,
                rest,
                r.pod_sandbox_id,
                shared.runtime.clone(),
                cfg.stream_idle_timeout,
                cfg.stream_creation_timeout,
            )
            .await;
        }
        _ => not_found(&mut sock).await,
    }
}

async fn session_upgrade<R: StreamingRuntime>(
    mut sock: TcpStream,
    rest: bytes::Bytes,
    head: &RequestHead,
    session: remotecommand::Session,
    ch: remotecommand::Channels,
    shared: &Shared<R>,
) {
    let Some(protocol) = upgrade(&mut sock, head, remotecommand::PROTOCOLS).await else {
        return;
    };
    if http::write_switching(&mut sock, &protocol).await.is_err() {
        return;
    }
    let cfg = &shared.config;
    remotecommand::serve(
        sock,
        rest,
        &protocol,
        session,
        ch,
        shared.runtime.clone(),
        cfg.stream_idle_timeout,
        cfg.stream_creation_timeout,
    )
    .await;
}

/// Negotiates the subprotocol, then checks the upgrade headers, in kubelet's order.
async fn upgrade(sock: &mut TcpStream, head: &RequestHead, protocols: &[&str]) -> Option<String> {
    let checked =
        http::negotiate(head, protocols).and_then(|p| http::check_upgrade(head).map(|()| p));
    match checked {
        Ok(p) => Some(p),
        Err(r) => {
            tracing::debug!(code = r.code, message = %r.message, "streaming server: upgrade refused");
            refuse(sock, &r).await;
            None
        }
    }
}

/// `/exec/<token>` and the like; anything else is not a route.
fn route(head: &RequestHead) -> Option<(&'static str, &str)> {
    let rest = head.path.strip_prefix('/')?;
    let (method, token) = rest.split_once('/')?;
    if token.is_empty() || token.contains('/') {
        return None;
    }
    let method = match method {
        "exec" => "exec",
        "attach" => "attach",
        "portforward" => "portforward",
        _ => return None,
    };
    Some((method, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated_by_field() {
        assert!(StreamingConfig::default().validate().is_ok());
        let with = |u: &str| {
            StreamingConfig {
                base_url: Some(u.into()),
                ..Default::default()
            }
            .validate()
        };
        assert!(with("http://10.0.0.1:10010").is_ok());
        for bad in ["10.0.0.1:1", "http://", "http://h/prefix", "https://h/"] {
            let e = with(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("streaming server config: base_url:"),
                "{bad}: {e}"
            );
        }
        let e = StreamingConfig {
            max_in_flight: 0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "streaming server config: max_in_flight: must be at least 1"
        );
        let e = StreamingConfig {
            request_ttl: Duration::ZERO,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "streaming server config: request_ttl: must be greater than zero"
        );
    }
}
