#![allow(clippy::unwrap_used)]

use base64::Engine;

use super::*;
use crate::kubelet::certificate::store::CLIENT_PAIR_PREFIX;
use crate::kubelet::certificate::testutil::{TempDir, TestCa};

fn kubeconfig_with(dir: &TempDir, user: &str) -> std::path::PathBuf {
    let p = dir.path().join("kubelet.conf");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user:\n{user}\n"
    );
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn only_an_unexpired_client_certificate_skips_bootstrap() {
    let dir = TempDir::new("boot-valid");
    let now = SystemTime::now();
    assert!(!kubeconfig_still_valid(&dir.path().join("absent"), now).unwrap());

    let token = kubeconfig_with(&dir, "    token: abcdef.0123456789abcdef");
    assert!(!kubeconfig_still_valid(&token, now).unwrap());

    let ca = TestCa::new();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let expired = ca.issue(
        "system:node:n",
        &["system:nodes"],
        &key,
        (2020, 1, 1),
        (2021, 1, 1),
    );
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}",
        b64(&expired),
        b64(&key.serialize_pem())
    );
    assert!(!kubeconfig_still_valid(&kubeconfig_with(&dir, &user), now).unwrap());

    let (cert, key) = ca.node_pair("n");
    let user = format!(
        "    client-certificate-data: {}\n    client-key-data: {}",
        b64(&cert),
        b64(&key)
    );
    assert!(kubeconfig_still_valid(&kubeconfig_with(&dir, &user), now).unwrap());

    let broken = kubeconfig_with(
        &dir,
        "    client-certificate-data: Zm9v\n    client-key-data: Zm9v",
    );
    assert!(!kubeconfig_still_valid(&broken, now).unwrap());
}

#[test]
fn the_pending_key_survives_until_the_certificate_is_stored() {
    let dir = TempDir::new("boot-key");
    let store = CertStore::open(dir.path(), CLIENT_PAIR_PREFIX).unwrap();
    let first = pending_request(&store, "n").unwrap();
    let path = store.pending_key_path();
    assert_eq!(
        crate::kubelet::certificate::store::mode_of(&path).unwrap(),
        0o600
    );
    let again = pending_request(&store, "n").unwrap();
    assert_eq!(
        again.public_key_der, first.public_key_der,
        "a restart reuses the key and so the CSR name"
    );
}
