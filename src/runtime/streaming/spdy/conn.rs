//! The server side of one SPDY/3.1 connection: streams the client opens, their bytes, and
//! the connection's end.
//!
//! Two tasks own the socket. The reader decodes frames (through the one inbound zlib
//! context), answers pings, replies to each accepted SYN_STREAM and hands the stream to the
//! caller; the writer takes frames from one ordered queue and encodes them (through the one
//! outbound zlib context), so a stream's SYN_REPLY always precedes its data and its FIN
//! follows it. Like kubelet's spdystream, berth neither sends nor enforces flow-control
//! windows: kubectl sends no WINDOW_UPDATE, so a window would stall every stream at 64 KiB.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::PollSender;

use super::frame::{self, Frame, FrameHead, HeaderBlock};
use super::stream::{MAX_DATA_FRAME, RecvHalf, SendHalf, SpdyStream};
use super::zlib::{HeaderCompressor, HeaderDecompressor};

/// Frames queued for the writer before stream writers wait.
const OUT_QUEUE: usize = 128;
/// Data frames buffered per inbound stream before the reader waits for the consumer.
const IN_QUEUE: usize = 32;
/// How long closing waits for the last frames to go out, and then for the client to hang up.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Decides whether a stream the client opens is accepted; `Err` resets it with CANCEL.
pub type StreamFilter = Box<dyn Fn(&HeaderBlock) -> Result<(), String> + Send + Sync>;

pub(super) enum Out {
    Frame(Frame),
    Shutdown,
}

#[derive(Debug, Default)]
pub(super) struct Flags {
    pub(super) reset: AtomicBool,
    pub(super) local_fin: AtomicBool,
    pub(super) remote_fin: AtomicBool,
}

struct Entry {
    inbound: Option<mpsc::Sender<Bytes>>,
    flags: Arc<Flags>,
}

pub(super) struct Shared {
    streams: Mutex<HashMap<u32, Entry>>,
    pub(super) out: mpsc::Sender<Out>,
    last_stream_id: AtomicU32,
    going_away: AtomicBool,
}

impl Shared {
    pub(super) fn forget(&self, id: u32) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    pub(super) fn forget_if_closed(&self, id: u32, flags: &Flags) {
        if flags.local_fin.load(Ordering::SeqCst) && flags.remote_fin.load(Ordering::SeqCst) {
            self.streams
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }
}

/// Options of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnOptions {
    /// The connection closes when no frame arrives for this long (kubectl pings every 5 s).
    pub idle_timeout: Duration,
}

/// A live SPDY connection; [`Connection::close`] ends it the way kubelet does.
pub struct Connection {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field(
                "last_stream_id",
                &self.shared.last_stream_id.load(Ordering::SeqCst),
            )
            .finish()
    }
}

impl Connection {
    /// Runs the SPDY server side on `io`; `prefix` holds bytes already read past the HTTP
    /// upgrade request. Accepted streams arrive on the returned receiver, which closes when
    /// the client goes away.
    pub fn serve<T>(
        io: T,
        prefix: Bytes,
        opts: ConnOptions,
        filter: StreamFilter,
    ) -> (Self, mpsc::Receiver<SpdyStream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let shared = Arc::new(Shared {
            streams: Mutex::new(HashMap::new()),
            out: out_tx,
            last_stream_id: AtomicU32::new(0),
            going_away: AtomicBool::new(false),
        });
        let (accept_tx, accept_rx) = mpsc::channel(16);
        let writer = tokio::spawn(write_loop(wr, out_rx));
        let reader = tokio::spawn(read_loop(
            std::io::Cursor::new(prefix).chain(rd),
            shared.clone(),
            accept_tx,
            filter,
            opts,
        ));
        (
            Self {
                shared,
                reader,
                writer,
            },
            accept_rx,
        )
    }

