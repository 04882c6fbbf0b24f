#![allow(clippy::unwrap_used)]
//! connect() end to end against a loopback CSR signer: bootstrap from a bootstrap-token
//! kubeconfig, the restart paths, and rotation of a short-lived certificate while
//! requests keep succeeding.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::kubelet::certificate::testutil::{
    Handler, Request, Server, TempDir, TestCa, serve_with,
};

const TOKEN: &str = "abcdef.0123456789abcdef";
const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

#[derive(Default)]
struct Signer {
    objects: BTreeMap<String, Value>,
    /// (name, who asked: the bearer token or the client certificate's CN)
    posts: Vec<(String, String)>,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, String) {
    let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (code, s.to_string())
}

/// Approves and signs every request at once, valid for `validity` from now.
fn signer(ca: Arc<TestCa>, validity: std::time::Duration, state: Arc<Mutex<Signer>>) -> Handler {
    Arc::new(move |req: Request| {
        let who = match (&req.auth, &req.peer_cn) {
            (_, Some(cn)) => cn.clone(),
            (Some(a), None) if a == &format!("Bearer {TOKEN}") => "bootstrap".to_string(),
            _ => return status(401, "Unauthorized", "Unauthorized"),
        };
        let mut st = state.lock().unwrap();
        if req.path == "/whoami" {
            return (
                200,
                format!("{who}|{}", req.peer_serial.unwrap_or_default()),
            );
        }
        if req.method == "POST" && req.path.starts_with(CSRS) {
            let mut obj: Value = serde_json::from_slice(&req.body).unwrap();
            let name = match obj["metadata"]["name"].as_str() {
                Some(n) => n.to_string(),
                None => format!("csr-{}", st.posts.len()),
            };
            st.posts.push((name.clone(), who));
            if st.objects.contains_key(&name) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("certificatesigningrequests \"{name}\" already exists"),
                );
            }
            let pem = base64::engine::general_purpose::STANDARD
                .decode(obj["spec"]["request"].as_str().unwrap())
                .unwrap();
            let mut csr = rcgen::CertificateSigningRequestParams::from_pem(
                std::str::from_utf8(&pem).unwrap(),
            )
            .unwrap();
            let now = time::OffsetDateTime::now_utc();
            csr.params.not_before = now;
            csr.params.not_after = now + validity;
            let cert = csr.signed_by(&ca.issuer).unwrap().pem();
            obj["metadata"]["name"] = name.clone().into();
            obj["metadata"]["uid"] = format!("uid-{name}").into();
            obj["metadata"]["resourceVersion"] = "1".into();
            let created = obj.clone();
            obj["status"] = json!({
                "conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved", "message": "test signer"}],
                "certificate": base64::engine::general_purpose::STANDARD.encode(cert),
            });
            st.objects.insert(name, obj);
            return (201, created.to_string());
        }
        if req.method == "GET" && req.path.starts_with(&format!("{CSRS}?")) {
            if req.path.contains("watch=true") {
                return (200, String::new());
            }
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|(n, _)| req.path.contains(&format!("metadata.name%3D{n}")))
                .map(|(_, o)| o.clone())
                .collect();
            let list = json!({"kind": "CertificateSigningRequestList", "apiVersion": "certificates.k8s.io/v1",
                "metadata": {"resourceVersion": "1"}, "items": items});
            return (200, list.to_string());
        }
        if let Some(name) = req.path.strip_prefix(&format!("{CSRS}/")) {
            return match st.objects.get(name) {
                Some(o) => (200, o.to_string()),
                None => status(404, "NotFound", "not found"),
            };
        }
        status(404, "NotFound", &req.path)
    })
}

async fn setup(
    tag: &str,
    validity: std::time::Duration,
) -> (TempDir, Server, Arc<Mutex<Signer>>, ClientOptions) {
    let ca = Arc::new(TestCa::new());
    let state = Arc::new(Mutex::new(Signer::default()));
    let server = serve_with(&ca, signer(ca.clone(), validity, state.clone())).await;
    let dir = TempDir::new(tag);
    let bootstrap = dir.path().join("bootstrap-kubelet.conf");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n    token: {TOKEN}\n",
        server.port,
        base64::engine::general_purpose::STANDARD.encode(&ca.pem)
    );
    std::fs::write(&bootstrap, text).unwrap();
    let mut opts = ClientOptions::new(&dir.path().join("kubelet.conf"), dir.path(), "n1");
    opts.bootstrap_kubeconfig = Some(bootstrap);
    opts.bootstrap_timeout = Duration::from_secs(20);
    (dir, server, state, opts)
}

