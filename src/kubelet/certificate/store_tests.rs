#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::kubelet::certificate::testutil::{TempDir, TestCa};

#[test]
fn pair_file_names_use_utc_timestamps() {
    let at = |s| UNIX_EPOCH + Duration::from_secs(s);
    assert_eq!(
        pair_file_name("kubelet-client", at(0)),
        "kubelet-client-1970-01-01-00-00-00.pem"
    );
    assert_eq!(
        pair_file_name("kubelet-client", at(951_782_400)),
        "kubelet-client-2000-02-29-00-00-00.pem"
    );
    assert_eq!(
        pair_file_name("kubelet-client", at(1_700_000_000)),
        "kubelet-client-2023-11-14-22-13-20.pem"
    );
}

#[test]
fn update_writes_a_private_pair_and_swaps_the_link() {
    let tmp = TempDir::new("store");
    let dir = tmp.path().join("pki");
    let store = CertStore::open(&dir, CLIENT_PAIR_PREFIX).unwrap();
    assert_eq!(mode_of(&dir).unwrap(), 0o700);
    assert!(store.current().unwrap().is_none());

    let ca = TestCa::new();
    let (cert1, key1) = ca.node_pair("n1");
    let t1 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    store.update(cert1.as_bytes(), key1.as_bytes(), t1).unwrap();
    let first = dir.join("kubelet-client-2023-11-14-22-13-20.pem");
    assert_eq!(mode_of(&first).unwrap(), 0o600);
    assert_eq!(std::fs::read_link(store.current_path()).unwrap(), first);
    assert_eq!(
        std::fs::read(&first).unwrap(),
        format!("{cert1}{key1}").into_bytes()
    );
    let current = store.current().unwrap().unwrap();
    assert_eq!(current.common_name.as_deref(), Some("system:node:n1"));
    assert_eq!(current.organizations, vec!["system:nodes".to_string()]);

    let (cert2, key2) = ca.node_pair("n1");
    store
        .update(
            cert2.as_bytes(),
            key2.as_bytes(),
            t1 + Duration::from_secs(61),
        )
        .unwrap();
    let second = dir.join("kubelet-client-2023-11-14-22-14-21.pem");
    assert_eq!(std::fs::read_link(store.current_path()).unwrap(), second);
    assert_eq!(
        store.current().unwrap().unwrap().cert_pem,
        std::fs::read(&second).unwrap()
    );

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "kubelet-client-2023-11-14-22-13-20.pem",
            "kubelet-client-2023-11-14-22-14-21.pem",
            "kubelet-client-current.pem"
        ]
    );
}

#[test]
fn refuses_a_mismatched_pair_and_a_regular_current_file() {
    let tmp = TempDir::new("store-bad");
    let store = CertStore::open(tmp.path(), CLIENT_PAIR_PREFIX).unwrap();
    let ca = TestCa::new();
    let (cert, _) = ca.node_pair("n1");
    let (_, other_key) = ca.node_pair("n1");
    let err = store
        .update(cert.as_bytes(), other_key.as_bytes(), SystemTime::now())
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    std::fs::write(store.current_path(), b"not a link").unwrap();
    let (cert, key) = ca.node_pair("n1");
    let err = store
        .update(cert.as_bytes(), key.as_bytes(), SystemTime::now())
        .unwrap_err();
    assert!(err.to_string().contains("to be a symlink"), "{err}");
}

#[test]
fn pair_reads_validity_and_expiry() {
    let ca = TestCa::new();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = ca.issue(
        "system:node:n1",
        &["system:nodes"],
        &key,
        (2020, 1, 1),
        (2021, 1, 1),
    );
    let pair = CertPair::from_pem(cert.as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    assert_eq!(
        pair.not_before,
        UNIX_EPOCH + Duration::from_secs(1_577_836_800)
    );
    assert_eq!(
        pair.not_after,
        UNIX_EPOCH + Duration::from_secs(1_609_459_200)
    );
    assert!(pair.expired_at(SystemTime::now()));
    assert_eq!(pair.organizations, ["system:nodes"]);
    assert!(CertPair::from_pem(b"", key.serialize_pem().as_bytes()).is_err());
}
