//! The httpGet handler against a small HTTP/1.1 responder on 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, HTTPGetAction, HTTPHeader, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::fake::FakePods;
use super::{LOCALHOST, container, probe_once};
use crate::kubelet::Recorder;
use crate::kubelet::prober::http::{client, probe, request};
use crate::kubelet::prober::probe::{ProbeResult, Probed};
use crate::kubelet::prober::results::Verdict;

/// What the responder answers for a path: status, extra header lines, body.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

fn reply(status: u16, headers: &str, body: &str) -> Reply {
    Reply {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

/// A responder answering each request by its path; a path it does not know hangs
/// (no answer at all). Keeps every request's head, lower-cased.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn serve(routes: Vec<(&str, Reply)>) -> Server {
    let routes: HashMap<String, Reply> = routes
        .into_iter()
        .map(|(p, r)| (p.to_string(), r))
        .collect();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let routes = routes.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                log.lock().expect("log").push(head.to_ascii_lowercase());
                let Some(r) = routes.get(&path) else {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                };
                let text = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}",
                    r.status,
                    r.body.len(),
                    r.headers,
                    r.body
                );
                let _ = sock.write_all(text.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Server { addr, seen }
}

fn action(port: IntOrString, path: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(path.to_string()),
        port,
        scheme: Some("HTTP".to_string()),
        ..Default::default()
    }
}

async fn get(server: &Server, path: &str) -> Probed {
    get_with(action(
        IntOrString::Int(i32::from(server.addr.port())),
        path,
    ))
    .await
}

async fn get_with(a: HTTPGetAction) -> Probed {
    let req = request(&a, &container("app"), Some(LOCALHOST)).expect("request");
    let c = client().expect("client");
    probe(&c, req, Duration::from_secs(1)).await
}