    /// Resets every stream still open, sends GOAWAY, shuts the socket's write side and waits
    /// (bounded) for the client to close, so nothing queued is lost to a TCP reset.
    pub async fn close(self) {
        let open: Vec<u32> = {
            let mut streams = self
                .shared
                .streams
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let ids = streams.keys().copied().collect();
            for e in streams.values_mut() {
                e.flags.reset.store(true, Ordering::SeqCst);
                e.inbound = None;
            }
            streams.clear();
            ids
        };
        self.shared.going_away.store(true, Ordering::SeqCst);
        let out = self.shared.out.clone();
        let last = self.shared.last_stream_id.load(Ordering::SeqCst);
        let mut writer = self.writer;
        let flush = async {
            for id in open {
                let rst = Frame::RstStream {
                    stream_id: id,
                    status: frame::rst::CANCEL,
                };
                let _ = out.send(Out::Frame(rst)).await;
            }
            let bye = Frame::GoAway {
                last_good_stream_id: last,
                status: frame::goaway::OK,
            };
            let _ = out.send(Out::Frame(bye)).await;
            let _ = out.send(Out::Shutdown).await;
            let _ = (&mut writer).await;
        };
        // A client that stops reading must not hold the session forever.
        if tokio::time::timeout(CLOSE_WAIT, flush).await.is_err() {
            writer.abort();
        }
        let mut reader = self.reader;
        if tokio::time::timeout(CLOSE_WAIT, &mut reader).await.is_err() {
            reader.abort();
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::Receiver<Out>) {
    let mut wr = tokio::io::BufWriter::with_capacity(64 * 1024, wr);
    let mut z = match HeaderCompressor::new() {
        Ok(z) => z,
        Err(e) => {
            tracing::error!(error = %e, "spdy: cannot set up header compression");
            return;
        }
    };
    let mut buf = Vec::with_capacity(MAX_DATA_FRAME + 16);
    let mut next = rx.recv().await;
    while let Some(item) = next {
        match item {
            Out::Shutdown => {
                let _ = wr.flush().await;
                let _ = wr.shutdown().await;
                return;
            }
            Out::Frame(f) => {
                buf.clear();
                if let Err(e) = frame::encode(&f, &mut z, &mut buf) {
                    tracing::warn!(error = %e, "spdy: dropping a frame that cannot be encoded");
                } else if let Err(e) = wr.write_all(&buf).await {
                    tracing::debug!(error = %e, "spdy: write failed; connection is gone");
                    return;
                }
            }
        }
        next = match rx.try_recv() {
            Ok(item) => Some(item),
            Err(mpsc::error::TryRecvError::Empty) => {
                if wr.flush().await.is_err() {
                    return;
                }
                rx.recv().await
            }
            Err(mpsc::error::TryRecvError::Disconnected) => None,
        };
    }
    let _ = wr.flush().await;
}

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    z: &mut HeaderDecompressor,
    payload: &mut Vec<u8>,
) -> Result<Option<Frame>, String> {
    let mut head = [0u8; 8];
    match rd.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let head = FrameHead::parse(head);
    payload.clear();
    payload.resize(head.payload_len(), 0);
    rd.read_exact(payload)
        .await
        .map_err(|e| format!("reading a {}-byte frame payload: {e}", payload.len()))?;
    frame::decode(head, payload, z)
        .map(Some)
        .map_err(|e| e.to_string())
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    shared: Arc<Shared>,
    accept: mpsc::Sender<SpdyStream>,
    filter: StreamFilter,
    opts: ConnOptions,
) {
    let mut z = HeaderDecompressor::new();
    let mut payload = Vec::new();
    loop {
        let next = match tokio::time::timeout(
            opts.idle_timeout,
            read_frame(&mut rd, &mut z, &mut payload),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::info!(timeout = ?opts.idle_timeout, "spdy: connection idle, closing");
                break;
            }
        };
        let f = match next {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "spdy: protocol error from client, going away");
                let last = shared.last_stream_id.load(Ordering::SeqCst);
                let _ = shared
                    .out
                    .send(Out::Frame(Frame::GoAway {
                        last_good_stream_id: last,
                        status: frame::goaway::PROTOCOL_ERROR,
                    }))
                    .await;
                break;
            }
        };
        match f {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                on_syn_stream(&shared, &accept, &filter, stream_id, flags, headers).await;
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let (tx, fl) = {
                    let streams = shared.streams.lock().unwrap_or_else(|p| p.into_inner());
                    match streams.get(&stream_id) {
                        Some(e) => (e.inbound.clone(), Some(e.flags.clone())),
                        None => (None, None),
                    }
                };
                if let (Some(tx), false) = (tx, data.is_empty()) {
                    // The consumer may have dropped its half; the data has nowhere to go then.
                    let _ = tx.send(data).await;
                }
                if flags & frame::FLAG_FIN != 0
                    && let Some(fl) = fl
                {
                    remote_finished(&shared, stream_id, &fl);
                }
            }
            Frame::RstStream { stream_id, status } => {
                tracing::debug!(stream_id, status, "spdy: stream reset by client");
                let removed = shared
                    .streams
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&stream_id);
                if let Some(e) = removed {
                    e.flags.reset.store(true, Ordering::SeqCst);
                }
            }
            Frame::Ping { id } => {
                // Client pings are odd; an even id would be the answer to one of ours.
                if id % 2 == 1
                    && shared
                        .out
                        .send(Out::Frame(Frame::Ping { id }))
                        .await
                        .is_err()
                {
                    break;
                }
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                tracing::debug!(last_good_stream_id, status, "spdy: client going away");
                shared.going_away.store(true, Ordering::SeqCst);
            }
            Frame::Headers {
                stream_id, flags, ..
            } => {
                if flags & frame::FLAG_FIN != 0 {
                    let fl = shared
                        .streams
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&stream_id)
                        .map(|e| e.flags.clone());
                    if let Some(fl) = fl {
                        remote_finished(&shared, stream_id, &fl);
                    }
                }
            }
            Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::SynReply { .. }
            | Frame::Unknown { .. } => {
                tracing::trace!(frame = ?f, "spdy: ignoring frame");
            }
        }
    }
    // The client is gone: readers see EOF, writers see a reset.
    let mut streams = shared.streams.lock().unwrap_or_else(|p| p.into_inner());
    for e in streams.values() {
        e.flags.reset.store(true, Ordering::SeqCst);
    }
    streams.clear();
}

