//! berth's CRI streaming server against its real peer, kubectl v1.37 over SPDY/3.1: exec
//! with stdin, exit codes, a terminal with resizes, attach and port-forward, each through an
//! API-server stand-in that forwards kubectl's upgrade request to the URL berth handed out,
//! as the API server and kubelet do. Commands run as real processes in a test network
//! namespace; port-forward reaches a real HTTP server listening inside it.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::runtime::streaming::{
    AttachRequest, ExecRequest, PortForwardRequest, StreamingConfig, StreamingServer,
};
use berth_integration_tests::apifront::{self, ApiFront, Pod, Resolver, Subresource, UpgradeCall};
use berth_integration_tests::netns_runtime::NetnsRuntime;
use berth_integration_tests::terminal::Terminal;
use berth_integration_tests::util::ID_ENV;
use berth_integration_tests::{NetNs, TestEnv, require_root};

const NS: &str = "default";
const POD: &str = "web";
const CONTAINER: &str = "app";
const SANDBOX: &str = "sandbox-web";

struct Rig {
    env: TestEnv,
    netns: Arc<NetNs>,
    runtime: Arc<NetnsRuntime>,
    server: Arc<StreamingServer<NetnsRuntime>>,
    front: ApiFront,
    kubeconfig: PathBuf,
    rt: tokio::runtime::Runtime,
}

/// What kubelet does with the API server's exec/attach/portforward call: build the CRI
/// request from the query (dropping stderr under a tty) and ask the runtime for a URL.
fn resolver(server: Arc<StreamingServer<NetnsRuntime>>) -> Resolver {
    Arc::new(move |call: &UpgradeCall| {
        let tty = call.flag("tty");
        let container_id = call
            .values("container")
            .first()
            .cloned()
            .unwrap_or_else(|| CONTAINER.into());
        let url = match call.subresource {
            Subresource::Exec => server.get_exec(&ExecRequest {
                container_id,
                cmd: call.values("command"),
                tty,
                stdin: call.flag("stdin"),
                stdout: call.flag("stdout"),
                stderr: call.flag("stderr") && !tty,
            }),
            Subresource::Attach => server.get_attach(&AttachRequest {
                container_id,
                tty,
                stdin: call.flag("stdin"),
                stdout: call.flag("stdout"),
                stderr: call.flag("stderr") && !tty,
            }),
            Subresource::PortForward => server.get_port_forward(&PortForwardRequest {
                pod_sandbox_id: SANDBOX.into(),
                port: call
                    .values("ports")
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect(),
            }),
        };
        Ok(url?)
    })
}

fn rig(config: StreamingConfig) -> Rig {
    let env = TestEnv::new().unwrap();
    let netns = Arc::new(env.pod_netns("pod").unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = Arc::new(NetnsRuntime::new(netns.clone(), CONTAINER, SANDBOX));
    let server = Arc::new(
        rt.block_on(StreamingServer::start(config, runtime.clone()))
            .unwrap(),
    );
    let pod = Pod {
        namespace: NS.into(),
        name: POD.into(),
        container: CONTAINER.into(),
        tty_containers: vec![],
    };
    let front = rt
        .block_on(ApiFront::start(pod, resolver(server.clone())))
        .unwrap();
    let kubeconfig = front.kubeconfig(env.dir(), NS).unwrap();
    Rig {
        env,
        netns,
        runtime,
        server,
        front,
        kubeconfig,
        rt,
    }
}

impl Rig {
    fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(apifront::kubectl().unwrap());
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!(
                "--cache-dir={}",
                self.env.dir().join("kube-cache").display()
            ))
            .args(args)
            // Force SPDY: kubectl 1.37 prefers websockets for both.
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
            .env("HOME", self.env.dir())
            .env(ID_ENV, self.env.id());
        c
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = self
            .kubectl(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let out = wait_output(child, Duration::from_secs(60), &self.front);
        feeder.join().unwrap();
        out
    }

    fn netns_inode(&self) -> u64 {
        std::fs::metadata(self.netns.path()).unwrap().ino()
    }
}

