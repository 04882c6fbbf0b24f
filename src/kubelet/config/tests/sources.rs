use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::super::{Desired, PodConfig, SourceConfig};
use super::{NODE, TempDir};

/// Long enough that only inotify can explain a change seen within the test.
const NEVER: Duration = Duration::from_secs(3600);

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: a, image: {image}}}]}}\n"
    )
}

fn names(d: &Desired) -> Vec<String> {
    let mut names: Vec<String> = d
        .pods
        .values()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// Waits (at most a second) for a published state that satisfies `ok`.
async fn until(
    rx: &mut watch::Receiver<Arc<Desired>>,
    what: &str,
    ok: impl Fn(&Desired) -> bool,
) -> Arc<Desired> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        {
            let d = rx.borrow_and_update().clone();
            if ok(&d) {
                return d;
            }
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!(
                "not within a second: {what}; last: {:?}",
                names(&rx.borrow())
            ),
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

#[tokio::test]
async fn static_pod_dir_follows_add_change_remove_through_inotify() {
    let dir = TempDir::new("dir");
    write(&dir.0.join("a.yaml"), &pod("a", "a:1"));
    let mut cfg = SourceConfig::new(NODE);
    cfg.manifest_dir = Some(dir.0.clone());
    cfg.file_period = NEVER;
    let (_config, mut rx) = PodConfig::start(cfg).expect("start");
    until(&mut rx, "first read", |d| names(d) == ["a-node1"]).await;

    write(&dir.0.join("b.yaml"), &pod("b", "b:1"));
    until(&mut rx, "b added", |d| names(d) == ["a-node1", "b-node1"]).await;

    let before = rx.borrow().pods.keys().cloned().collect::<Vec<_>>();
    write(&dir.0.join("b.yaml"), &pod("b", "b:2"));
    let d = until(&mut rx, "b changed", |d| {
        d.pods.values().any(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.containers[0].image.as_deref())
                == Some("b:2")
        })
    })
    .await;
    assert_eq!(d.pods.len(), 2);
    assert_ne!(
        d.pods.keys().cloned().collect::<Vec<_>>(),
        before,
        "new content, new UID"
    );

    // Dotfiles (editor swap files) and subdirectories are not read.
    write(&dir.0.join(".c.yaml.swp"), &pod("c", "c:1"));
    std::fs::create_dir(dir.0.join("sub")).expect("mkdir");
    write(&dir.0.join("sub").join("d.yaml"), &pod("d", "d:1"));
    // A bad file is an error, and the others stay.
    write(
        &dir.0.join("e.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: e}\nspec: {containers: [{name: e}]}\n",
    );
    let d = until(&mut rx, "e rejected", |d| !d.errors.is_empty()).await;
    assert_eq!(names(&d), ["a-node1", "b-node1"]);
    assert!(
        d.errors[0]
            .to_string()
            .contains("e.yaml: Pod \"e\": spec.containers[0].image: Required value")
    );

    // Moved away, then removed.
    std::fs::rename(dir.0.join("a.yaml"), dir.0.join(".a.yaml.bak")).expect("rename");
    until(&mut rx, "a moved away", |d| names(d) == ["b-node1"]).await;
    std::fs::remove_file(dir.0.join("b.yaml")).expect("rm");
    until(&mut rx, "b removed", |d| d.pods.is_empty()).await;
}

#[tokio::test]
async fn single_file_follows_a_rename_over_it() {
    let dir = TempDir::new("file");
    let file = dir.0.join("pods.yaml");
    write(&file, &pod("a", "a:1"));
    let mut cfg = SourceConfig::new(NODE);
    cfg.paths = vec![file.clone()];
    cfg.file_period = NEVER;
    let (_config, mut rx) = PodConfig::start(cfg).expect("start");
    until(&mut rx, "first read", |d| names(d) == ["a-node1"]).await;
    // Other files of the same directory are not part of this source.
    write(&dir.0.join("other.yaml"), &pod("o", "o:1"));
    let tmp = dir.0.join(".pods.yaml.tmp");
    write(&tmp, &(pod("a", "a:1") + "---\n" + &pod("b", "b:1")));
    std::fs::rename(&tmp, &file).expect("rename");
    until(&mut rx, "replaced", |d| names(d) == ["a-node1", "b-node1"]).await;
}

#[tokio::test]
async fn missing_path_is_empty_until_it_appears() {
    let dir = TempDir::new("missing");
    let later = dir.0.join("later");
    let mut cfg = SourceConfig::new(NODE);
    cfg.paths = vec![later.clone()];
    cfg.file_period = Duration::from_millis(100);
    let (_config, mut rx) = PodConfig::start(cfg).expect("start");
    let d = until(&mut rx, "first read", |_| true).await;
    assert!(d.pods.is_empty() && d.errors.is_empty(), "{:?}", d.errors);
    std::fs::create_dir(&later).expect("mkdir");
    write(&later.join("a.yaml"), &pod("a", "a:1"));
    until(&mut rx, "dir appeared", |d| names(d) == ["a-node1"]).await;
}

/// A one-route HTTP server on 127.0.0.1: answers every request with the current (status,
/// body).
async fn serve(reply: Arc<Mutex<(u16, String)>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let (status, body) = reply
                    .lock()
                    .map(|r| r.clone())
                    .unwrap_or((500, String::new()));
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}/pods.yaml")
}

#[tokio::test]
async fn url_source_polls_and_keeps_the_last_good_set() {
    let reply = Arc::new(Mutex::new((200, pod("a", "a:1"))));
    let url = serve(reply.clone()).await;
    let mut cfg = SourceConfig::new(NODE);
    cfg.urls = vec![url.clone()];
    cfg.url_period = Duration::from_millis(50);
    let (_config, mut rx) = PodConfig::start(cfg).expect("start");
    let d = until(&mut rx, "first fetch", |d| names(d) == ["a-node1"]).await;
    let annotations = d
        .pods
        .values()
        .next()
        .and_then(|p| p.metadata.annotations.clone())
        .expect("annotations");
    assert_eq!(annotations[super::super::SOURCE_ANNOTATION], "http");

    *reply.lock().expect("lock") = (200, pod("a", "a:1") + "---\n" + &pod("b", "b:1"));
    until(&mut rx, "b added", |d| names(d) == ["a-node1", "b-node1"]).await;

    *reply.lock().expect("lock") = (500, "down".to_string());
    let d = until(&mut rx, "fetch failed", |d| !d.errors.is_empty()).await;
    assert_eq!(names(&d), ["a-node1", "b-node1"], "last good set kept");
    let text = d.errors[0].to_string();
    assert!(
        text.starts_with(&format!("{url}: fetch failed, kept the last set: "))
            && text.contains("500"),
        "{text}"
    );

    *reply.lock().expect("lock") = (200, String::new());
    until(&mut rx, "empty body", |d| {
        d.pods.is_empty() && d.errors.is_empty()
    })
    .await;
}

#[tokio::test]
async fn no_source_publishes_an_empty_state() {
    let (_config, rx) = PodConfig::start(SourceConfig::new(NODE)).expect("start");
    assert!(rx.has_changed().unwrap_or(false));
    assert!(rx.borrow().pods.is_empty());
}

#[tokio::test]
async fn bad_config_is_refused() {
    assert!(PodConfig::start(SourceConfig::new("")).is_err());
    let mut cfg = SourceConfig::new(NODE);
    cfg.urls = vec!["ftp://h/pods".to_string()];
    let err = PodConfig::start(cfg).map(|_| ()).expect_err("ftp");
    assert!(err.to_string().contains("ftp://h/pods"), "{err}");
}
