#![allow(clippy::unwrap_used)]

use super::*;
use crate::kubelet::certificate::testutil::{TempDir, TestCa};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn doc(cluster: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n{cluster}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n{user}\n"
    )
}

fn load(dir: &TempDir, text: &str) -> Result<NodeKubeconfig, CertError> {
    let p = dir.path().join("kubeconfig");
    std::fs::write(&p, text).unwrap();
    read(&p)
}

#[test]
fn inline_client_certificate_and_ca_data() {
    let dir = TempDir::new("kc-inline");
    let ca = TestCa::new();
    let (cert, key) = ca.node_pair("n1");
    let kc = load(
        &dir,
        &doc(
            &format!("    certificate-authority-data: {}", b64(&ca.pem)),
            &format!(
                "    client-certificate-data: {}\n    client-key-data: {}",
                b64(&cert),
                b64(&key)
            ),
        ),
    )
    .unwrap();
    assert_eq!(kc.server, "https://127.0.0.1:6443");
    assert_eq!(kc.ca_pem.as_deref(), Some(ca.pem.as_bytes()));
    assert_eq!(
        kc.credential,
        Credential::ClientCert {
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            cert_file: None,
            key_file: None
        }
    );
}

#[test]
fn files_are_resolved_against_the_kubeconfig_dir() {
    let dir = TempDir::new("kc-files");
    let ca = TestCa::new();
    let (cert, key) = ca.node_pair("n1");
    std::fs::write(dir.path().join("ca.crt"), &ca.pem).unwrap();
    std::fs::write(dir.path().join("node.pem"), format!("{cert}{key}")).unwrap();
    let kc = load(
        &dir,
        &doc(
            "    certificate-authority: ca.crt",
            "    client-certificate: node.pem\n    client-key: node.pem",
        ),
    )
    .unwrap();
    assert_eq!(kc.ca_pem.as_deref(), Some(ca.pem.as_bytes()));
    let Credential::ClientCert {
        cert_file,
        key_file,
        ..
    } = &kc.credential
    else {
        panic!("{:?}", kc.credential)
    };
    assert_eq!(
        cert_file.as_deref(),
        Some(dir.path().join("node.pem").as_path())
    );
    assert_eq!(key_file, cert_file);
}

#[test]
fn tokens_are_header_credentials() {
    let dir = TempDir::new("kc-token");
    let kc = load(&dir, &doc("", "    token: abcdef.0123456789abcdef")).unwrap();
    assert_eq!(kc.credential, Credential::Header);
    let kc = load(&dir, &doc("", "    tokenFile: /run/token")).unwrap();
    assert_eq!(kc.credential, Credential::Header);
    let kc = load(&dir, &doc("    insecure-skip-tls-verify: true", "    {}")).unwrap();
    assert_eq!(kc.credential, Credential::Anonymous);
    assert!(kc.insecure_skip_tls_verify);
}

#[test]
fn plugins_are_refused_by_field() {
    let dir = TempDir::new("kc-exec");
    let exec = "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      interactiveMode: Never";
    let err = load(&dir, &doc("", exec)).unwrap_err();
    assert!(
        matches!(&err, CertError::PluginRefused { field, .. } if field == "users[u].exec"),
        "{err}"
    );
    assert!(err.to_string().contains("users[u].exec"));
    let ap = "    auth-provider:\n      name: gcp\n      config: {}";
    let err = load(&dir, &doc("", ap)).unwrap_err();
    assert!(
        matches!(&err, CertError::PluginRefused { field, .. } if field == "users[u].auth-provider"),
        "{err}"
    );
}

#[test]
fn incomplete_configs_name_the_field() {
    let dir = TempDir::new("kc-bad");
    let text = doc("", "    client-certificate-data: Zm9v").replace("current-context: c\n", "");
    let err = load(&dir, &text).unwrap_err();
    assert!(err.to_string().contains("current-context"), "{err}");
    let err = load(&dir, &doc("", "    client-certificate-data: Zm9v")).unwrap_err();
    assert!(err.to_string().contains("users[u].client-key"), "{err}");
    let text = doc("", "    token: t").replace("server: https://127.0.0.1:6443", "server: \"\"");
    let err = load(&dir, &text).unwrap_err();
    assert!(err.to_string().contains("clusters[k].server"), "{err}");
    let err = read(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(err, CertError::Io { .. }), "{err}");
}

#[test]
fn the_bootstrapped_kubeconfig_points_at_the_current_pair() {
    let dir = TempDir::new("kc-render");
    let ca = TestCa::new();
    let bootstrap = load(
        &dir,
        &doc(
            &format!("    certificate-authority-data: {}", b64(&ca.pem)),
            "    token: abcdef.0123456789abcdef",
        ),
    )
    .unwrap();
    let (cert, key) = ca.node_pair("n1");
    let pem = dir.path().join("kubelet-client-current.pem");
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    let text = render_for_cert_dir(&bootstrap, &pem);
    let out = dir.path().join("kubelet.conf");
    std::fs::write(&out, &text).unwrap();
    let kc = read(&out).unwrap();
    assert_eq!(kc.server, bootstrap.server);
    assert_eq!(kc.ca_pem, bootstrap.ca_pem);
    let Credential::ClientCert {
        cert_file,
        key_file,
        cert_pem,
        ..
    } = &kc.credential
    else {
        panic!("{:?}", kc.credential)
    };
    assert_eq!(cert_file.as_deref(), Some(pem.as_path()));
    assert_eq!(key_file.as_deref(), Some(pem.as_path()));
    assert!(cert_pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        kc.raw.contexts[0]
            .context
            .as_ref()
            .unwrap()
            .namespace
            .as_deref(),
        Some("default")
    );
}