fn remote_finished(shared: &Shared, id: u32, fl: &Flags) {
    fl.remote_fin.store(true, Ordering::SeqCst);
    if let Some(e) = shared
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&id)
    {
        e.inbound = None;
    }
    shared.forget_if_closed(id, fl);
}

async fn on_syn_stream(
    shared: &Arc<Shared>,
    accept: &mpsc::Sender<SpdyStream>,
    filter: &StreamFilter,
    stream_id: u32,
    flags: u8,
    headers: HeaderBlock,
) {
    let reset = |status| Out::Frame(Frame::RstStream { stream_id, status });
    let last = shared.last_stream_id.load(Ordering::SeqCst);
    if stream_id.is_multiple_of(2) || stream_id <= last {
        tracing::warn!(
            stream_id,
            last,
            "spdy: client opened a stream with an invalid id"
        );
        let _ = shared.out.send(reset(frame::rst::PROTOCOL_ERROR)).await;
        return;
    }
    shared.last_stream_id.store(stream_id, Ordering::SeqCst);
    if shared.going_away.load(Ordering::SeqCst) {
        let _ = shared.out.send(reset(frame::rst::REFUSED_STREAM)).await;
        return;
    }
    if let Err(why) = filter(&headers) {
        tracing::warn!(stream_id, reason = %why, "spdy: stream rejected");
        let _ = shared.out.send(reset(frame::rst::CANCEL)).await;
        return;
    }
    let flags_state = Arc::new(Flags::default());
    let (in_tx, in_rx) = mpsc::channel(IN_QUEUE);
    shared
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            stream_id,
            Entry {
                inbound: Some(in_tx),
                flags: flags_state.clone(),
            },
        );
    let reply = Frame::SynReply {
        stream_id,
        flags: 0,
        headers: HeaderBlock::default(),
    };
    if shared.out.send(Out::Frame(reply)).await.is_err() {
        return;
    }
    if flags & frame::FLAG_FIN != 0 {
        remote_finished(shared, stream_id, &flags_state);
    }
    let stream = SpdyStream {
        id: stream_id,
        headers,
        recv: RecvHalf {
            rx: in_rx,
            pending: Bytes::new(),
        },
        send: SendHalf {
            id: stream_id,
            tx: PollSender::new(shared.out.clone()),
            flags: flags_state,
            shared: shared.clone(),
            fin_sent: false,
        },
    };
    let _ = accept.send(stream).await;
}
