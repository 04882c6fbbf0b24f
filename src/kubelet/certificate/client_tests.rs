#![allow(clippy::unwrap_used)]
//! The node's client against a loopback TLS server that answers every request with the
//! CN of the client certificate of its connection and the Authorization header.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use base64::Engine;

use super::*;
use crate::kubelet::certificate::kubeconfig;
use crate::kubelet::certificate::pair::CertPair;
use crate::kubelet::certificate::testutil::{Request, Server, TempDir, TestCa, serve_with};
use crate::kubelet::certificate::{ClientOptions, connect};

async fn serve(ca: &TestCa) -> Server {
    serve_with(
        ca,
        Arc::new(|req: Request| {
            let auth = req.auth.as_deref().unwrap_or("none");
            (
                200,
                format!("{}|{auth}", req.peer_cn.as_deref().unwrap_or("anonymous")),
            )
        }),
    )
    .await
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub(crate) fn write_kubeconfig(
    dir: &TempDir,
    port: u16,
    ca: &TestCa,
    user: &str,
) -> std::path::PathBuf {
    let p = dir.path().join("kubelet.conf");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n{user}\n",
        b64(&ca.pem)
    );
    std::fs::write(&p, text).unwrap();
    p
}

async fn who(client: &kube::Client) -> String {
    client
        .request_text(http::Request::get("/whoami").body(Vec::new()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_certificate_is_read_per_handshake_and_connections_close_on_rotation() {
    let ca = TestCa::new();
    let server = serve(&ca).await;
    let dir = TempDir::new("client-rotate");
    let (cert, key) = ca.node_pair("n1");
    let path = write_kubeconfig(
        &dir,
        server.port,
        &ca,
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}",
            b64(&cert),
            b64(&key)
        ),
    );
    let kc = kubeconfig::read(&path).unwrap();
    let first = CertPair::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let source = Arc::new(CertSource::new(Some(first)));
    let client = build(&kc, Some(source.clone())).await.unwrap();

    assert_eq!(who(&client).await, "system:node:n1|none");
    assert_eq!(who(&client).await, "system:node:n1|none");
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "the idle connection is reused"
    );

    let (cert2, key2) = ca.node_pair("n2");
    source.rotate(CertPair::from_pem(cert2.as_bytes(), key2.as_bytes()).unwrap());
    // The pooled connection reads end-of-stream and is dropped; the next request, sent
    // at once (racing the close), handshakes again and presents the new certificate.
    assert_eq!(who(&client).await, "system:node:n2|none");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    assert_eq!(who(&client).await, "system:node:n2|none");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_kubeconfig_connects_without_rotation() {
    let ca = TestCa::new();
    let server = serve(&ca).await;
    let dir = TempDir::new("client-token");
    let path = write_kubeconfig(&dir, server.port, &ca, "    token: abcdef.0123456789abcdef");
    let mut opts = ClientOptions::new(&path, dir.path(), "n1");
    opts.cert_dir = dir.path().join("pki");
    let node = connect(&opts).await.unwrap();
    assert!(!node.rotating());
    assert_eq!(node.certificate_not_after(), None);
    assert_eq!(
        who(&node.client()).await,
        "anonymous|Bearer abcdef.0123456789abcdef"
    );
    assert!(
        !opts.cert_dir.exists(),
        "no cert dir without a certificate to keep"
    );

    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "from-file").unwrap();
    let path = write_kubeconfig(
        &dir,
        server.port,
        &ca,
        &format!("    tokenFile: {}", token_file.display()),
    );
    let node = connect(&ClientOptions::new(&path, dir.path(), "n1"))
        .await
        .unwrap();
    assert_eq!(who(&node.client()).await, "anonymous|Bearer from-file");
}

#[tokio::test]
async fn a_certificate_kubeconfig_starts_rotation_from_its_files() {
    let ca = TestCa::new();
    let server = serve(&ca).await;
    let dir = TempDir::new("client-files");
    let (cert, key) = ca.node_pair("n1");
    std::fs::write(dir.path().join("node.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("node.key"), &key).unwrap();
    let path = write_kubeconfig(
        &dir,
        server.port,
        &ca,
        "    client-certificate: node.crt\n    client-key: node.key",
    );
    let node = connect(&ClientOptions::new(&path, dir.path(), "n1"))
        .await
        .unwrap();
    assert!(node.rotating());
    let not_after = CertPair::from_pem(cert.as_bytes(), key.as_bytes())
        .unwrap()
        .not_after;
    assert_eq!(node.certificate_not_after(), Some(not_after));
    assert_eq!(node.certificate_pem(), Some(cert.into_bytes()));
    assert_eq!(who(&node.client()).await, "system:node:n1|none");

    let mut fixed = ClientOptions::new(&path, dir.path(), "n1");
    fixed.rotate = false;
    let node = connect(&fixed).await.unwrap();
    assert!(!node.rotating());
    assert_eq!(node.certificate_not_after(), Some(not_after));
    assert_eq!(who(&node.client()).await, "system:node:n1|none");
}
