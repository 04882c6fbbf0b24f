//! berth's object manager and token manager against the test API server: a ConfigMap's
//! change reaches the snapshot the pods' volumes are written from; a serviceAccountToken
//! projection's token is asked for bound to the pod, and verifies. No root needed.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::sync::Arc;
use std::time::Duration;

use berth::kubelet::Objects;
use berth::kubelet::objects::{ObjectKind, ObjectManager};
use berth::kubelet::token::{TokenManager, pod_token_keys};
use berth_integration_tests::apiserver::{ApiServer, Options};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;

async fn wait_for(rx: &mut watch::Receiver<Arc<Objects>>, what: impl Fn(&Objects) -> bool) {
    let wait = async {
        loop {
            if what(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the snapshot never got there");
}

fn value(o: &Objects, name: &str) -> Option<String> {
    o.config_map("default", name)
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get("v").cloned())
}

#[tokio::test]
async fn a_config_map_change_reaches_the_snapshot() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let client = api.client().await.unwrap();
    api.create(
        "configmaps",
        "default",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"}, "data": {"v": "1"}}),
    )
    .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                "envFrom": [{"secretRef": {"name": "later"}}]}],
            "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}
    }))
    .unwrap();
    let (mgr, mut rx) = ObjectManager::new(client.clone());
    mgr.set_pods([&pod]);
    assert!(
        rx.borrow()
            .is_pending(ObjectKind::ConfigMap, "default", "cfg")
    );
    wait_for(&mut rx, |o| {
        value(o, "cfg").as_deref() == Some("1") && o.pending.is_empty()
    })
    .await;
    assert!(rx.borrow().secret("default", "later").is_none());

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.patch(
        "cfg",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    wait_for(&mut rx, |o| value(o, "cfg").as_deref() == Some("2")).await;

    // A Secret created after the pod arrives through the same watch.
    api.create(
        "secrets",
        "default",
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "later", "namespace": "default"}, "data": {"k": "dg=="}}),
    )
    .unwrap();
    wait_for(&mut rx, |o| o.secret("default", "later").is_some()).await;

    let watches = api
        .requests()
        .iter()
        .filter(|r| format!("{r:?}").contains("metadata.name%3Dcfg"))
        .count();
    assert!(watches >= 1, "the watch selects the one object by name");

    mgr.set_pods([]);
    assert_eq!(**rx.borrow(), Objects::default());
}

#[tokio::test]
async fn a_projected_token_is_bound_to_the_pod_and_cached() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    api.ensure_namespace_defaults("default");
    let client = api.client().await.unwrap();
    let created = api
        .create(
            "pods",
            "default",
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"nodeName": "n1", "serviceAccountName": "default",
                    "containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "kube-api-access-x", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                        {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 600}}
                    ]}}]}}),
        )
        .unwrap();
    let pod: Pod = serde_json::from_value(created).unwrap();
    let uid = pod.metadata.uid.clone().unwrap();
    let tokens = TokenManager::new(client);
    let got = tokens.tokens_for(&pod).await.unwrap();
    assert_eq!(got.len(), 2);
    for k in pod_token_keys(&pod) {
        let claims = api.verify_token(&got[&k]).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:default:default");
        assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web");
        assert_eq!(claims["kubernetes.io"]["pod"]["uid"], uid.as_str());
        if k.audiences.is_empty() {
            // The API server's own audience.
            assert_ne!(claims["aud"], json!(["vault"]));
        } else {
            assert_eq!(claims["aud"], json!(["vault"]));
        }
    }
    let before = api.requests().len();
    assert_eq!(tokens.tokens_for(&pod).await.unwrap(), got);
    assert_eq!(
        api.requests().len(),
        before,
        "the second sync used the cache"
    );
}
