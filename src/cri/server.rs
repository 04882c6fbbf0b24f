//! The CRI socket and the gRPC server on it. The socket is for root only: its directory
//! is created 0700, the socket is bound 0600 (under a umask, so it is never reachable
//! wider even for an instant), and a connection from a peer whose uid differs from the
//! server's is dropped. A socket left by a crashed server is replaced; one a live server
//! answers on is not. The socket is removed on shutdown, if it is still ours. Any
//! `:authority` a client sends is taken ([`super::authority`]).

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cri_proto::{ImageServiceServer, RuntimeServiceServer};
use nix::sys::stat::{Mode, umask};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use super::api::{ImageApi, RuntimeApi};
use super::authority::AnyAuthority;
use super::grpc::{ImageGrpc, RuntimeGrpc};
use super::limits::{MAX_MESSAGE_BYTES, TooLargeLayer};

/// Where berth serves the CRI by default (containerd's is /run/containerd/containerd.sock).
pub const DEFAULT_LISTEN: &str = "unix:///run/berth/berth.sock";

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--listen {value:?}: {reason}")]
    BadListen { value: String, reason: &'static str },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("socket {path} is in use: a server answers on it (stop it first)")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotSocket { path: PathBuf },
    #[error("gRPC server on {path}: {source}")]
    Transport {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServeError {
    let path = path.to_path_buf();
    move |source| ServeError::Io { op, path, source }
}

/// The socket path a `--listen` value names: `unix:///abs/path` (the kubelet's form) or
/// an absolute path.
pub fn socket_path(listen: &str) -> Result<PathBuf, ServeError> {
    let bad = |reason| ServeError::BadListen {
        value: listen.to_string(),
        reason,
    };
    let p = match listen.split_once("://") {
        Some(("unix", p)) => p,
        Some(_) => return Err(bad("only unix:// endpoints are served")),
        None => listen,
    };
    let p = Path::new(p);
    if !p.is_absolute() || p.file_name().is_none() {
        return Err(bad("expected unix:///absolute/path/to/socket"));
    }
    // sun_path holds 108 bytes with its terminating NUL.
    if p.as_os_str().len() > 107 {
        return Err(bad("socket paths are limited to 107 bytes"));
    }
    Ok(p.to_path_buf())
}

/// A bound CRI socket; dropping it removes the socket file if it is still the one bound.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    ino: u64,
}

impl BoundSocket {
    /// Binds `path` for root only. Call before starting threads: the umask that makes
    /// the socket 0600 from its first instant is process-wide.
    pub fn bind(path: &Path) -> Result<Self, ServeError> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create socket directory", dir))?;
        }
        replace_stale(path)?;
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = std::os::unix::net::UnixListener::bind(path);
        umask(old);
        let listener = bound.map_err(io("bind", path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("chmod", path))?;
        let ino = std::fs::symlink_metadata(path)
            .map_err(io("stat", path))?
            .ino();
        Ok(Self {
            listener: Some(listener),
            path: path.to_path_buf(),
            ino,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .map(|m| m.ino() == self.ino)
            .unwrap_or(false);
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), "remove the CRI socket: {e}");
        }
    }
}

/// Removes a socket nobody answers on (left by a crash); refuses a live one or a file
/// that is not a socket.
fn replace_stale(path: &Path) -> Result<(), ServeError> {
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("stat", path)(e)),
    };
    if !m.file_type().is_socket() {
        return Err(ServeError::NotSocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ServeError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) => {
            tracing::info!(path = %path.display(), "replacing a stale CRI socket ({e})");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io("remove stale socket", path)(e))
                }
                _ => Ok(()),
            }
        }
    }
}

/// Serves both CRI services on `socket` until `shutdown` completes, then lets running
/// calls finish for up to `grace` before returning. The socket is removed on return.
pub async fn serve(
    mut socket: BoundSocket,
    images: Arc<dyn ImageApi>,
    runtime: Arc<dyn RuntimeApi>,
    pods: Arc<dyn super::api::PodApi>,
    streams: Arc<dyn super::api::StreamApi>,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) -> Result<(), ServeError> {
    let path = socket.path.clone();
    let std_listener = socket
        .listener
        .take()
        .ok_or_else(|| io("listen", &path)(std::io::ErrorKind::NotConnected.into()))?;
    std_listener
        .set_nonblocking(true)
        .map_err(io("set non-blocking", &path))?;
    let listener = tokio::net::UnixListener::from_std(std_listener).map_err(io("listen", &path))?;
    let me = nix::unistd::geteuid().as_raw();
    let socket_path = Arc::new(path.clone());
    let incoming = UnixListenerStream::new(listener)
        .then(move |conn| admit(conn, me, socket_path.clone()))
        .filter_map(|conn| conn.map(|s| Ok::<_, std::io::Error>(AnyAuthority::new(s))));
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .layer(TooLargeLayer)
        .add_service(
            RuntimeServiceServer::new(RuntimeGrpc(runtime, pods, streams))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ImageServiceServer::new(ImageGrpc(images))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            let _ = stopping_tx.send(());
        });
    tracing::info!(socket = %path.display(), "serving the CRI");
    tokio::pin!(server);
    let overdue = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        r = &mut server => r.map_err(|source| ServeError::Transport { path: path.clone(), source }),
        () = overdue => {
            tracing::warn!(?grace, "CRI calls still running after the grace period; stopping anyway");
            Ok(())
        }
    };
    drop(socket);
    tracing::info!(socket = %path.display(), "CRI server stopped");
    result
}

/// A connection the server takes: from a peer with the server's own uid. A failed
/// accept (out of file descriptors, say) fails again at once until it clears, so it
/// pauses the accept loop briefly rather than let it spin.
async fn admit(
    conn: std::io::Result<tokio::net::UnixStream>,
    me: u32,
    socket: Arc<PathBuf>,
) -> Option<tokio::net::UnixStream> {
    match conn.and_then(|s| s.peer_cred().map(|c| (s, c))) {
        Ok((stream, cred)) if cred.uid() == me => Some(stream),
        Ok((_, cred)) => {
            tracing::warn!(
                uid = cred.uid(),
                pid = ?cred.pid(),
                "refused a CRI connection from another user"
            );
            None
        }
        Err(e) => {
            tracing::warn!(socket = %socket.display(), "accept: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values_parse() {
        assert_eq!(
            socket_path("unix:///run/berth/berth.sock").expect("unix url"),
            PathBuf::from("/run/berth/berth.sock")
        );
        assert_eq!(
            socket_path("/tmp/x.sock").expect("path"),
            PathBuf::from("/tmp/x.sock")
        );
        for bad in ["tcp://1.2.3.4:5", "unix://relative", "x.sock", "unix:///"] {
            let e = socket_path(bad).expect_err(bad);
            assert!(e.to_string().contains("--listen"), "{e}");
        }
    }
}
