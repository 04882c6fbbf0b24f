//! The SPDY layer against known bytes from kubectl, frame round-trips through shared zlib
//! contexts, and a server connection driven by a client built from the same codec.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{self, Frame, FrameHead, HeaderBlock, Setting};
use super::zlib::{HeaderCompressor, HeaderDecompressor};
use super::{ConnOptions, Connection};

/// The first frame kubectl v1.37.1 sent on a `kubectl exec -i` SPDY connection: SYN_STREAM 1
/// (the error stream), its header block deflated with the SPDY/3 dictionary (DICTID
/// e3c6a7c2 after the zlib header 78 f9) and sync-flushed (00 00 ff ff).
const KUBECTL_SYN_STREAM: [u8; 49] = [
    0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x29, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x62, 0x60, 0x60, 0x60, 0x04, 0xa7, 0xb3, 0x92,
    0xa2, 0xd4, 0xc4, 0x5c, 0x68, 0x51, 0xc2, 0x9a, 0x0a, 0x0a, 0x68, 0x00, 0x00, 0x00, 0x00, 0xff,
    0xff,
];

fn split(bytes: &[u8]) -> (FrameHead, &[u8]) {
    let head = FrameHead::parse(bytes[..8].try_into().unwrap());
    assert_eq!(head.payload_len(), bytes.len() - 8);
    (head, &bytes[8..])
}

fn block(pairs: &[(&str, &str)]) -> HeaderBlock {
    HeaderBlock(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn kubectls_syn_stream_decodes() {
    let (head, payload) = split(&KUBECTL_SYN_STREAM);
    let f = frame::decode(head, payload, &mut HeaderDecompressor::new()).unwrap();
    assert_eq!(
        f,
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags: 0,
            headers: block(&[("streamtype", "error")]),
        }
    );
}

#[test]
fn a_wrong_dictionary_is_named() {
    // Same frame, DICTID altered: the peer primed its zlib stream with something else.
    let mut bytes = KUBECTL_SYN_STREAM;
    bytes[23] ^= 0xff;
    let (head, payload) = split(&bytes);
    let err = frame::decode(head, payload, &mut HeaderDecompressor::new()).unwrap_err();
    assert!(
        err.to_string().contains("names zlib dictionary 0xe3c6a73d"),
        "{err}"
    );
}

#[test]
fn frames_round_trip_through_one_zlib_context_per_direction() {
    let frames = vec![
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 3,
            slot: 0,
            flags: frame::FLAG_FIN,
            headers: block(&[("streamtype", "stdin"), ("port", "80\u{0}81")]),
        },
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: HeaderBlock::default(),
        },
        Frame::Headers {
            stream_id: 3,
            flags: frame::FLAG_FIN,
            headers: block(&[("streamtype", "stdout")]),
        },
        Frame::SynStream {
            stream_id: 5,
            associated_to: 1,
            priority: 7,
            slot: 2,
            flags: 0,
            headers: block(&[("streamtype", "stdin"), ("requestid", "0")]),
        },
        Frame::Data {
            stream_id: 5,
            flags: 0,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 5,
            flags: frame::FLAG_FIN,
            data: Bytes::new(),
        },
        Frame::RstStream {
            stream_id: 7,
            status: frame::rst::CANCEL,
        },
        Frame::Settings {
            flags: 1,
            entries: vec![Setting {
                flags: 1,
                id: 7,
                value: 65536,
            }],
        },
        Frame::Ping { id: 1 },
        Frame::GoAway {
            last_good_stream_id: 5,
            status: frame::goaway::OK,
        },
        Frame::WindowUpdate {
            stream_id: 5,
            delta: 1024,
        },
    ];
    let mut z = HeaderCompressor::new().unwrap();
    let mut wire = Vec::new();
    for f in &frames {
        frame::encode(f, &mut z, &mut wire).unwrap();
    }
    let mut d = HeaderDecompressor::new();
    let mut at = 0;
    for want in &frames {
        let head = FrameHead::parse(wire[at..at + 8].try_into().unwrap());
        let end = at + 8 + head.payload_len();
        assert_eq!(
            &frame::decode(head, &wire[at + 8..end], &mut d).unwrap(),
            want
        );
        at = end;
    }
    assert_eq!(at, wire.len());
}

#[test]
fn bad_frames_are_refused_with_reasons() {
    let mut d = HeaderDecompressor::new();
    let ctl = |t: u16, len| FrameHead::Control {
        version: 3,
        frame_type: t,
        flags: 0,
        len,
    };
    let e = frame::decode(ctl(frame::TYPE_PING, 3), &[0, 0, 1], &mut d).unwrap_err();
    assert_eq!(
        e.to_string(),
        "SPDY PING frame: payload of 3 bytes, 4 expected"
    );
    let e = frame::decode(
        FrameHead::Control {
            version: 2,
            frame_type: 6,
            flags: 0,
            len: 4,
        },
        &[0; 4],
        &mut d,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "SPDY control frame version 2, only 3 is spoken"
    );
    let e = frame::decode(
        ctl(frame::TYPE_RST_STREAM, 8),
        &[0, 0, 0, 1, 0, 0, 0, 0],
        &mut d,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "SPDY RST_STREAM frame: status 0");
    let e = frame::parse_block("SYN_STREAM", &[0, 0, 0x10, 0]).unwrap_err();
    assert!(e.to_string().contains("claims 4096 pairs"), "{e}");
    let e =
        frame::parse_block("SYN_STREAM", &[0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0]).unwrap_err();
    assert!(e.to_string().contains("not lowercase"), "{e}");
    // An unknown control type is skipped, as SPDY/3 asks.
    assert!(matches!(
        frame::decode(ctl(42, 2), &[1, 2], &mut d).unwrap(),
        Frame::Unknown {
            frame_type: 42,
            len: 2,
            ..
        }
    ));
}