#[tokio::test]
async fn ok_is_success_with_kubelet_headers() {
    let s = serve(vec![("/healthz", reply(200, "", "ok"))]).await;
    assert_eq!(get(&s, "/healthz").await, Probed::success("ok".into()));
    let seen = s.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].starts_with("get /healthz http/1.1\r\n"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains("user-agent: kube-probe/1.35\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("accept: */*\r\n"), "{}", seen[0]);
    assert!(
        seen[0].contains(&format!("host: 127.0.0.1:{}\r\n", s.addr.port())),
        "{}",
        seen[0]
    );
}

#[tokio::test]
async fn status_codes_200_to_399_succeed() {
    let s = serve(vec![
        ("/204", reply(204, "", "")),
        ("/399", reply(399, "", "")),
        ("/400", reply(400, "", "bad")),
        ("/500", reply(500, "", "secret body")),
        ("/199", reply(199, "", "")),
    ])
    .await;
    assert_eq!(get(&s, "/204").await.result, ProbeResult::Success);
    // 3xx without a Location that reqwest follows ends the chain: upstream's warning.
    assert_eq!(get(&s, "/399").await.result, ProbeResult::Warning);
    assert_eq!(
        get(&s, "/400").await,
        Probed::failure("HTTP probe failed with statuscode: 400".into())
    );
    assert_eq!(
        get(&s, "/500").await,
        Probed::failure("HTTP probe failed with statuscode: 500".into())
    );
}

#[tokio::test]
async fn redirect_to_same_host_is_followed() {
    let s = serve(vec![
        ("/old", reply(302, "Location: /new\r\n", "")),
        ("/new", reply(200, "", "moved fine")),
    ])
    .await;
    assert_eq!(get(&s, "/old").await, Probed::success("moved fine".into()));
    assert_eq!(s.seen.lock().expect("seen").len(), 2);
}

#[tokio::test]
async fn redirect_to_another_host_is_a_warning() {
    let s = serve(vec![(
        "/away",
        reply(301, "Location: http://example.invalid/x\r\n", "gone"),
    )])
    .await;
    assert_eq!(
        get(&s, "/away").await,
        Probed::warning("Probe terminated redirects, Response body: gone".into())
    );
    assert_eq!(s.seen.lock().expect("seen").len(), 1, "not followed");
}

#[tokio::test]
async fn endless_redirects_fail_after_ten() {
    let s = serve(vec![("/loop", reply(302, "Location: /loop\r\n", ""))]).await;
    let got = get(&s, "/loop").await;
    assert_eq!(got.result, ProbeResult::Failure);
    assert!(
        got.output.contains("stopped after 10 redirects"),
        "{}",
        got.output
    );
    assert_eq!(s.seen.lock().expect("seen").len(), 10);
}

#[tokio::test]
async fn host_header_and_custom_headers_are_sent() {
    let s = serve(vec![("/", reply(200, "", ""))]).await;
    let mut a = action(IntOrString::Int(i32::from(s.addr.port())), "");
    a.http_headers = Some(vec![
        HTTPHeader {
            name: "Host".into(),
            value: "example.com".into(),
        },
        HTTPHeader {
            name: "User-Agent".into(),
            value: "mine".into(),
        },
        HTTPHeader {
            name: "Accept".into(),
            value: "".into(),
        },
        HTTPHeader {
            name: "X-Custom".into(),
            value: "1".into(),
        },
    ]);
    assert_eq!(get_with(a).await.result, ProbeResult::Success);
    let seen = s.seen.lock().expect("seen")[0].clone();
    assert!(seen.starts_with("get / http/1.1\r\n"), "{seen}");
    assert!(seen.contains("host: example.com\r\n"), "{seen}");
    assert!(seen.contains("user-agent: mine\r\n"), "{seen}");
    assert!(seen.contains("x-custom: 1\r\n"), "{seen}");
    // Upstream drops an Accept header set to nothing; the HTTP client adds `*/*` to a
    // request without one, so it goes out empty, which asks for the same.
    assert!(seen.contains("accept: \r\n"), "{seen}");
    assert!(!seen.contains("*/*"), "{seen}");
}

#[tokio::test]
async fn body_is_read_up_to_10_kib() {
    let big = "b".repeat(20 * 1024);
    let s = serve(vec![("/big", reply(200, "", &big))]).await;
    let got = get(&s, "/big").await;
    assert_eq!(
        (got.result, got.output.len()),
        (ProbeResult::Success, 10 * 1024)
    );
}

#[tokio::test]
async fn no_answer_within_timeout_fails() {
    let s = serve(vec![]).await;
    let started = std::time::Instant::now();
    let got = get(&s, "/hang").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        got,
        Probed::failure(format!(
            "Get \"http://127.0.0.1:{}/hang\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            s.addr.port()
        ))
    );
}

#[tokio::test]
async fn refused_connection_fails_naming_the_url() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let got = get_with(action(IntOrString::Int(i32::from(port)), "/x")).await;
    assert_eq!(got.result, ProbeResult::Failure);
    assert!(
        got.output
            .starts_with(&format!("Get \"http://127.0.0.1:{port}/x\": ")),
        "{}",
        got.output
    );
}

#[test]
fn url_from_action_and_pod_ip() {
    let mut c = container("app");
    c.ports = Some(vec![ContainerPort {
        name: Some("web".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    let mut a = action(IntOrString::String("web".into()), "healthz?full=1");
    a.scheme = Some("HTTPS".into());
    let r = request(&a, &c, Some("fd00::5".parse().expect("ip"))).expect("request");
    assert_eq!(r.url, "https://[fd00::5]:8080/healthz?full=1");
    a.host = Some("10.1.2.3".into());
    let r = request(&a, &c, None).expect("request");
    assert_eq!(r.url, "https://10.1.2.3:8080/healthz?full=1");

    let missing = action(IntOrString::String("admin".into()), "/");
    assert_eq!(
        request(&missing, &c, None).err(),
        Some("port \"admin\" not found".into())
    );
    let zero = action(IntOrString::Int(0), "/");
    assert_eq!(
        request(&zero, &c, None).err(),
        Some("invalid port number: 0".into())
    );
}

#[tokio::test]
async fn no_pod_ip_fails_like_upstream() {
    let a = action(IntOrString::Int(80), "/");
    let req = request(&a, &container("app"), None).expect("request");
    let got = probe(&client().expect("client"), req, Duration::from_secs(1)).await;
    assert_eq!(
        got,
        Probed::failure("Get \"http://:80/\": http: no Host in request URL".into())
    );
}

#[tokio::test]
async fn warning_is_success_with_probe_warning_event() {
    let s = serve(vec![(
        "/away",
        reply(302, "Location: http://other.invalid/\r\n", ""),
    )])
    .await;
    let spec = Probe {
        http_get: Some(action(IntOrString::Int(i32::from(s.addr.port())), "/away")),
        ..Default::default()
    };
    let recorder = Recorder::new();
    let mut events = recorder.subscribe();
    let got = probe_once(&FakePods::default(), &recorder, &container("app"), &spec).await;
    assert_eq!(got.ok().map(|g| g.0), Some(Verdict::Success));
    let e = events.try_recv().ok().map(|e| (e.reason, e.message));
    assert_eq!(
        e,
        Some((
            "ProbeWarning".to_string(),
            "Liveness probe warning: Probe terminated redirects, Response body: ".to_string()
        ))
    );
}

#[tokio::test]
async fn unknown_named_port_is_an_error() {
    let spec = Probe {
        http_get: Some(action(IntOrString::String("nope".into()), "/")),
        ..Default::default()
    };
    let recorder = Recorder::new();
    let mut events = recorder.subscribe();
    let got = probe_once(&FakePods::default(), &recorder, &container("app"), &spec).await;
    assert_eq!(
        got.err().map(|e| e.to_string()),
        Some(
            "pod default/web container app: livenessProbe.httpGet.port: port \"nope\" not found"
                .into()
        )
    );
    let e = events
        .try_recv()
        .ok()
        .map(|e| e.message)
        .unwrap_or_default();
    assert!(
        e.starts_with("Liveness probe errored and resulted in unknown state: "),
        "{e}"
    );
}

/// `openssl s_server -www` with a fresh self-signed certificate, on 127.0.0.1; killed
/// and its files removed on drop.
struct TlsServer {
    port: u16,
    dir: std::path::PathBuf,
    _child: tokio::process::Child,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_server() -> TlsServer {
    let dir = std::env::temp_dir().join(format!(
        "berth-unit-probe-tls-{}-{}",
        std::process::id(),
        getrandom::u64().expect("random")
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let made = tokio::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=probe-test", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .await
        .expect("openssl req");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let child = tokio::process::Command::new("openssl")
        .args(["s_server", "-www", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    TlsServer {
        port,
        dir,
        _child: child,
    }
}

#[tokio::test]
async fn https_skips_certificate_verification() {
    let s = tls_server().await;
    let mut a = action(IntOrString::Int(i32::from(s.port)), "/");
    a.scheme = Some("HTTPS".into());
    let got = get_with(a.clone()).await;
    assert_eq!(got.result, ProbeResult::Success, "{}", got.output);
    // The same server spoken to in plain HTTP does not answer a probe.
    a.scheme = Some("HTTP".into());
    assert_eq!(get_with(a).await.result, ProbeResult::Failure);
}
