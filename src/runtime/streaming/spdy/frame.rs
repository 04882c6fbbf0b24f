//! SPDY/3.1 frames as plain data, and their wire encoding.
//!
//! A frame is an 8-byte header and a payload of at most 2^24-1 bytes. Data frames carry a
//! 31-bit stream id, flags and bytes; control frames carry the version (3), a type, flags and
//! a type-specific payload. SYN_STREAM, SYN_REPLY and HEADERS carry a name/value header block
//! that goes through the connection's shared zlib context, so [`encode`] and [`decode`] take
//! it as a parameter and must be called in wire order.

use super::zlib::{HeaderCompressor, HeaderDecompressor, ZlibError};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The largest payload a frame's 24-bit length can describe.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes (SPDY/3 section 2.4.2).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const STREAM_IN_USE: u32 = 8;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
}

/// A name/value header block: lowercase names, each with its value (several values of one
/// name are joined by NUL bytes on the wire and kept that way here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock(pub Vec<(String, String)>);

impl HeaderBlock {
    /// The first value of `name` (case-insensitive), as Go's `http.Header.Get` returns it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        flags: u8,
        data: bytes::Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        flags: u8,
        headers: HeaderBlock,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: HeaderBlock,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: HeaderBlock,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type SPDY/3.1 does not define; the spec says to ignore it.
    Unknown {
        frame_type: u16,
        flags: u8,
        len: usize,
    },
}

/// Why bytes from the peer are not a valid frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("SPDY control frame version {0}, only 3 is spoken")]
    Version(u16),
    #[error("SPDY {frame} frame: {reason}")]
    Invalid { frame: &'static str, reason: String },
    #[error(transparent)]
    Zlib(#[from] ZlibError),
}

fn invalid(frame: &'static str, reason: impl Into<String>) -> FrameError {
    FrameError::Invalid {
        frame,
        reason: reason.into(),
    }
}

/// The fixed 8-byte header every frame starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHead {
    Data {
        stream_id: u32,
        flags: u8,
        len: usize,
    },
    Control {
        version: u16,
        frame_type: u16,
        flags: u8,
        len: usize,
    },
}

impl FrameHead {
    pub fn parse(b: [u8; 8]) -> Self {
        let first = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let flags = b[4];
        let len = (usize::from(b[5]) << 16) | (usize::from(b[6]) << 8) | usize::from(b[7]);
        if first & 0x8000_0000 != 0 {
            FrameHead::Control {
                version: ((first >> 16) & 0x7fff) as u16,
                frame_type: (first & 0xffff) as u16,
                flags,
                len,
            }
        } else {
            FrameHead::Data {
                stream_id: first,
                flags,
                len,
            }
        }
    }

    pub fn payload_len(&self) -> usize {
        match *self {
            FrameHead::Data { len, .. } | FrameHead::Control { len, .. } => len,
        }
    }
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn need(frame: &'static str, p: &[u8], n: usize) -> Result<(), FrameError> {
    if p.len() < n {
        return Err(invalid(
            frame,
            format!("payload of {} bytes, at least {n} needed", p.len()),
        ));
    }
    Ok(())
}

fn exact(frame: &'static str, p: &[u8], n: usize) -> Result<(), FrameError> {
    if p.len() != n {
        return Err(invalid(
            frame,
            format!("payload of {} bytes, {n} expected", p.len()),
        ));
    }
    Ok(())
}

fn nonzero(frame: &'static str, stream_id: u32) -> Result<u32, FrameError> {
    if stream_id == 0 {
        return Err(invalid(frame, "stream id 0"));
    }
    Ok(stream_id)
}

/// Decodes a frame from its head and payload, inflating header blocks with `z`.
pub fn decode(head: FrameHead, p: &[u8], z: &mut HeaderDecompressor) -> Result<Frame, FrameError> {
    let (version, frame_type, flags) = match head {
        FrameHead::Data {
            stream_id, flags, ..
        } => {
            return Ok(Frame::Data {
                stream_id: nonzero("DATA", stream_id)?,
                flags,
                data: bytes::Bytes::copy_from_slice(p),
            });
        }
        FrameHead::Control {
            version,
            frame_type,
            flags,
            ..
        } => (version, frame_type, flags),
    };
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let frame = match frame_type {
        TYPE_SYN_STREAM => {
            need("SYN_STREAM", p, 10)?;
            let stream_id = nonzero("SYN_STREAM", be32(p, 0) & 0x7fff_ffff)?;
            Frame::SynStream {
                stream_id,
                associated_to: be32(p, 4) & 0x7fff_ffff,
                priority: p[8] >> 5,
                slot: p[9],
                flags,
                headers: parse_block("SYN_STREAM", &z.decompress(&p[10..])?)?,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let name = if frame_type == TYPE_SYN_REPLY {
                "SYN_REPLY"
            } else {
                "HEADERS"
            };
            need(name, p, 4)?;
            let stream_id = nonzero(name, be32(p, 0) & 0x7fff_ffff)?;
            let headers = parse_block(name, &z.decompress(&p[4..])?)?;
            if frame_type == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    flags,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    headers,
                }
            }
        }
        TYPE_RST_STREAM => {
            exact("RST_STREAM", p, 8)?;
            let status = be32(p, 4);
            if status == 0 {
                return Err(invalid("RST_STREAM", "status 0"));
            }
            Frame::RstStream {
                stream_id: nonzero("RST_STREAM", be32(p, 0) & 0x7fff_ffff)?,
                status,
            }
        }
        TYPE_SETTINGS => {
            need("SETTINGS", p, 4)?;
            let n = be32(p, 0) as usize;
            if p.len() != 4 + n.saturating_mul(8) {
                return Err(invalid(
                    "SETTINGS",
                    format!("{n} entries in a {}-byte payload", p.len()),
                ));
            }
            let entries = (0..n)
                .map(|i| {
                    let w = be32(p, 4 + i * 8);
                    Setting {
                        flags: (w >> 24) as u8,
                        id: w & 0x00ff_ffff,
                        value: be32(p, 8 + i * 8),
                    }
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        TYPE_PING => {
            exact("PING", p, 4)?;
            Frame::Ping { id: be32(p, 0) }
        }
        TYPE_GOAWAY => {
            exact("GOAWAY", p, 8)?;
            Frame::GoAway {
                last_good_stream_id: be32(p, 0) & 0x7fff_ffff,
                status: be32(p, 4),
            }
        }
        TYPE_WINDOW_UPDATE => {
            exact("WINDOW_UPDATE", p, 8)?;
            Frame::WindowUpdate {
                stream_id: be32(p, 0) & 0x7fff_ffff,
                delta: be32(p, 4) & 0x7fff_ffff,
            }
        }
        other => Frame::Unknown {
            frame_type: other,
            flags,
            len: p.len(),
        },
    };
    Ok(frame)
}

/// Parses an inflated name/value block: a count, then length-prefixed names and values.
pub fn parse_block(frame: &'static str, b: &[u8]) -> Result<HeaderBlock, FrameError> {
    need(frame, b, 4)?;
    let count = be32(b, 0) as usize;
    // Each pair takes at least 8 bytes, which bounds the count before anything is allocated.
    if count > (b.len() - 4) / 8 {
        return Err(invalid(
            frame,
            format!("header block claims {count} pairs in {} bytes", b.len()),
        ));
    }
    let mut at = 4;
    let mut take = |what: &str| -> Result<String, FrameError> {
        if b.len() < at + 4 {
            return Err(invalid(
                frame,
                format!("header block truncated in a {what} length"),
            ));
        }
        let len = be32(b, at) as usize;
        at += 4;
        if b.len() - at < len {
            return Err(invalid(
                frame,
                format!("header {what} of {len} bytes runs past the block"),
            ));
        }
        let s = std::str::from_utf8(&b[at..at + len])
            .map_err(|_| invalid(frame, format!("header {what} is not UTF-8")))?
            .to_string();
        at += len;
        Ok(s)
    };
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take("name")?;
        if name.is_empty() || name.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(
                frame,
                format!("header name {name:?} is empty or not lowercase"),
            ));
        }
        let value = take("value")?;
        if pairs.iter().any(|(n, _): &(String, String)| *n == name) {
            return Err(invalid(frame, format!("header {name:?} appears twice")));
        }
        pairs.push((name, value));
    }
    if at != b.len() {
        return Err(invalid(
            frame,
            format!("{} bytes after the last header", b.len() - at),
        ));
    }
    Ok(HeaderBlock(pairs))
}

