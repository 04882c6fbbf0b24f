//! The two directions of one SPDY stream as tokio byte streams.
//!
//! Inbound data arrives from the connection's reader through a small queue (EOF on the
//! client's FIN or RST); outbound writes become DATA frames on the connection's one ordered
//! queue, and shutdown or drop sends the FIN.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::conn::{Flags, Out, Shared};
use super::frame::{self, Frame, HeaderBlock};

/// Data frames berth sends carry at most this many bytes.
pub(super) const MAX_DATA_FRAME: usize = 32 * 1024;

/// One stream the client opened: its headers, and both directions of bytes.
#[derive(Debug)]
pub struct SpdyStream {
    pub(super) id: u32,
    pub(super) headers: HeaderBlock,
    pub(super) recv: RecvHalf,
    pub(super) send: SendHalf,
}

impl SpdyStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn headers(&self) -> &HeaderBlock {
        &self.headers
    }

    pub fn into_split(self) -> (RecvHalf, SendHalf) {
        (self.recv, self.send)
    }
}

/// The client-to-server direction of a stream; EOF when the client half-closes or resets.
#[derive(Debug)]
pub struct RecvHalf {
    pub(super) rx: mpsc::Receiver<Bytes>,
    pub(super) pending: Bytes,
}

impl AsyncRead for RecvHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(b) => self.pending = b,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// The server-to-client direction of a stream. Shutdown (or drop) sends the FIN.
pub struct SendHalf {
    pub(super) id: u32,
    pub(super) tx: PollSender<Out>,
    pub(super) flags: Arc<Flags>,
    pub(super) shared: Arc<Shared>,
    pub(super) fin_sent: bool,
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHalf")
            .field("id", &self.id)
            .field("fin_sent", &self.fin_sent)
            .finish()
    }
}

fn gone(id: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("spdy stream {id} was reset or its connection closed"),
    )
}

impl SendHalf {
    /// Sends RST_STREAM(CANCEL): neither side may use the stream any more.
    pub async fn reset(mut self) {
        self.fin_sent = true;
        self.flags.reset.store(true, Ordering::SeqCst);
        self.shared.forget(self.id);
        let _ = self
            .shared
            .out
            .send(Out::Frame(Frame::RstStream {
                stream_id: self.id,
                status: frame::rst::CANCEL,
            }))
            .await;
    }

    fn fin_frame(&self) -> Out {
        Out::Frame(Frame::Data {
            stream_id: self.id,
            flags: frame::FLAG_FIN,
            data: Bytes::new(),
        })
    }

    fn after_fin(&mut self) {
        self.fin_sent = true;
        self.flags.local_fin.store(true, Ordering::SeqCst);
        self.shared.forget_if_closed(self.id, &self.flags);
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        if self.fin_sent || self.flags.reset.load(Ordering::SeqCst) {
            return Poll::Ready(Err(gone(id)));
        }
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(gone(id)));
        }
        let n = data.len().min(MAX_DATA_FRAME);
        let f = Frame::Data {
            stream_id: id,
            flags: 0,
            data: Bytes::copy_from_slice(&data[..n]),
        };
        if self.tx.send_item(Out::Frame(f)).is_err() {
            return Poll::Ready(Err(gone(id)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The writer task flushes the socket whenever its queue runs empty.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fin_sent || self.flags.reset.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Ok(()));
        }
        let fin = self.fin_frame();
        let _ = self.tx.send_item(fin);
        self.after_fin();
        Poll::Ready(Ok(()))
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        if self.fin_sent || self.flags.reset.load(Ordering::SeqCst) {
            return;
        }
        let fin = self.fin_frame();
        self.after_fin();
        if let Err(mpsc::error::TrySendError::Full(fin)) = self.shared.out.try_send(fin) {
            let out = self.shared.out.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = out.send(fin).await;
                });
            }
        }
    }
}

impl AsyncRead for SpdyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for SpdyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}
