//! The kube-api-access-* volume the API server's ServiceAccount admission adds, end to end
//! through the manager: the token from `Objects.tokens`, the CA bundle from the
//! kube-root-ca.crt ConfigMap, the namespace from the downward API; a renewed token is one
//! `..data` swap.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::json;

use super::tests::TempDir;
use super::*;
use crate::kubelet::token::pod_token_keys;
use crate::sys::record::Recorder;

fn api_access_pod(fs_group: Option<i64>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": {
            "serviceAccountName": "default",
            "securityContext": {"fsGroup": fs_group},
            "containers": [{"name": "c"}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {
                "defaultMode": 0o644,
                "sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]
            }}]
        }
    }))
    .unwrap()
}

fn objects(pod: &Pod, token: &str) -> Objects {
    let mut o = Objects::default();
    let ca: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "kube-root-ca.crt", "namespace": "ns"},
        "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n"}
    }))
    .unwrap();
    o.config_maps
        .insert(("ns".into(), "kube-root-ca.crt".into()), ca);
    for k in pod_token_keys(pod) {
        o.tokens.insert(k, token.to_string());
    }
    o
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn kube_api_access_has_token_ca_and_namespace_and_a_renewal_swaps() {
    let t = TempDir::new("token");
    let m = VolumeManager::new(t.path().to_path_buf(), Arc::new(Recorder::default()));
    let p = api_access_pod(None);
    m.setup_pod(&p, &objects(&p, "first")).unwrap();
    let dir = t
        .path()
        .join("pods/uid-1/volumes")
        .join(PROJECTED)
        .join("kube-api-access-abcde");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read("token"), "first");
    assert_eq!(read("ca.crt"), "-----BEGIN CERTIFICATE-----\n");
    assert_eq!(read("namespace"), "ns");
    assert_eq!(mode(&dir.join("token")), 0o644);
    let before = std::fs::read_link(dir.join("..data")).unwrap();

    m.setup_pod(&p, &objects(&p, "first")).unwrap();
    assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), before);

    m.setup_pod(&p, &objects(&p, "second")).unwrap();
    assert_ne!(std::fs::read_link(dir.join("..data")).unwrap(), before);
    assert_eq!(read("token"), "second");
}

#[test]
fn with_an_fs_group_the_token_is_not_world_readable() {
    let t = TempDir::new("token-fsgroup");
    let m = VolumeManager::new(t.path().to_path_buf(), Arc::new(Recorder::default()));
    let p = api_access_pod(Some(i64::from(nix::unistd::getgid().as_raw())));
    m.setup_pod(&p, &objects(&p, "tok")).unwrap();
    let token = t
        .path()
        .join("pods/uid-1/volumes")
        .join(PROJECTED)
        .join("kube-api-access-abcde/token");
    // 0600, then the volume's ownership adds group read.
    assert_eq!(mode(&token), 0o640);
}

#[test]
fn without_a_token_the_projection_says_why() {
    let t = TempDir::new("token-none");
    let m = VolumeManager::new(t.path().to_path_buf(), Arc::new(Recorder::default()));
    let p = api_access_pod(None);
    let mut o = objects(&p, "x");
    o.tokens.clear();
    let e = m.setup_pod(&p, &o).unwrap_err().to_string();
    assert!(
        e.contains("kube-api-access-abcde")
            && e.contains("service account token for ns/default")
            && e.contains("need an API server"),
        "{e}"
    );
}

#[test]
fn cluster_trust_bundles_are_refused_by_name() {
    let t = TempDir::new("token-ctb");
    let m = VolumeManager::new(t.path().to_path_buf(), Arc::new(Recorder::default()));
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "b", "projected": {"sources": [
            {"clusterTrustBundle": {"signerName": "example.com/s", "path": "b.pem"}}]}}]}
    }))
    .unwrap();
    let e = m
        .setup_pod(&p, &Objects::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("clusterTrustBundle projections are not supported"),
        "{e}"
    );
}
