//! The rotating transport (kubelet pkg/kubelet/certificate/transport.go): the client
//! certificate is read from the certificate source at every TLS handshake, and after a
//! rotation every open connection is closed so the next request handshakes again with
//! the new certificate.
//!
//! Closing is done by the connection itself: each one watches the source's rotation
//! counter and reads end-of-stream once it moves, which makes hyper drop it from its
//! pool (idle) or fail the request on it (in flight, as upstream's closeAllConns does;
//! kube's watchers then resume with the new certificate).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use tokio::sync::watch;

use super::pair::CertPair;

/// The certificate the node presents now, shared by the TLS config and the manager.
#[derive(Debug)]
pub struct CertSource {
    current: RwLock<Option<Arc<CertPair>>>,
    rotations: watch::Sender<u64>,
}

impl CertSource {
    pub fn new(pair: Option<CertPair>) -> Self {
        Self {
            current: RwLock::new(pair.map(Arc::new)),
            rotations: watch::Sender::new(0),
        }
    }

    /// The pair in use, also when it has expired (the manager decides what to do then).
    pub fn pair(&self) -> Option<Arc<CertPair>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a new pair and tells every open connection to close.
    pub fn rotate(&self, pair: CertPair) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(pair));
        self.rotations.send_modify(|n| *n += 1);
    }

    /// A receiver that fires at the next rotation.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rotations.subscribe()
    }
}

impl ResolvesClientCert for CertSource {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        // Upstream's manager returns no certificate once it has expired: the request then
        // goes without one and the server answers 401 rather than a TLS alert.
        let pair = self.pair().filter(|p| !p.expired_at(SystemTime::now()))?;
        let key = pair.certified_key();
        key.key.choose_scheme(schemes).is_some().then_some(key)
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Wraps a connector so that its connections close at the next rotation.
#[derive(Debug, Clone)]
pub struct RotatingConnector<C> {
    inner: C,
    rotations: watch::Receiver<u64>,
}

impl<C> RotatingConnector<C> {
    pub fn new(inner: C, source: &CertSource) -> Self {
        Self {
            inner,
            rotations: source.subscribe(),
        }
    }
}

impl<C> tower::Service<http::Uri> for RotatingConnector<C>
where
    C: tower::Service<http::Uri>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
{
    type Response = ClosesOnRotation<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut rotations = self.rotations.clone();
        rotations.mark_unchanged();
        let connecting = self.inner.call(uri);
        Box::pin(async move { Ok(ClosesOnRotation::new(connecting.await?, rotations)) })
    }
}

/// A connection that reads end-of-stream once the certificate has rotated.
pub struct ClosesOnRotation<T> {
    io: T,
    rotated: Pin<Box<dyn Future<Output = ()> + Send>>,
    closed: bool,
}

impl<T> std::fmt::Debug for ClosesOnRotation<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosesOnRotation")
            .field("closed", &self.closed)
            .finish()
    }
}

impl<T> ClosesOnRotation<T> {
    fn new(io: T, mut rotations: watch::Receiver<u64>) -> Self {
        let rotated = Box::pin(async move {
            if rotations.changed().await.is_err() {
                // The source is gone: no rotation can come any more.
                std::future::pending::<()>().await;
            }
        });
        Self {
            io,
            rotated,
            closed: false,
        }
    }
}

impl<T: Read + Unpin> Read for ClosesOnRotation<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.closed && this.rotated.as_mut().poll(cx).is_ready() {
            this.closed = true;
        }
        if this.closed {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for ClosesOnRotation<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for ClosesOnRotation<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
