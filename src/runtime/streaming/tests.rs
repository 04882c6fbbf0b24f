//! The server end to end on loopback with a scripted runtime and a client built from the
//! SPDY codec: the protocol versions kubectl no longer picks (v1-v3), resize decoding, and
//! port-forward pairing and error reports. kubectl itself drives v4 and port-forward in
//! integration-tests/tests/streaming.rs.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spdy::frame::{self, Frame, FrameHead, HeaderBlock};
use super::spdy::zlib::{HeaderCompressor, HeaderDecompressor};
use super::*;

/// Uppercases stdin to stdout, says "err" on stderr, records resizes, and exits with the
/// number given as the command; `hang` runs until its future is dropped, and records that.
/// Port-forward echoes on port 1 and fails on others.
#[derive(Default)]
struct Scripted {
    resizes: Mutex<Vec<TerminalSize>>,
    cancelled: std::sync::atomic::AtomicBool,
}

/// Records that the session's future was dropped.
struct OnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for OnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl StreamingRuntime for Scripted {
    async fn exec(
        &self,
        _id: &str,
        cmd: &[String],
        tty: bool,
        mut io: SessionIo,
    ) -> Result<i32, RuntimeError> {
        if cmd[0] == "hang" {
            let _guard = OnDrop(&self.cancelled);
            std::future::pending::<()>().await;
        }
        if tty && let Some(rx) = io.resize.as_mut() {
            for _ in 0..2 {
                if let Ok(Some(s)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                    self.resizes.lock().unwrap().push(s);
                }
            }
        }
        let mut input = Vec::new();
        if let Some(mut i) = io.stdin.take() {
            i.read_to_end(&mut input)
                .await
                .map_err(|e| RuntimeError(e.to_string()))?;
        }
        if let Some(mut o) = io.stdout.take() {
            o.write_all(&input.to_ascii_uppercase()).await.unwrap();
            o.shutdown().await.unwrap();
        }
        if let Some(mut e) = io.stderr.take() {
            e.write_all(b"err").await.unwrap();
        }
        cmd[0]
            .parse()
            .map_err(|_| RuntimeError(format!("no such command {:?}", cmd[0])))
    }

    async fn attach(&self, _id: &str, _tty: bool, _io: SessionIo) -> Result<(), RuntimeError> {
        Err(RuntimeError("nothing to attach to".into()))
    }

    async fn port_forward(
        &self,
        _sb: &str,
        port: u16,
        mut stream: Box<dyn DuplexStream>,
    ) -> std::io::Result<()> {
        match port {
            1 => {
                let mut buf = Vec::new();
                stream.read_to_end(&mut buf).await?;
                stream.write_all(&buf).await?;
                stream.shutdown().await
            }
            2 => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "refused",
            )),
            _ => Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe")),
        }
    }
}

struct Client {
    s: TcpStream,
    z: HeaderCompressor,
    d: HeaderDecompressor,
    next: u32,
}

/// What the server sent on a connection until it closed.
#[derive(Debug, Default)]
struct Seen {
    data: HashMap<u32, Vec<u8>>,
    fin: Vec<u32>,
    control: Vec<Frame>,
}

impl Client {
    async fn connect(url: &str, protocol: &str) -> Self {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = TcpStream::connect(host).await.unwrap();
        let req = format!(
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: {protocol}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains(&format!("X-Stream-Protocol-Version: {protocol}\r\n")),
            "{head}"
        );
        Self {
            s,
            z: HeaderCompressor::new().unwrap(),
            d: HeaderDecompressor::new(),
            next: 1,
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = Vec::new();
        frame::encode(&f, &mut self.z, &mut out).unwrap();
        self.s.write_all(&out).await.unwrap();
    }

    async fn open(&mut self, headers: &[(&str, &str)], fin: bool) -> u32 {
        let id = self.next;
        self.next += 2;
        let mut h = HeaderBlock::default();
        for (n, v) in headers {
            h.insert(n, v);
        }
        let flags = if fin { frame::FLAG_FIN } else { 0 };
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            flags,
            headers: h,
        })
        .await;
        id
    }

    async fn data(&mut self, id: u32, bytes: &[u8], fin: bool) {
        let flags = if fin { frame::FLAG_FIN } else { 0 };
        self.send(Frame::Data {
            stream_id: id,
            flags,
            data: Bytes::copy_from_slice(bytes),
        })
        .await;
    }

    /// Reads until the server closes (or `until` says enough), recording what came.
    async fn collect(&mut self, until: impl Fn(&Seen) -> bool) -> Seen {
        let mut seen = Seen::default();
        loop {
            if until(&seen) {
                return seen;
            }
            let mut h = [0u8; 8];
            match tokio::time::timeout(Duration::from_secs(10), self.s.read_exact(&mut h)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return seen,
                Err(_) => panic!("server neither finished nor closed: {seen:?}"),
            }
            let h = FrameHead::parse(h);
            let mut p = vec![0u8; h.payload_len()];
            self.s.read_exact(&mut p).await.unwrap();
            match frame::decode(h, &p, &mut self.d).unwrap() {
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    seen.data
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data);
                    if flags & frame::FLAG_FIN != 0 {
                        seen.fin.push(stream_id);
                    }
                }
                other => seen.control.push(other),
            }
        }
    }
}