async fn whoami(client: &kube::Client) -> Result<String, kube::Error> {
    client
        .request_text(http::Request::get("/whoami").body(Vec::new()).unwrap())
        .await
}

fn serial_of(pem: &[u8]) -> String {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).unwrap();
    cert.raw_serial_as_string()
}

#[tokio::test]
async fn bootstrap_gets_a_node_certificate_and_writes_the_kubeconfig() {
    let (dir, _server, state, opts) = setup("connect-boot", Duration::from_secs(3600)).await;
    let node = connect(&opts).await.unwrap();
    assert!(node.rotating());
    let serial = serial_of(&node.certificate_pem().unwrap());
    assert_eq!(
        whoami(&node.client()).await.unwrap(),
        format!("system:node:n1|{serial}")
    );

    let posts = state.lock().unwrap().posts.clone();
    assert_eq!(posts.len(), 1);
    assert!(posts[0].0.starts_with("node-csr-"), "{posts:?}");
    assert_eq!(posts[0].1, "bootstrap");
    let obj = state.lock().unwrap().objects[&posts[0].0].clone();
    assert_eq!(
        obj["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(
        obj["spec"]["usages"],
        json!(["digital signature", "client auth"])
    );

    let pki = dir.path().join("pki");
    assert_eq!(store::mode_of(&pki).unwrap(), 0o700);
    assert_eq!(store::mode_of(&opts.kubeconfig).unwrap(), 0o600);
    let current = pki.join("kubelet-client-current.pem");
    assert_eq!(store::mode_of(&current).unwrap(), 0o600);
    assert!(!pki.join("kubelet-client.key.tmp").exists());
    let kc = kubeconfig::read(&opts.kubeconfig).unwrap();
    let bootstrap = kubeconfig::read(opts.bootstrap_kubeconfig.as_ref().unwrap()).unwrap();
    assert_eq!(
        (kc.server.as_str(), &kc.ca_pem),
        (bootstrap.server.as_str(), &bootstrap.ca_pem)
    );
    let Credential::ClientCert {
        cert_file,
        key_file,
        ..
    } = &kc.credential
    else {
        panic!("{:?}", kc.credential)
    };
    assert_eq!(
        (cert_file.as_deref(), key_file.as_deref()),
        (Some(current.as_path()), Some(current.as_path()))
    );
    drop(node);

    // A restart with a valid kubeconfig files no request.
    let node = connect(&opts).await.unwrap();
    assert_eq!(
        whoami(&node.client()).await.unwrap(),
        format!("system:node:n1|{serial}")
    );
    assert_eq!(state.lock().unwrap().posts.len(), 1);
    drop(node);

    // Without the kubeconfig the same key asks again under the same name: the existing
    // request is found (409, then GET) and its certificate used.
    std::fs::remove_file(&opts.kubeconfig).unwrap();
    let node = connect(&opts).await.unwrap();
    let posts = state.lock().unwrap().posts.clone();
    assert_eq!(posts.len(), 2);
    assert_eq!(posts[1].0, posts[0].0);
    assert_eq!(
        whoami(&node.client()).await.unwrap(),
        format!("system:node:n1|{serial}")
    );
}

#[tokio::test]
async fn a_short_lived_certificate_rotates_while_requests_succeed() {
    let (_dir, _server, state, opts) = setup("connect-rotate", Duration::from_secs(4)).await;
    let node = connect(&opts).await.unwrap();
    let client = node.client();
    let first = node.certificate_not_after().unwrap();
    let first_serial = serial_of(&node.certificate_pem().unwrap());
    let started = std::time::Instant::now();
    loop {
        let seen = whoami(&client).await.unwrap();
        assert!(seen.starts_with("system:node:n1|"), "{seen}");
        if node.certificate_not_after() != Some(first) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no rotation within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let serial = serial_of(&node.certificate_pem().unwrap());
    assert_ne!(serial, first_serial);
    let seen = whoami(&client).await.unwrap();
    let current = serial_of(&node.certificate_pem().unwrap());
    assert_eq!(
        seen,
        format!("system:node:n1|{current}"),
        "the new certificate is presented"
    );
    let posts = state.lock().unwrap().posts.clone();
    assert!(
        posts[1].0.starts_with("csr-"),
        "rotation uses generateName: {posts:?}"
    );
    assert_eq!(
        posts[1].1, "system:node:n1",
        "rotation asks with the node's own certificate"
    );
}
