//! The manager against in-process API answers: the real kube client and watcher, a list
//! then a watch stream per object.

use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::*;
use crate::kubelet::objects::fake_api::{self, Reply};

#[test]
fn the_snapshot_tells_pending_from_missing() {
    let cm = ConfigMap {
        immutable: Some(true),
        ..Default::default()
    };
    let items: BTreeMap<ObjectRef, Item> = [
        (ObjectKind::ConfigMap, "a", Value::Pending),
        (ObjectKind::ConfigMap, "b", Value::Missing),
        (ObjectKind::ConfigMap, "c", Value::ConfigMap(cm)),
        (ObjectKind::Secret, "d", Value::Secret(Secret::default())),
    ]
    .into_iter()
    .map(|(k, n, value)| {
        let error = Some("forbidden".to_string());
        (
            ObjectRef::new(k, "ns", n),
            Item {
                value,
                task: None,
                error,
            },
        )
    })
    .collect();
    let s = snapshot(&items);
    assert!(s.is_pending(ObjectKind::ConfigMap, "ns", "a"));
    assert_eq!(s.pending_errors.len(), 1);
    assert_eq!(
        s.pending_errors[&ObjectRef::new(ObjectKind::ConfigMap, "ns", "a")],
        "forbidden"
    );
    assert!(!s.is_pending(ObjectKind::ConfigMap, "ns", "b"));
    assert!(s.config_map("ns", "b").is_none());
    assert!(s.config_map("ns", "c").is_some());
    assert!(s.secret("ns", "d").is_some());
    assert!(
        items[&ObjectRef::new(ObjectKind::ConfigMap, "ns", "c")]
            .value
            .immutable()
    );
}

fn cm(name: &str, value: &str, rv: &str, immutable: bool) -> Json {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        "data": {"v": value},
        "immutable": immutable,
    })
}

fn pod(volumes: Json) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"containers": [{"name": "c"}], "volumes": volumes}
    }))
    .unwrap()
}

async fn wait_for(rx: &mut watch::Receiver<Arc<Objects>>, what: impl Fn(&Objects) -> bool) {
    let wait = async {
        loop {
            if what(&rx.borrow_and_update()) {
                return;
            }
            rx.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the snapshot never got there");
}

fn value(o: &Objects, name: &str) -> Option<String> {
    o.config_map("ns", name)
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get("v").cloned())
}

#[tokio::test]
async fn referenced_objects_are_pending_then_listed_then_followed_then_dropped() {
    let (watches_tx, mut watches) = mpsc::unbounded_channel();
    let (client, seen) = fake_api::client(move |s| {
        if s.is_watch() {
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = watches_tx.send((s.uri.clone(), tx));
            return Reply::Watch(rx);
        }
        if s.uri.contains("/configmaps") {
            Reply::Json(
                200,
                json!({"apiVersion": "v1", "kind": "ConfigMapList",
                "metadata": {"resourceVersion": "5"}, "items": [cm("cfg", "1", "5", false)]}),
            )
        } else {
            Reply::Json(
                200,
                json!({"apiVersion": "v1", "kind": "SecretList",
                "metadata": {"resourceVersion": "5"}, "items": []}),
            )
        }
    });
    let (mgr, mut rx) = ObjectManager::new(client);
    let p = pod(json!([
        {"name": "a", "configMap": {"name": "cfg"}},
        {"name": "b", "secret": {"secretName": "gone"}}
    ]));
    mgr.set_pods([&p]);
    {
        let now = rx.borrow();
        assert!(now.is_pending(ObjectKind::ConfigMap, "ns", "cfg"));
        assert!(now.is_pending(ObjectKind::Secret, "ns", "gone"));
    }
    wait_for(&mut rx, |o| {
        value(o, "cfg").as_deref() == Some("1") && o.pending.is_empty()
    })
    .await;
    assert!(rx.borrow().secret("ns", "gone").is_none());

    let cm_watch = loop {
        let (uri, tx) = watches.recv().await.unwrap();
        if uri.contains("/configmaps") {
            assert!(uri.contains("fieldSelector=metadata.name%3Dcfg"), "{uri}");
            break tx;
        }
    };
    cm_watch
        .send(json!({"type": "MODIFIED", "object": cm("cfg", "2", "6", false)}))
        .unwrap();
    wait_for(&mut rx, |o| value(o, "cfg").as_deref() == Some("2")).await;
    cm_watch
        .send(json!({"type": "DELETED", "object": cm("cfg", "2", "7", false)}))
        .unwrap();
    wait_for(&mut rx, |o| o.config_map("ns", "cfg").is_none()).await;
    assert!(!rx.borrow().is_pending(ObjectKind::ConfigMap, "ns", "cfg"));

    mgr.set_pods([]);
    assert_eq!(**rx.borrow(), Objects::default());
    let lists = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| !s.is_watch())
        .count();
    assert_eq!(lists, 2, "one list per object");
}

#[tokio::test]
async fn an_immutable_object_is_not_watched_once_read() {
    let (client, seen) = fake_api::client(|s| {
        if s.is_watch() {
            // Kept open for as long as the watch lives.
            let (tx, rx) = mpsc::unbounded_channel::<Json>();
            std::mem::forget(tx);
            return Reply::Watch(rx);
        }
        Reply::Json(
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "3"}, "items": [cm("fixed", "x", "3", true)]}),
        )
    });
    let (mgr, mut rx) = ObjectManager::new(client);
    mgr.set_pods([&pod(json!([{"name": "a", "configMap": {"name": "fixed"}}]))]);
    wait_for(&mut rx, |o| value(o, "fixed").is_some()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!seen.lock().unwrap().iter().any(|s| s.is_watch()));
    assert!(mgr.shared.lock().values().all(|i| i.task.is_none()));
}

#[tokio::test]
async fn a_forbidden_object_stays_pending_and_says_why() {
    let (client, _) = fake_api::client(|_| {
        Reply::Json(
            403,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "secrets \"s\" is forbidden: no relationship found", "reason": "Forbidden", "code": 403}),
        )
    });
    let (mgr, mut rx) = ObjectManager::new(client);
    mgr.set_pods([&pod(json!([{"name": "a", "secret": {"secretName": "s"}}]))]);
    wait_for(&mut rx, |o| !o.pending_errors.is_empty()).await;
    let o = rx.borrow().clone();
    assert!(o.is_pending(ObjectKind::Secret, "ns", "s"));
    let e = &o.pending_errors[&ObjectRef::new(ObjectKind::Secret, "ns", "s")];
    assert!(e.contains("forbidden"), "{e}");
}
