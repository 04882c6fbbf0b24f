//! Watches on the test API server through kube-rs: the runtime watcher's list + watch,
//! resuming after a server restart and relisting after 410, streaming lists, and the raw
//! watch protocol (replay from a resourceVersion, bookmarks, selector transitions,
//! timeoutSeconds, the ERROR event for an expired resourceVersion). No root needed.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::time::Duration;

use berth_integration_tests::apiserver::{ApiServer, Options};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

fn pod(name: &str, node: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1"}]},
    }))
    .unwrap()
}

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The next watcher event, errors skipped (they are the watcher retrying).
async fn next<S: Stream<Item = Result<Event<Pod>, watcher::Error>> + Unpin>(
    s: &mut S,
) -> Event<Pod> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.next().await {
                Some(Ok(e)) => return e,
                Some(Err(_)) => continue,
                None => panic!("watcher ended"),
            }
        }
    })
    .await
    .expect("no watcher event within 20 s")
}

fn describe(e: &Event<Pod>) -> String {
    match e {
        Event::Apply(p) => format!("Apply {}", name_of(p)),
        Event::Delete(p) => format!("Delete {}", name_of(p)),
        Event::Init => "Init".into(),
        Event::InitApply(p) => format!("InitApply {}", name_of(p)),
        Event::InitDone => "InitDone".into(),
    }
}

#[tokio::test]
async fn watcher_follows_writes_resumes_after_restart_and_relists_after_410() {
    let api = ApiServer::start(Options {
        bookmark_interval: Duration::from_secs(30),
        ..Options::default()
    })
    .await
    .unwrap();
    let client = api.client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("old", "n1", "x"))
        .await
        .unwrap();
    let mut w = watcher::watcher(
        pods.clone(),
        watcher::Config::default().fields("spec.nodeName=n1"),
    )
    .boxed();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut w).await));
    }
    assert_eq!(seen, ["Init", "InitApply old", "InitDone"]);

    pods.create(&PostParams::default(), &pod("a", "n1", "x"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("b", "n2", "x"))
        .await
        .unwrap();
    assert_eq!(describe(&next(&mut w).await), "Apply a");
    let st = json!({"status": {"phase": "Running"}});
    pods.patch_status("a", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    match next(&mut w).await {
        Event::Apply(p) => assert_eq!(p.status.unwrap().phase.as_deref(), Some("Running")),
        e => panic!("{}", describe(&e)),
    }
    pods.delete(
        "a",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(describe(&next(&mut w).await), "Delete a");

    // A restart with nothing written in between: the watch resumes from its resourceVersion.
    let watches = || {
        api.requests()
            .iter()
            .filter(|r| r.path.contains("watch=true"))
            .count()
    };
    let before = watches();
    api.restart().await.unwrap();
    api.create(
        "pods",
        "default",
        serde_json::to_value(pod("c", "n1", "x")).unwrap(),
    )
    .unwrap();
    assert_eq!(describe(&next(&mut w).await), "Apply c");
    assert!(watches() > before, "the restart did not end the watch");

    // Writes elsewhere move the resourceVersion past the watcher's: after the restart its
    // resourceVersion is compacted away, the watch gets 410 and the watcher lists again.
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bump"}})).unwrap(),
    )
    .await
    .unwrap();
    api.restart().await.unwrap();
    api.create(
        "pods",
        "default",
        serde_json::to_value(pod("d", "n1", "x")).unwrap(),
    )
    .unwrap();
    let mut seen = Vec::new();
    loop {
        let e = describe(&next(&mut w).await);
        let done = e == "InitDone";
        seen.push(e);
        if done {
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "Init",
            "InitApply c",
            "InitApply d",
            "InitApply old",
            "InitDone"
        ]
    );
}

#[tokio::test]
async fn streaming_list_ends_with_the_initial_events_bookmark() {
    let api = ApiServer::start(Options::default()).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client().await.unwrap(), "default");
    pods.create(&PostParams::default(), &pod("s", "n1", "x"))
        .await
        .unwrap();
    let mut w =
        watcher::watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut w).await));
    }
    assert_eq!(seen, ["Init", "InitApply s", "InitDone"]);
    assert!(
        api.requests()
            .iter()
            .any(|r| r.path.contains("sendInitialEvents=true"))
    );
}

async fn next_raw<S: Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin>(
    s: &mut S,
) -> WatchEvent<Pod> {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("no watch event within 10 s")
        .expect("watch ended")
        .unwrap()
}

fn raw(e: &WatchEvent<Pod>) -> String {
    match e {
        WatchEvent::Added(p) => format!("ADDED {}", name_of(p)),
        WatchEvent::Modified(p) => format!("MODIFIED {}", name_of(p)),
        WatchEvent::Deleted(p) => format!("DELETED {}", name_of(p)),
        WatchEvent::Bookmark(_) => "BOOKMARK".into(),
        WatchEvent::Error(e) => format!("ERROR {}", e.code),
    }
}

#[tokio::test]
async fn raw_watch_replay_bookmarks_selectors_timeout_and_expiry() {
    let api = ApiServer::start(Options {
        bookmark_interval: Duration::from_millis(300),
        ..Options::default()
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(api.client().await.unwrap(), "default");
    let rv0 = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    pods.create(&PostParams::default(), &pod("p", "n1", "x"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("q", "n1", "other"))
        .await
        .unwrap();

    // Replay from an older resourceVersion, filtered by label; then live transitions.
    let wp = WatchParams::default()
        .labels("app=x")
        .timeout(3)
        .disable_bookmarks();
    let mut s = pods.watch(&wp, &rv0).await.unwrap().boxed();
    assert_eq!(raw(&next_raw(&mut s).await), "ADDED p");
    let relabel = |app: &str| json!({"metadata": {"labels": {"app": app}}});
    pods.patch("p", &PatchParams::default(), &Patch::Merge(&relabel("y")))
        .await
        .unwrap();
    assert_eq!(raw(&next_raw(&mut s).await), "DELETED p");
    pods.patch("q", &PatchParams::default(), &Patch::Merge(&relabel("x")))
        .await
        .unwrap();
    assert_eq!(raw(&next_raw(&mut s).await), "ADDED q");
    pods.patch(
        "q",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"a": "b"}}})),
    )
    .await
    .unwrap();
    assert_eq!(raw(&next_raw(&mut s).await), "MODIFIED q");
    // timeoutSeconds ends the stream.
    let ended = tokio::time::timeout(Duration::from_secs(6), async {
        while s.next().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watch outlived timeoutSeconds");

    // Bookmarks carry the current resourceVersion.
    let now = api.resource_version().to_string();
    let mut s = pods
        .watch(&WatchParams::default(), &now)
        .await
        .unwrap()
        .boxed();
    match next_raw(&mut s).await {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, now),
        e => panic!("{}", raw(&e)),
    }

    // A compacted resourceVersion: the watch answers with an ERROR event, 410 Expired.
    api.compact();
    let mut s = pods
        .watch(&WatchParams::default().disable_bookmarks(), &rv0)
        .await
        .unwrap()
        .boxed();
    match next_raw(&mut s).await {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        e => panic!("{}", raw(&e)),
    }
}
