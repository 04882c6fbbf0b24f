//! Any `:authority` on the CRI socket. grpc-core clients (python's grpcio, ...) dialling
//! `unix:///path` send the socket path, percent-encoded, as the authority
//! (`run%2Fberth%2Fberth.sock`). That is no URI authority, and h2 resets such a request
//! before any service sees it, where grpc-go (containerd) ignores the authority. On a
//! unix socket the authority names nothing, so [`AnyAuthority`] sits between the socket
//! and h2 on the way in: it passes every frame through except request header blocks,
//! which it decodes (HPACK) and writes again as plain literals without the authority h2
//! would refuse. Nothing else of a request changes, and the answers pass untouched.
//!
//! The re-encoded blocks never add to h2's dynamic table, so only this side tracks the
//! client's table; a block that does not decode is passed on as it came and h2 refuses
//! it as it would have anyway.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's initial value).
const MAX_FRAME: usize = 16_384;

/// A header block being gathered from HEADERS and CONTINUATION frames.
struct Block {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    /// The frames as they came, passed on if the block does not decode.
    raw: Vec<u8>,
}

/// The inbound side of one CRI connection, rewritten as the module doc says.
pub struct AnyAuthority<S> {
    inner: S,
    /// Bytes read but not yet framed.
    raw: BytesMut,
    /// Bytes ready for h2.
    out: BytesMut,
    preface_left: usize,
    block: Option<Block>,
    decoder: loona_hpack::Decoder<'static>,
    eof: bool,
}

impl<S> std::fmt::Debug for AnyAuthority<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnyAuthority")
            .field("buffered", &self.raw.len())
            .field("ready", &self.out.len())
            .finish_non_exhaustive()
    }
}

impl<S> AnyAuthority<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            preface_left: PREFACE_LEN,
            block: None,
            decoder: loona_hpack::Decoder::new(),
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Moves every complete frame from `raw` to `out`.
    fn frame(&mut self) {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.raw.len());
            self.out.extend_from_slice(&self.raw.split_to(n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return;
            }
        }
        while self.raw.len() >= FRAME_HEADER_LEN {
            let len = usize::from(self.raw[0]) << 16
                | usize::from(self.raw[1]) << 8
                | usize::from(self.raw[2]);
            if self.raw.len() < FRAME_HEADER_LEN + len {
                return;
            }
            let frame = self.raw.split_to(FRAME_HEADER_LEN + len);
            self.one(&frame);
        }
    }

    fn one(&mut self, frame: &[u8]) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER_LEN..];
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let Some((priority, fragment)) = headers_payload(flags, payload) else {
                    self.out.extend_from_slice(frame);
                    return;
                };
                self.block = Some(Block {
                    stream,
                    flags,
                    priority,
                    fragment: fragment.to_vec(),
                    raw: frame.to_vec(),
                });
            }
            (CONTINUATION, Some(b)) if b.stream == stream => {
                b.fragment.extend_from_slice(payload);
                b.raw.extend_from_slice(frame);
            }
            // Anything else (a frame h2 will find out of place included) passes as is.
            _ => {
                self.out.extend_from_slice(frame);
                return;
            }
        }
        if flags & END_HEADERS != 0
            && let Some(b) = self.block.take()
        {
            self.finish(b);
        }
    }

    fn finish(&mut self, b: Block) {
        let Ok(fields) = self.decoder.decode(&b.fragment) else {
            self.out.extend_from_slice(&b.raw);
            return;
        };
        let mut block = Vec::with_capacity(b.fragment.len() * 2);
        for (name, value) in &fields {
            if name == b":authority"
                && tonic::codegen::http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                continue;
            }
            literal(&mut block, name, value);
        }
        write_headers(
            &mut self.out,
            b.stream,
            b.flags & END_STREAM,
            b.priority,
            &block,
        );
    }
}