/// Serialises a name/value block (uncompressed).
pub fn write_block(h: &HeaderBlock) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(h.0.len() as u32).to_be_bytes());
    for (n, v) in &h.0 {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n.to_ascii_lowercase().as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn control_head(out: &mut Vec<u8>, frame_type: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(&((u32::from(flags) << 24) | len as u32).to_be_bytes());
}

/// Appends the wire form of `frame` to `out`, compressing header blocks with `z`.
pub fn encode(
    frame: &Frame,
    z: &mut HeaderCompressor,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let too_long = |name: &'static str, len: usize| {
        if len > MAX_PAYLOAD {
            Err(invalid(
                name,
                format!("payload of {len} bytes exceeds {MAX_PAYLOAD}"),
            ))
        } else {
            Ok(())
        }
    };
    match frame {
        Frame::Data {
            stream_id,
            flags,
            data,
        } => {
            too_long("DATA", data.len())?;
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&((u32::from(*flags) << 24) | data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        }
        Frame::SynStream {
            stream_id,
            associated_to,
            priority,
            slot,
            flags,
            headers,
        } => {
            let block = z.compress(&write_block(headers))?;
            too_long("SYN_STREAM", block.len() + 10)?;
            control_head(out, TYPE_SYN_STREAM, *flags, block.len() + 10);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
            out.push(priority << 5);
            out.push(*slot);
            out.extend_from_slice(&block);
        }
        Frame::SynReply {
            stream_id,
            flags,
            headers,
        }
        | Frame::Headers {
            stream_id,
            flags,
            headers,
        } => {
            let frame_type = if matches!(frame, Frame::SynReply { .. }) {
                TYPE_SYN_REPLY
            } else {
                TYPE_HEADERS
            };
            let block = z.compress(&write_block(headers))?;
            too_long("SYN_REPLY", block.len() + 4)?;
            control_head(out, frame_type, *flags, block.len() + 4);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&block);
        }
        Frame::RstStream { stream_id, status } => {
            control_head(out, TYPE_RST_STREAM, 0, 8);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        Frame::Settings { flags, entries } => {
            control_head(out, TYPE_SETTINGS, *flags, 4 + entries.len() * 8);
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for e in entries {
                out.extend_from_slice(
                    &((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff)).to_be_bytes(),
                );
                out.extend_from_slice(&e.value.to_be_bytes());
            }
        }
        Frame::Ping { id } => {
            control_head(out, TYPE_PING, 0, 4);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Frame::GoAway {
            last_good_stream_id,
            status,
        } => {
            control_head(out, TYPE_GOAWAY, 0, 8);
            out.extend_from_slice(&(last_good_stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        Frame::WindowUpdate { stream_id, delta } => {
            control_head(out, TYPE_WINDOW_UPDATE, 0, 8);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
        }
        Frame::Unknown { frame_type, .. } => {
            return Err(invalid(
                "unknown",
                format!("berth does not send control frames of type {frame_type}"),
            ));
        }
    }
    Ok(())
}
