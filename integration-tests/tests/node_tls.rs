//! The node's API client against the test API server: TLS bootstrap from a bootstrap
//! token kubeconfig to an approved certificate, the kubeconfig it leaves behind, and
//! client certificate rotation while requests keep succeeding. No root needed.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use berth::kubelet::certificate::{ClientOptions, connect};
use berth_integration_tests::apiserver::{ApiServer, Options};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("berth-test-node-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn bootstrap_options(api: &ApiServer, dir: &TempDir, node: &str) -> ClientOptions {
    let bootstrap = dir.0.join("bootstrap-kubelet.conf");
    ApiServer::write_file(&bootstrap, &api.bootstrap_kubeconfig().unwrap()).unwrap();
    let mut opts = ClientOptions::new(&dir.0.join("kubelet.conf"), &dir.0, node);
    opts.bootstrap_kubeconfig = Some(bootstrap);
    opts.bootstrap_timeout = Duration::from_secs(30);
    opts
}

/// Makes one request with `client` and returns the user the server saw it from.
async fn request_as(api: &ApiServer, client: &kube::Client, node: &str) -> Option<String> {
    api.clear_requests();
    Api::<Node>::all(client.clone())
        .get_opt(node)
        .await
        .unwrap();
    api.requests()
        .into_iter()
        .rev()
        .find(|r| r.path.contains("/nodes/"))
        .and_then(|r| r.user)
}

#[tokio::test]
async fn bootstrap_token_to_an_approved_certificate_and_a_kubeconfig() {
    let api = ApiServer::start(Options {
        auto_approve_csrs: true,
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = TempDir::new("boot");
    let node_name = "tls-node-1";
    let opts = bootstrap_options(&api, &dir, node_name).await;
    let node = connect(&opts).await.unwrap();

    let csrs = api.list("certificatesigningrequests.certificates.k8s.io", None);
    assert_eq!(csrs.len(), 1, "{csrs:?}");
    let csr = &csrs[0];
    assert!(
        csr["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("node-csr-")
    );
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert!(
        csr["spec"]["username"]
            .as_str()
            .unwrap()
            .starts_with("system:bootstrap:"),
        "{csr}"
    );

    // --kubeconfig now points at the rotated pair, with the bootstrap server and CA.
    let written = std::fs::read_to_string(&opts.kubeconfig).unwrap();
    let current = dir.0.join("pki/kubelet-client-current.pem");
    assert!(written.contains(&*current.to_string_lossy()), "{written}");
    assert!(written.contains(&api.url()), "{written}");
    assert!(api.verify_client_cert(&String::from_utf8(node.certificate_pem().unwrap()).unwrap()));

    let user = request_as(&api, &node.client(), node_name).await;
    assert_eq!(user.as_deref(), Some("system:node:tls-node-1"));

    // A restart reads the written kubeconfig and files no new request.
    drop(node);
    let node = connect(&opts).await.unwrap();
    let user = request_as(&api, &node.client(), node_name).await;
    assert_eq!(user.as_deref(), Some("system:node:tls-node-1"));
    assert_eq!(
        api.list("certificatesigningrequests.certificates.k8s.io", None)
            .len(),
        1
    );
}

#[tokio::test]
async fn the_certificate_rotates_while_requests_succeed() {
    let api = ApiServer::start(Options {
        auto_approve_csrs: true,
        cert_validity: Duration::from_secs(8),
        ..Options::default()
    })
    .await
    .unwrap();
    let dir = TempDir::new("rotate");
    let node_name = "tls-node-2";
    let opts = bootstrap_options(&api, &dir, node_name).await;
    let node = connect(&opts).await.unwrap();
    let client = node.client();
    let first_not_after = node.certificate_not_after().unwrap();
    let first_pem = node.certificate_pem().unwrap();

    // Requests keep going through the rotation (at 70-90% of 8 s) and past the end of
    // the first certificate, which only the new one can get through.
    let started = Instant::now();
    while SystemTime::now() < first_not_after + Duration::from_secs(1) {
        let user = request_as(&api, &client, node_name).await;
        assert_eq!(user.as_deref(), Some("system:node:tls-node-2"));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still on the first certificate after 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(
        node.certificate_pem().unwrap(),
        first_pem,
        "the certificate was rotated"
    );
    assert!(node.certificate_not_after().unwrap() > first_not_after);
    let user = request_as(&api, &client, node_name).await;
    assert_eq!(user.as_deref(), Some("system:node:tls-node-2"));

    let csrs = api.list("certificatesigningrequests.certificates.k8s.io", None);
    let rotated = csrs
        .iter()
        .find(|c| c["metadata"]["name"].as_str().unwrap().starts_with("csr-"))
        .unwrap();
    assert_eq!(
        rotated["spec"]["username"], "system:node:tls-node-2",
        "rotation asks with the node's certificate"
    );
    assert_eq!(
        rotated["spec"]["usages"],
        serde_json::json!(["digital signature", "client auth"])
    );
}