/// The priority bytes and header block fragment of a HEADERS payload, without padding;
/// `None` when the lengths do not fit.
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        priority = Some(<[u8; 5]>::try_from(p.get(..5)?).ok()?);
        p = &p[5..];
    }
    let end = p.len().checked_sub(pad)?;
    Some((priority, &p[..end]))
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 5.1).
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, with a literal name (RFC 7541 6.2.2).
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    integer(out, 0, 7, name.len());
    out.extend_from_slice(name);
    integer(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// `block` as a HEADERS frame and as many CONTINUATION frames as it needs.
fn write_headers(
    out: &mut BytesMut,
    stream: u32,
    end_stream: u8,
    priority: Option<[u8; 5]>,
    block: &[u8],
) {
    let first_room = MAX_FRAME - if priority.is_some() { 5 } else { 0 };
    let (first, mut rest) = block.split_at(block.len().min(first_room));
    let mut flags = end_stream | if priority.is_some() { PRIORITY } else { 0 };
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    let len = first.len() + if priority.is_some() { 5 } else { 0 };
    frame_header(out, len, HEADERS, flags, stream);
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = tail;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        frame_header(out, chunk.len(), CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

fn frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if !me.out.is_empty() {
                let n = me.out.len().min(buf.remaining());
                buf.put_slice(&me.out[..n]);
                me.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if me.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // A partial frame at EOF goes to h2 as it is, to be refused there.
                me.eof = true;
                let rest = me.raw.split();
                me.out.extend_from_slice(&rest);
                continue;
            }
            me.raw.extend_from_slice(rb.filled());
            me.frame();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AnyAuthority<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` through in pieces of `step` bytes; returns what h2 would read.
    fn through(input: &[u8], step: usize) -> Vec<u8> {
        let mut f = AnyAuthority::new(());
        for piece in input.chunks(step) {
            f.raw.extend_from_slice(piece);
            f.frame();
        }
        f.out.to_vec()
    }

    fn preface() -> Vec<u8> {
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()
    }

    fn headers_frame(stream: u32, flags: u8, block: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame_header(&mut out, block.len(), HEADERS, flags, stream);
        out.extend_from_slice(block);
        out.to_vec()
    }

    /// The header blocks in `bytes` (after the preface), decoded as h2 would.
    fn decoded(bytes: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut d = loona_hpack::Decoder::new();
        let mut b = &bytes[PREFACE_LEN..];
        let mut out = vec![];
        let mut block = vec![];
        while b.len() >= FRAME_HEADER_LEN {
            let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
            let (kind, flags) = (b[3], b[4]);
            let payload = &b[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
            if kind == HEADERS || kind == CONTINUATION {
                let (_, frag) = if kind == HEADERS {
                    headers_payload(flags, payload).expect("payload")
                } else {
                    (None, payload)
                };
                block.extend_from_slice(frag);
                if flags & END_HEADERS != 0 {
                    out.push(d.decode(&block).expect("h2 decodes it"));
                    block.clear();
                }
            }
            b = &b[FRAME_HEADER_LEN + len..];
        }
        out
    }

    fn request(authority: &str) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":path", b"/runtime.v1.RuntimeService/Version".to_vec()),
            (b":authority", authority.as_bytes().to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
        ]
    }

    #[test]
    fn a_socket_path_authority_is_dropped_and_the_rest_kept() {
        // The client's encoder indexes what it sends, as grpc-core's does, so the second
        // request refers to the first one's fields through the dynamic table.
        let mut enc = loona_hpack::Encoder::new();
        let fields = request("tmp%2Fbt%2Fberth.sock");
        let refs: Vec<(&[u8], &[u8])> = fields.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let first = enc.encode(refs.iter().copied());
        let second = enc.encode(refs.iter().copied());
        let settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
        let mut input = preface();
        input.extend_from_slice(&settings);
        input.extend(headers_frame(1, END_HEADERS, &first));
        input.extend(headers_frame(3, END_HEADERS | END_STREAM, &second));
        for step in [1, 7, 4096] {
            let out = through(&input, step);
            assert_eq!(
                &out[..PREFACE_LEN + 9],
                &input[..PREFACE_LEN + 9],
                "preface, SETTINGS"
            );
            let blocks = decoded(&out);
            assert_eq!(blocks.len(), 2);
            for b in &blocks {
                let names: Vec<&[u8]> = b.iter().map(|(n, _)| n.as_slice()).collect();
                assert_eq!(
                    names,
                    [&b":method"[..], b":scheme", b":path", b"content-type"],
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn a_valid_authority_and_large_blocks_pass() {
        let mut enc = loona_hpack::Encoder::new();
        let mut fields = request("localhost");
        fields.push((b"x-big", vec![b'a'; 40_000]));
        let block = enc.encode(fields.iter().map(|(n, v)| (*n, v.as_slice())));
        // Sent as HEADERS + CONTINUATION, padded and with priority, as a client may.
        let (a, b) = block.split_at(1000);
        let mut input = preface();
        let mut payload = vec![3u8];
        payload.extend_from_slice(&[0, 0, 0, 0, 16]);
        payload.extend_from_slice(a);
        payload.extend_from_slice(&[0, 0, 0]);
        let mut f = BytesMut::new();
        frame_header(&mut f, payload.len(), HEADERS, PADDED | PRIORITY, 1);
        f.extend_from_slice(&payload);
        frame_header(&mut f, b.len(), CONTINUATION, END_HEADERS, 1);
        f.extend_from_slice(b);
        input.extend_from_slice(&f);
        let out = through(&input, 333);
        let blocks = decoded(&out);
        assert_eq!(blocks.len(), 1);
        let got: Vec<(Vec<u8>, Vec<u8>)> = fields
            .iter()
            .map(|(n, v)| (n.to_vec(), v.clone()))
            .collect();
        assert_eq!(blocks[0], got);
        // Every frame h2 reads fits the default frame size.
        let mut b = &out[PREFACE_LEN..];
        while !b.is_empty() {
            let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
            assert!(len <= MAX_FRAME, "{len}");
            b = &b[FRAME_HEADER_LEN + len..];
        }
    }

    #[test]
    fn other_frames_and_undecodable_blocks_pass_unchanged() {
        let mut input = preface();
        let data = [0, 0, 3, 0, 1, 0, 0, 0, 1, b'a', b'b', b'c'];
        input.extend_from_slice(&data);
        // 0xff...: an index far past any table.
        let bad = headers_frame(5, END_HEADERS, &[0xff, 0xff, 0xff, 0x7f]);
        input.extend_from_slice(&bad);
        assert_eq!(through(&input, 5), input);
    }
}