fn text(seen: &Seen, id: u32) -> String {
    String::from_utf8_lossy(seen.data.get(&id).map(Vec::as_slice).unwrap_or(b"")).into_owned()
}

async fn server() -> (StreamingServer<Scripted>, Arc<Scripted>) {
    let rt = Arc::new(Scripted::default());
    (
        StreamingServer::start(StreamingConfig::default(), rt.clone())
            .await
            .unwrap(),
        rt,
    )
}

fn exec(cmd: &str, tty: bool, stderr: bool) -> ExecRequest {
    ExecRequest {
        container_id: "c".into(),
        cmd: vec![cmd.into()],
        tty,
        stdin: true,
        stdout: true,
        stderr,
    }
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_runtimes_session() {
    let (srv, rt) = server().await;
    let url = srv.get_exec(&exec("hang", false, false)).unwrap();
    let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
    c.open(&[("streamType", "error")], false).await;
    c.open(&[("streamType", "stdin")], false).await;
    c.open(&[("streamType", "stdout")], false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!rt.cancelled.load(std::sync::atomic::Ordering::SeqCst));
    drop(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !rt.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn v3_tty_resizes_reach_the_runtime_and_failures_are_plain_text() {
    let (srv, rt) = server().await;
    let url = srv.get_exec(&exec("2", true, false)).unwrap();
    let mut c = Client::connect(&url, "v3.channel.k8s.io").await;
    let err = c.open(&[("streamType", "error")], false).await;
    let stdin = c.open(&[("streamType", "stdin")], false).await;
    let stdout = c.open(&[("streamType", "stdout")], false).await;
    let resize = c.open(&[("streamType", "resize")], false).await;
    // JSON objects split anywhere across frames.
    c.data(resize, br#"{"Width":80,"Hei"#, false).await;
    c.data(resize, br#"ght":24}{"Width":100,"Height":30}"#, false)
        .await;
    c.data(stdin, b"abc", true).await;
    let seen = c.collect(|_| false).await;
    assert_eq!(text(&seen, stdout), "ABC");
    assert!(seen.fin.contains(&stdout));
    assert_eq!(
        text(&seen, err),
        "command terminated with non-zero exit code: error executing command [2], exit code 2"
    );
    assert_eq!(
        *rt.resizes.lock().unwrap(),
        vec![
            TerminalSize {
                width: 80,
                height: 24
            },
            TerminalSize {
                width: 100,
                height: 30
            }
        ]
    );
    assert!(
        matches!(seen.control.last(), Some(Frame::GoAway { status: 0, .. })),
        "{:?}",
        seen.control
    );
}

#[tokio::test]
async fn v2_success_says_nothing_and_stderr_is_its_own_stream() {
    let (srv, _) = server().await;
    let url = srv.get_exec(&exec("0", false, true)).unwrap();
    let mut c = Client::connect(&url, "v2.channel.k8s.io").await;
    let err = c.open(&[("streamType", "error")], false).await;
    let stdin = c.open(&[("streamType", "stdin")], false).await;
    let stdout = c.open(&[("streamType", "stdout")], false).await;
    let stderr = c.open(&[("streamType", "stderr")], false).await;
    c.data(stdin, b"x", true).await;
    let seen = c.collect(|_| false).await;
    assert_eq!(
        (text(&seen, stdout).as_str(), text(&seen, stderr).as_str()),
        ("X", "err")
    );
    assert_eq!(text(&seen, err), "");
}

#[tokio::test]
async fn v4_reports_runtime_failures_as_internal_errors() {
    let (srv, _) = server().await;
    let url = srv
        .get_exec(&ExecRequest {
            stdin: false,
            ..exec("nope", false, false)
        })
        .unwrap();
    let mut c = Client::connect(&url, "v4.channel.k8s.io").await;
    let err = c.open(&[("streamType", "error")], false).await;
    c.open(&[("streamType", "stdout")], false).await;
    let seen = c.collect(|_| false).await;
    let status: serde_json::Value = serde_json::from_str(&text(&seen, err)).unwrap();
    assert_eq!(status["reason"], "InternalError");
    assert_eq!(status["code"], 500);
    assert_eq!(
        status["message"],
        "Internal error occurred: error executing command in container: no such command \"nope\""
    );
}

#[tokio::test]
async fn v1_closes_the_servers_side_of_stdin_at_once() {
    let (srv, _) = server().await;
    let url = srv
        .get_attach(&AttachRequest {
            container_id: "c".into(),
            stdin: true,
            ..Default::default()
        })
        .unwrap();
    let mut c = Client::connect(&url, "channel.k8s.io").await;
    let err = c.open(&[("streamType", "error")], false).await;
    let stdin = c.open(&[("streamType", "stdin")], false).await;
    let seen = c.collect(|_| false).await;
    assert!(seen.fin.contains(&stdin), "{seen:?}");
    assert_eq!(
        text(&seen, err),
        "Internal error occurred: error attaching to container: nothing to attach to"
    );
}

#[tokio::test]
async fn port_forward_pairs_streams_and_reports_errors_like_kubelet() {
    let (srv, _) = server().await;
    let url = srv
        .get_port_forward(&PortForwardRequest {
            pod_sandbox_id: "sb".into(),
            port: vec![],
        })
        .unwrap();
    let mut c = Client::connect(&url, "portforward.k8s.io").await;
    // A good pair: the client closes its side of the error stream at once, as kubectl does.
    let e0 = c
        .open(
            &[("streamType", "error"), ("port", "1"), ("requestID", "0")],
            true,
        )
        .await;
    let d0 = c
        .open(
            &[("streamType", "data"), ("port", "1"), ("requestID", "0")],
            false,
        )
        .await;
    c.data(d0, b"echo me", true).await;
    // Refused, and a broken pipe, paired by stream id (clients without requestID).
    let e1 = c
        .open(&[("streamType", "error"), ("port", "2")], true)
        .await;
    let _d1 = c
        .open(&[("streamType", "data"), ("port", "2")], false)
        .await;
    let e2 = c
        .open(
            &[("streamType", "error"), ("port", "3"), ("requestID", "2")],
            true,
        )
        .await;
    let _d2 = c
        .open(
            &[("streamType", "data"), ("port", "3"), ("requestID", "2")],
            false,
        )
        .await;
    // No port: refused before any reply.
    let bad = c.open(&[("streamType", "data")], false).await;
    let seen = c
        .collect(|s| [e0, d0, e1, e2].iter().all(|id| s.fin.contains(id)))
        .await;
    assert_eq!(text(&seen, d0), "echo me");
    assert_eq!(text(&seen, e0), "");
    assert_eq!(
        text(&seen, e1),
        "{\"closeConnection\":true,\"message\":\"error forwarding port 2 to pod sb, uid : refused\"}\n"
    );
    assert_eq!(
        text(&seen, e2),
        "{\"message\":\"error forwarding port 3 to pod sb, uid : pipe\"}\n"
    );
    assert!(
        seen.control.contains(&Frame::RstStream {
            stream_id: bad,
            status: frame::rst::CANCEL
        }),
        "{seen:?}"
    );
    // The session stays up until the client leaves.
    c.s.shutdown().await.unwrap();
    let rest = c.collect(|_| false).await;
    assert!(
        matches!(rest.control.last(), Some(Frame::GoAway { .. })),
        "{rest:?}"
    );
}