fn wait_output(
    child: std::process::Child,
    limit: Duration,
    front: &ApiFront,
) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!(
                "kubectl did not finish within {limit:?}; the front saw {:?}",
                front.seen()
            );
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_with_stdin_runs_in_the_pods_netns() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    let script = "tr a-z A-Z; echo to-stderr >&2; readlink /proc/self/ns/net";
    let out = rig.run(
        &["exec", "-i", POD, "-c", CONTAINER, "--", "sh", "-c", script],
        b"hello berth\n",
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {out:?}; front saw {:?}",
        rig.front.seen()
    );
    assert!(stdout.starts_with("HELLO BERTH\n"), "stdout: {stdout:?}");
    assert!(
        stdout.contains(&format!("net:[{}]", rig.netns_inode())),
        "not in the pod netns: {stdout:?}"
    );
    assert!(
        text(&out.stderr).contains("to-stderr"),
        "stderr: {:?}",
        text(&out.stderr)
    );
    // The URL was used, and only once; one upgrade request means kubectl spoke SPDY from
    // the start rather than falling back to it after a refused websocket.
    assert_eq!(rig.server.pending(), 0);
    let posts: Vec<_> = rig
        .front
        .seen()
        .into_iter()
        .filter(|l| l.starts_with("POST"))
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].contains("/exec?"), "{posts:?}");
}

#[test]
fn exec_streams_two_megabytes_through_cat() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    // Well past SPDY's 64 KiB initial window: neither side enforces flow control.
    let input: Vec<u8> = (0..2 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let start = Instant::now();
    let out = rig.run(&["exec", "-i", POD, "--", "cat"], &input);
    assert!(
        out.status.success(),
        "kubectl failed: {:?}",
        text(&out.stderr)
    );
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "cat's output differs from its input");
    eprintln!(
        "2 MiB through kubectl exec cat and back in {:?}",
        start.elapsed()
    );
}

#[test]
fn exec_exit_code_reaches_kubectl() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    let out = rig.run(
        &["exec", POD, "--", "sh", "-c", "echo partial; exit 7"],
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "kubectl: {out:?}");
    assert_eq!(text(&out.stdout), "partial\n");
    assert!(
        text(&out.stderr).contains("command terminated with exit code 7"),
        "stderr: {:?}",
        text(&out.stderr)
    );
    let ok = rig.run(&["exec", POD, "--", "true"], b"");
    assert_eq!(ok.status.code(), Some(0), "kubectl: {ok:?}");
    // A runtime failure (not an exit code) arrives as an InternalError status.
    let missing = rig.run(&["exec", POD, "--", "/no/such/program"], b"");
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr)
            .contains("Internal error occurred: error executing command in container: spawn"),
        "{:?}",
        text(&missing.stderr)
    );
}

#[test]
fn exec_tty_gets_the_terminal_size_and_its_changes() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    let script =
        "stty size; while [ \"$(stty size)\" = \"30 100\" ]; do sleep 0.1; done; stty size; exit 3";
    let mut term = Terminal::spawn(
        &mut rig.kubectl(&["exec", "-i", "-t", POD, "--", "sh", "-c", script]),
        30,
        100,
    )
    .unwrap();
    let wait = Duration::from_secs(30);
    assert!(
        term.wait_for("30 100", wait),
        "no size on the terminal; saw {:?}; front saw {:?}",
        term.shown(),
        rig.front.seen()
    );
    // The kernel signals SIGWINCH to kubectl, which sends the new size on the resize stream.
    term.set_size(40, 120).unwrap();
    assert!(
        term.wait_for("40 120", wait),
        "the resize never arrived; saw {:?}",
        term.shown()
    );
    let status = term.wait().unwrap();
    assert_eq!(status.code(), Some(3), "terminal showed {:?}", term.shown());
}

#[test]
fn attach_joins_the_main_process() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    {
        let _guard = rig.rt.enter();
        rig.runtime
            .start_main("read line; echo \"main got: $line\"")
            .unwrap();
    }
    let out = rig.run(&["attach", "-i", POD, "-c", CONTAINER], b"knock knock\n");
    assert!(
        out.status.success(),
        "kubectl attach: {out:?}; front saw {:?}",
        rig.front.seen()
    );
    assert!(
        text(&out.stdout).contains("main got: knock knock"),
        "stdout: {:?}",
        text(&out.stdout)
    );
}

#[test]
fn port_forward_carries_http_into_the_pod() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    let www = rig.env.subdir("www").unwrap();
    std::fs::write(www.join("index.html"), "served from inside the pod netns\n").unwrap();
    let _httpd = Reap(
        rig.netns
            .command("busybox")
            .args(["httpd", "-f", "-p", "127.0.0.1:8080", "-h"])
            .arg(&www)
            .spawn()
            .unwrap(),
    );
    let (_pf, port) = port_forward(&rig, 8080, Stdio::null());
    let get = |path: &str| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    // Two connections over the one SPDY session: two stream pairs.
    for _ in 0..2 {
        let resp = get("/index.html");
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "response: {resp:?}");
        assert!(
            resp.ends_with("served from inside the pod netns\n"),
            "response: {resp:?}"
        );
    }
}

