//! The kubelet's event sink against the test API server, with the node's own
//! credentials: Events are created with kubelet's source and names, repeats PATCH the
//! first Event's count, similar events are combined, and events recorded while the
//! server is down arrive once it is back. Loopback only; no root needed.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::time::Duration;

use berth::kubelet::events::sink::{self, ApiSink, SinkConfig};
use berth::kubelet::events::{Event, EventKind, Recorder};
use berth_integration_tests::apiserver::{ApiServer, Options};
use k8s_openapi::api::core::v1::{Event as CoreEvent, Pod};
use kube::api::{Api, ListParams};
use serde_json::json;

const NODE: &str = "node-1";

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "busybox"}]},
    }))
    .unwrap()
}

async fn node_client(api: &ApiServer) -> kube::Client {
    ApiServer::client_from(&api.node_kubeconfig(NODE).unwrap())
        .await
        .unwrap()
}

/// Polls the default namespace's Events until `done` holds, for `within` at most.
async fn wait_for(
    client: &kube::Client,
    within: Duration,
    done: impl Fn(&[CoreEvent]) -> bool,
) -> Vec<CoreEvent> {
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = events.list(&ListParams::default()).await.map(|l| l.items);
        if let Ok(items) = &got
            && done(items)
        {
            return items.clone();
        }
        if tokio::time::Instant::now() > deadline {
            panic!("events never got there: {got:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn by_reason<'a>(items: &'a [CoreEvent], reason: &str) -> Vec<&'a CoreEvent> {
    items
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test]
async fn repeats_patch_one_event_and_node_events_go_to_default() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let client = node_client(&api).await;
    let recorder = Recorder::new();
    let task = sink::spawn(client.clone(), &recorder, NODE);

    let p = pod("web");
    for _ in 0..3 {
        recorder.record(Event::pod(
            &p,
            Some("app"),
            EventKind::Warning,
            "BackOff",
            "Back-off restarting failed container app".into(),
        ));
    }
    recorder.record(Event::node(
        NODE,
        EventKind::Normal,
        "NodeReady",
        format!("Node {NODE} status is now: NodeReady"),
    ));

    let admin = api.client().await.unwrap();
    let items = wait_for(&admin, Duration::from_secs(10), |items| {
        by_reason(items, "BackOff").first().and_then(|e| e.count) == Some(3)
            && !by_reason(items, "NodeReady").is_empty()
    })
    .await;
    let backoff = by_reason(&items, "BackOff");
    assert_eq!(backoff.len(), 1, "one Event, patched: {items:?}");
    let e = backoff[0];
    assert!(e.metadata.name.as_deref().unwrap().starts_with("web."));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
    assert_eq!(e.involved_object.uid.as_deref(), Some("uid-web"));
    assert_eq!(
        e.involved_object.field_path.as_deref(),
        Some("spec.containers{app}")
    );
    let src = e.source.clone().unwrap();
    assert_eq!(
        (src.component.as_deref(), src.host.as_deref()),
        (Some("kubelet"), Some(NODE))
    );
    assert_eq!(e.reporting_component.as_deref(), Some("kubelet"));
    assert_eq!(e.reporting_instance.as_deref(), Some(NODE));
    assert!(e.last_timestamp >= e.first_timestamp);

    let node = by_reason(&items, "NodeReady")[0];
    assert_eq!(node.involved_object.kind.as_deref(), Some("Node"));
    assert_eq!(node.involved_object.uid.as_deref(), Some(NODE));
    assert_eq!(node.metadata.namespace.as_deref(), Some("default"));
    task.abort();
}

#[tokio::test]
async fn ten_similar_events_are_combined() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let client = node_client(&api).await;
    let recorder = Recorder::new();
    let task = sink::spawn(client.clone(), &recorder, NODE);
    let p = pod("db");
    for i in 0..10 {
        recorder.record(Event::pod(
            &p,
            None,
            EventKind::Warning,
            "FailedMount",
            format!("volume v{i} not ready"),
        ));
    }
    let admin = api.client().await.unwrap();
    let items = wait_for(&admin, Duration::from_secs(10), |items| {
        by_reason(items, "FailedMount").len() == 10
    })
    .await;
    let combined: Vec<_> = by_reason(&items, "FailedMount")
        .into_iter()
        .filter(|e| {
            e.message.as_deref() == Some("(combined from similar events): volume v9 not ready")
        })
        .collect();
    assert_eq!(combined.len(), 1, "{items:?}");
    task.abort();
}

#[tokio::test]
async fn events_recorded_while_the_server_is_down_arrive_after() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let client = node_client(&api).await;
    let recorder = Recorder::new();
    let mut cfg = SinkConfig::new(NODE);
    // Shorter waits than kubelet's 10 s, the same 12 tries.
    cfg.sleep = Duration::from_millis(500);
    let task = tokio::spawn(sink::run(ApiSink::new(client), recorder.subscribe(), cfg));

    let down = tokio::spawn({
        let api = std::sync::Arc::new(api);
        let a = api.clone();
        async move {
            a.restart_after(Duration::from_secs(2)).await.unwrap();
            api
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    recorder.record(Event::node(
        NODE,
        EventKind::Normal,
        "Starting",
        "Starting kubelet.".into(),
    ));
    let api = down.await.unwrap();
    let admin = api.client().await.unwrap();
    wait_for(&admin, Duration::from_secs(10), |items| {
        !by_reason(items, "Starting").is_empty()
    })
    .await;
    task.abort();
}