/// The client end of a test connection.
struct Client {
    io: DuplexStream,
    z: HeaderCompressor,
    d: HeaderDecompressor,
}

impl Client {
    async fn send(&mut self, f: Frame) {
        let mut out = Vec::new();
        frame::encode(&f, &mut self.z, &mut out).unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Frame {
        let mut head = [0u8; 8];
        tokio::time::timeout(Duration::from_secs(5), self.io.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        let head = FrameHead::parse(head);
        let mut p = vec![0u8; head.payload_len()];
        self.io.read_exact(&mut p).await.unwrap();
        frame::decode(head, &p, &mut self.d).unwrap()
    }
}

fn syn(stream_id: u32, kind: &str) -> Frame {
    Frame::SynStream {
        stream_id,
        associated_to: 0,
        priority: 0,
        slot: 0,
        flags: 0,
        headers: block(&[("streamtype", kind)]),
    }
}

#[tokio::test]
async fn a_connection_replies_echoes_pings_and_carries_bytes() {
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let filter = Box::new(|h: &HeaderBlock| match h.get("streamtype") {
        Some("bad") => Err("bad stream".to_string()),
        _ => Ok(()),
    });
    let (conn, mut incoming) = Connection::serve(
        server_io,
        Bytes::new(),
        ConnOptions {
            idle_timeout: Duration::from_secs(30),
        },
        filter,
    );
    let mut c = Client {
        io: client_io,
        z: HeaderCompressor::new().unwrap(),
        d: HeaderDecompressor::new(),
    };

    c.send(syn(1, "stdin")).await;
    assert_eq!(
        c.recv().await,
        Frame::SynReply {
            stream_id: 1,
            flags: 0,
            headers: HeaderBlock::default()
        }
    );
    let mut s = incoming.recv().await.unwrap();
    assert_eq!(s.headers().get("streamtype"), Some("stdin"));

    // A rejected stream is reset, not replied to.
    c.send(syn(3, "bad")).await;
    assert_eq!(
        c.recv().await,
        Frame::RstStream {
            stream_id: 3,
            status: frame::rst::CANCEL
        }
    );
    // Stream ids must grow.
    c.send(syn(1, "again")).await;
    assert_eq!(
        c.recv().await,
        Frame::RstStream {
            stream_id: 1,
            status: frame::rst::PROTOCOL_ERROR
        }
    );

    c.send(Frame::Ping { id: 7 }).await;
    assert_eq!(c.recv().await, Frame::Ping { id: 7 });

    // Client to server, then FIN: the server reads the bytes, then EOF.
    let big = vec![7u8; 200 * 1024];
    c.send(Frame::Data {
        stream_id: 1,
        flags: 0,
        data: Bytes::from(big.clone()),
    })
    .await;
    c.send(Frame::Data {
        stream_id: 1,
        flags: frame::FLAG_FIN,
        data: Bytes::from_static(b"!"),
    })
    .await;
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), big.len() + 1);

    // Server to client: more than one data frame's worth, then FIN on shutdown.
    s.write_all(&big).await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = 0;
    loop {
        match c.recv().await {
            Frame::Data {
                stream_id: 1,
                flags,
                data,
            } => {
                back += data.len();
                assert!(data.len() <= 32 * 1024);
                if flags & frame::FLAG_FIN != 0 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(back, big.len());

    // A stream the client resets refuses further writes.
    c.send(syn(5, "stdout")).await;
    let _ = c.recv().await;
    let mut out = incoming.recv().await.unwrap();
    c.send(Frame::RstStream {
        stream_id: 5,
        status: frame::rst::CANCEL,
    })
    .await;
    c.send(Frame::Ping { id: 9 }).await;
    assert_eq!(c.recv().await, Frame::Ping { id: 9 });
    assert_eq!(
        out.write_all(b"late").await.unwrap_err().kind(),
        std::io::ErrorKind::BrokenPipe
    );

    // Closing resets what is open and says GOAWAY with the last stream seen.
    c.send(syn(7, "error")).await;
    let _ = c.recv().await;
    let _open = incoming.recv().await.unwrap();
    let closing = tokio::spawn(conn.close());
    assert_eq!(
        c.recv().await,
        Frame::RstStream {
            stream_id: 7,
            status: frame::rst::CANCEL
        }
    );
    assert_eq!(
        c.recv().await,
        Frame::GoAway {
            last_good_stream_id: 7,
            status: frame::goaway::OK
        }
    );
    drop(c);
    closing.await.unwrap();
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_idle_timeout() {
    let (server_io, mut client_io) = tokio::io::duplex(1024);
    let opts = ConnOptions {
        idle_timeout: Duration::from_millis(200),
    };
    let (conn, mut incoming) =
        Connection::serve(server_io, Bytes::new(), opts, Box::new(|_| Ok(())));
    let start = std::time::Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), incoming.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    let closing = tokio::spawn(conn.close());
    let mut rest = Vec::new();
    client_io.read_to_end(&mut rest).await.unwrap();
    // Only the GOAWAY: nothing was open.
    assert_eq!(rest.len(), 16);
    assert_eq!(&rest[..4], &[0x80, 0x03, 0x00, 0x07]);
    closing.await.unwrap();
}