/// Kills and reaps a child on every exit path of a test.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A raw HTTP exchange with the streaming server: status line, headers and body.
fn raw(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("POST /{path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let code = head[9..12].parse().unwrap();
    (code, head.to_string(), body.to_string())
}

const SPDY: &[(&str, &str)] = &[("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];

fn exec_req() -> ExecRequest {
    ExecRequest {
        container_id: CONTAINER.into(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    }
}

#[test]
fn unknown_used_and_expired_urls_get_404() {
    require_root!();
    let rig = rig(StreamingConfig {
        request_ttl: Duration::from_millis(300),
        ..Default::default()
    });
    let v4 = [SPDY, &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]].concat();
    let (code, _, body) = raw(&format!("{}/exec/AAAAAAAAAAA", rig.server.base_url()), &v4);
    assert_eq!((code, body.as_str()), (404, "404 page not found\n"));

    // A URL is good for one request, whatever that request was.
    let url = rig.server.get_exec(&exec_req()).unwrap();
    assert_eq!(raw(&url, &[]).0, 400);
    assert_eq!(raw(&url, &v4).0, 404);

    // An exec token does not open a port-forward.
    let url = rig.server.get_exec(&exec_req()).unwrap();
    let pf = url.replace("/exec/", "/portforward/");
    assert_eq!(
        raw(
            &pf,
            &[SPDY, &[("X-Stream-Protocol-Version", "portforward.k8s.io")]].concat()
        )
        .0,
        404
    );

    let url = rig.server.get_exec(&exec_req()).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(raw(&url, &v4).0, 404, "an expired URL was served");
    assert_eq!(rig.server.pending(), 0);
}

#[test]
fn bad_upgrade_requests_get_kubelets_errors() {
    require_root!();
    let rig = rig(StreamingConfig::default());

    let url = rig.server.get_exec(&exec_req()).unwrap();
    let (code, _, body) = raw(&url, SPDY);
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            "unable to upgrade: X-Stream-Protocol-Version is required\n"
        )
    );

    let url = rig.server.get_exec(&exec_req()).unwrap();
    let (code, head, body) = raw(
        &url,
        &[SPDY, &[("X-Stream-Protocol-Version", "v9.channel.k8s.io")]].concat(),
    );
    assert_eq!(code, 403);
    assert_eq!(
        body,
        "unable to upgrade: unable to negotiate protocol: client supports [v9.channel.k8s.io], server accepts \
         [v5.channel.k8s.io v4.channel.k8s.io v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io]\n"
    );
    assert!(
        head.contains("X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io"),
        "{head}"
    );

    let url = rig
        .server
        .get_port_forward(&PortForwardRequest {
            pod_sandbox_id: SANDBOX.into(),
            port: vec![],
        })
        .unwrap();
    let (code, _, body) = raw(
        &url,
        &[
            ("X-Stream-Protocol-Version", "portforward.k8s.io"),
            ("Connection", "close"),
        ],
    );
    assert_eq!(code, 400);
    assert!(
        body.starts_with("unable to upgrade: missing upgrade headers in request: http.Header{\"Connection\":[]string{\"close\"}"),
        "{body}"
    );

    // Requests the CRI side refuses never get a URL.
    let bad = ExecRequest {
        tty: true,
        stderr: true,
        ..exec_req()
    };
    assert_eq!(
        rig.server.get_exec(&bad).unwrap_err().to_string(),
        "ExecRequest.stderr: tty and stderr cannot both be true"
    );
    assert!(
        rig.server
            .get_port_forward(&PortForwardRequest::default())
            .is_err()
    );
}

/// Starts `kubectl port-forward` to `remote` and returns it with the local port it chose.
fn port_forward(rig: &Rig, remote: u16, stderr: Stdio) -> (Reap, u16) {
    let mut pf = Reap(
        rig.kubectl(&[
            "port-forward",
            &format!("pod/{POD}"),
            "--address=127.0.0.1",
            &format!(":{remote}"),
        ])
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap(),
    );
    let mut line = String::new();
    let mut out = std::io::BufReader::new(pf.0.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    // Keep reading: kubectl dies of SIGPIPE if its "Handling connection" lines go nowhere.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let port = line
        .split_once("127.0.0.1:")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no local port in {line:?}"));
    (pf, port)
}

#[test]
fn port_forward_to_a_closed_port_reports_the_error_to_kubectl() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    // Nothing listens on port 9 inside the pod's namespace.
    let (mut pf, port) = port_forward(&rig, 9, Stdio::piped());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "data from a closed port: {buf:?}");
    // The error comes back on the pair's error stream with closeConnection, so kubectl
    // drops the session and exits.
    let mut stderr = pf.0.stderr.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while pf.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "kubectl port-forward kept running after the error"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(
        err.contains(&format!("error forwarding port 9 to pod {SANDBOX}")),
        "kubectl said: {err}"
    );
    assert!(err.contains("refused"), "kubectl said: {err}");
}

