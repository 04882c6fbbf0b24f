//! Removal and garbage collection: prune removes what nothing references and keeps what
//! a container's rootfs uses; the kubelet policy spares images in use.

#[path = "image_support.rs"]
mod support;

use berth_integration_tests::fixtures::{self, Image};
use berth_integration_tests::{TestEnv, require_root};
use support::Store;

#[test]
fn prune_removes_the_unreferenced_and_keeps_what_a_container_uses() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let store = Store::new(&env);
    let mut layouts = Vec::new();
    for (img, name) in [
        (Image::Busybox, "busybox"),
        (Image::Httpd { port: 80 }, "httpd"),
        (Image::MultiLayer, "multi"),
    ] {
        let l = fixtures::build(&img, &env.subdir(&format!("layout-{name}")).expect("dir"))
            .expect("fixture");
        store.ok(&[
            "import",
            "--name",
            &format!("example.com/{name}"),
            l.dir.to_str().expect("utf8"),
        ]);
        layouts.push(l);
    }
    let [busybox, httpd, multi] = &layouts[..] else {
        unreachable!()
    };
    // busybox, httpd and multi share the base layer: 1 + 1 + 2 more snapshots.
    assert_eq!(store.entries("snapshots").len(), 4);
    let target = env.subdir("c1-rootfs").expect("dir");
    store.ok(&[
        "mount",
        "c1",
        "example.com/httpd",
        "--target",
        target.to_str().expect("utf8"),
    ]);

    let err = store.fails(&["rm", "example.com/httpd"]);
    assert!(
        err.contains("in use by container(s) c1"),
        "removing an image in use is refused: {err}"
    );
    // Untagged images go first; these are all tagged, so plain prune only collects content.
    let orphan = store.root.join("content/blobs/sha256").join("0".repeat(64));
    std::fs::write(&orphan, b"not referenced").expect("orphan blob");
    store.ok(&["prune"]);
    assert!(!orphan.exists(), "an unreferenced blob survived prune");
    assert_eq!(store.ok(&["ls", "-q"]).lines().count(), 3);

    let out = store.ok(&["prune", "--all"]);
    assert!(out.contains("removed 2 images"), "{out}");
    let left = store.ok(&["ls", "-q"]);
    assert_eq!(
        left.trim(),
        httpd.config_digest,
        "only the image in use is left"
    );
    for l in [busybox, multi] {
        assert!(
            !store.blob(&l.config_digest).exists(),
            "config of a removed image kept"
        );
        assert!(
            !store.blob(&l.manifest_digest).exists(),
            "manifest of a removed image kept"
        );
    }
    let rec = store.inspect(&httpd.config_digest);
    for chain in rec["chainIds"].as_array().expect("chains") {
        assert!(
            store.snapshot(chain.as_str().expect("str")).is_dir(),
            "a snapshot in use was removed"
        );
    }
    assert_eq!(store.entries("snapshots").len(), 2);
    assert!(!store.snapshot(&multi.diff_ids[1]).exists());
    // The container still reads its files.
    assert!(target.join("www/index.html").is_file());
    assert!(store.ok(&["verify"]).starts_with("ok"));

    // The kubelet policy: thresholds at 0% always act, but never on an image in use.
    let out = store.ok(&["prune", "--high", "0", "--low", "0", "--min-age", "0s"]);
    assert!(out.contains("removed 0 images"), "{out}");
    store.ok(&["unmount", "c1"]);
    let out = store.ok(&["prune", "--high", "0", "--low", "0", "--min-age", "1h"]);
    assert!(
        out.contains("removed 0 images"),
        "the minimum age protects a fresh image: {out}"
    );
    let out = store.ok(&["prune", "--high", "0", "--low", "0", "--min-age", "0s"]);
    assert!(out.contains("removed 1 images"), "{out}");
    assert!(store.entries("snapshots").is_empty());
    assert!(store.entries("content/blobs/sha256").is_empty());
    assert!(store.entries("rootfs").is_empty());
}
