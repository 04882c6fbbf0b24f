//! What the streaming server asks of the runtime: run a command in a container, attach to
//! one, or carry one port-forward connection into a pod sandbox's network namespace.
//!
//! The server owns the protocol (SPDY streams, status frames, timeouts); the runtime owns
//! processes and namespaces. It sees plain async byte streams only.

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A terminal size as kubectl sends it on the resize stream (`{"Width":..,"Height":..}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Bytes from the client (the process's stdin).
pub type StreamIn = Box<dyn AsyncRead + Send + Unpin>;
/// Bytes to the client (the process's stdout or stderr). Shut it down, or drop it, to send EOF.
pub type StreamOut = Box<dyn AsyncWrite + Send + Unpin>;

/// Both directions of one forwarded connection.
pub trait DuplexStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> DuplexStream for T {}

/// The streams of one exec or attach session; each is present when the request asked for it.
#[derive(Default)]
pub struct SessionIo {
    pub stdin: Option<StreamIn>,
    pub stdout: Option<StreamOut>,
    pub stderr: Option<StreamOut>,
    /// Terminal sizes, first the client's initial size, then each change (tty sessions, v3+).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl std::fmt::Debug for SessionIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// Why the runtime could not run or finish a session (not a non-zero exit: that is a result).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

/// The runtime side of the streaming server.
///
/// Each method returns when the session is over and every byte it produced has been written
/// to the output streams (join any copy tasks first): the server sends the final status as
/// soon as the future completes.
pub trait StreamingRuntime: Send + Sync + 'static {
    /// Runs `cmd` in the container and returns its exit code (128+signal when killed).
    fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        io: SessionIo,
    ) -> impl Future<Output = Result<i32, RuntimeError>> + Send;

    /// Connects the streams to the container's main process until it exits or the client
    /// leaves.
    fn attach(
        &self,
        container_id: &str,
        tty: bool,
        io: SessionIo,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Copies bytes between `stream` and `port` on the sandbox's loopback, both ways, until
    /// both directions are done. EPIPE and ECONNRESET from the target keep the
    /// port-forward session open; any other error closes it.
    fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
        stream: Box<dyn DuplexStream>,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
}