#[test]
fn a_client_that_opens_too_few_streams_is_dropped_after_the_creation_timeout() {
    use berth::runtime::streaming::spdy::frame::{self, Frame, FrameHead, HeaderBlock};
    use berth::runtime::streaming::spdy::zlib::{HeaderCompressor, HeaderDecompressor};
    require_root!();
    let rig = rig(StreamingConfig {
        stream_creation_timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let url = rig
        .server
        .get_exec(&ExecRequest {
            stdin: true,
            ..exec_req()
        })
        .unwrap();
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        text(&head).starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{}",
        text(&head)
    );
    assert!(text(&head).contains("X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"));
    // Only the error stream; stdout and stdin never come.
    let mut z = HeaderCompressor::new().unwrap();
    let mut out = Vec::new();
    let mut headers = HeaderBlock::default();
    headers.insert("streamType", "error");
    let syn = Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        slot: 0,
        flags: 0,
        headers,
    };
    frame::encode(&syn, &mut z, &mut out).unwrap();
    s.write_all(&out).unwrap();
    let start = Instant::now();
    let mut d = HeaderDecompressor::new();
    let mut frames = Vec::new();
    loop {
        let mut h = [0u8; 8];
        if s.read_exact(&mut h).is_err() {
            break;
        }
        let h = FrameHead::parse(h);
        let mut p = vec![0u8; h.payload_len()];
        s.read_exact(&mut p).unwrap();
        frames.push(frame::decode(h, &p, &mut d).unwrap());
    }
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    assert_eq!(
        frames,
        vec![
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: HeaderBlock::default()
            },
            Frame::RstStream {
                stream_id: 1,
                status: frame::rst::CANCEL
            },
            Frame::GoAway {
                last_good_stream_id: 1,
                status: frame::goaway::OK
            },
        ]
    );
}

#[test]
fn kubectl_preferring_websockets_falls_back_to_spdy() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    // kubectl's default: a websocket upgrade first. berth refuses it like a SPDY-only
    // kubelet (400, no X-Stream-Protocol-Version) and kubectl retries over SPDY.
    let mut cmd = rig.kubectl(&["exec", "-i", POD, "--", "cat"]);
    cmd.env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"fell back\n")
        .unwrap();
    let out = wait_output(child, Duration::from_secs(60), &rig.front);
    assert!(
        out.status.success(),
        "kubectl: {out:?}; front saw {:?}",
        rig.front.seen()
    );
    assert_eq!(text(&out.stdout), "fell back\n");
    // The websocket attempt (a GET) and the SPDY retry (a POST), each with its own URL.
    let upgrades: Vec<_> = rig
        .front
        .seen()
        .into_iter()
        .filter(|l| l.contains("/exec?"))
        .collect();
    assert_eq!(upgrades.len(), 2, "front saw {upgrades:?}");
    assert!(
        upgrades[0].starts_with("GET ") && upgrades[1].starts_with("POST "),
        "{upgrades:?}"
    );
}

#[test]
fn exec_ends_when_the_process_exits_though_stdin_stays_open() {
    require_root!();
    let rig = rig(StreamingConfig::default());
    let mut child = rig
        .kubectl(&["exec", "-i", POD, "--", "sh", "-c", "head -n 1; exit 4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // One line, and stdin is never closed: an interactive user who has not typed ^D.
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"first line\nsecond line never read\n")
        .unwrap();
    let out = wait_output(child, Duration::from_secs(30), &rig.front);
    drop(stdin);
    assert_eq!(out.status.code(), Some(4), "kubectl: {out:?}");
    assert_eq!(text(&out.stdout), "first line\n");
}
