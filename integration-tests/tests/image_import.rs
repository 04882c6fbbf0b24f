//! Import, unpack and overlay rootfs, against the real kernel: crafted layers cannot
//! reach outside their snapshot, the multi-layer fixture mounted as overlay shows what
//! the OCI image spec says, attributes survive, deep images mount.

#[path = "image_support.rs"]
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_integration_tests::fixtures::{self, Hostile, Image};
use berth_integration_tests::{TestEnv, require_root};
use support::Store;

#[test]
fn multilayer_overlay_shows_what_the_spec_says() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let layout =
        fixtures::build(&Image::MultiLayer, &env.subdir("layout").expect("dir")).expect("fixture");
    let store = Store::new(&env);
    let out = store.ok(&[
        "import",
        "--name",
        "example.com/multilayer",
        layout.dir.to_str().expect("utf8"),
    ]);
    assert!(
        out.starts_with(&layout.config_digest),
        "import prints the image id: {out}"
    );
    let target = env.subdir("rootfs").expect("dir");
    store.ok(&[
        "mount",
        "c1",
        "example.com/multilayer:latest",
        "--target",
        target.to_str().expect("utf8"),
    ]);
    let read = |p: &str| std::fs::read_to_string(target.join(p)).ok();
    assert_eq!(
        read("data/keep").as_deref(),
        Some("v2\n"),
        "upper layer's version wins"
    );
    assert!(
        !target.join("data/gone").exists(),
        "whiteout hides data/gone"
    );
    assert_eq!(
        read("data/dir/a").as_deref(),
        Some("a\n"),
        "untouched lower file stays"
    );
    assert_eq!(read("opq/new").as_deref(), Some("new\n"));
    let opq: Vec<_> = std::fs::read_dir(target.join("opq"))
        .expect("opq")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        opq,
        vec!["new"],
        "the opaque dir shows only its own layer's files"
    );
    assert!(target.join("bin/busybox").is_file());
    // Writes go to the container's upper dir, never into a shared snapshot.
    std::fs::write(target.join("data/keep"), "written\n").expect("write through overlay");
    let snap = store.snapshot(
        store.inspect(&layout.config_digest)["chainIds"][2]
            .as_str()
            .expect("chain"),
    );
    assert_eq!(
        std::fs::read_to_string(snap.join("data/keep")).expect("snapshot"),
        "v2\n"
    );
    // Snapshots hold overlay's own whiteout and opaque forms.
    let wh = std::fs::symlink_metadata(snap.join("data/gone")).expect("whiteout");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()) && wh.rdev() == 0);
    store.ok(&["unmount", "c1"]);
    assert!(!is_mountpoint(&target), "unmount left the overlay mounted");
}

#[test]
fn deep_images_mount_past_the_option_page_limit() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let layout = fixtures::build(
        &Image::ManyLayers { count: 60 },
        &env.subdir("layout").expect("dir"),
    )
    .expect("fixture");
    let store = Store::new(&env);
    store.ok(&[
        "import",
        "--name",
        "example.com/many",
        layout.dir.to_str().expect("utf8"),
    ]);
    let lowers: usize = 61 * (store.root.join("snapshots").to_str().expect("utf8").len() + 66);
    assert!(
        lowers > 4096,
        "the fixture must overflow one page of mount options ({lowers})"
    );
    let target = env.subdir("rootfs").expect("dir");
    store.ok(&[
        "mount",
        "deep",
        "example.com/many",
        "--target",
        target.to_str().expect("utf8"),
    ]);
    for i in [0, 29, 59] {
        assert_eq!(
            std::fs::read_to_string(target.join(format!("layers/{i}"))).expect("layer file"),
            format!("{i}\n")
        );
    }
    assert!(
        target.join("bin/busybox").is_file(),
        "the bottom layer is visible"
    );
    store.ok(&["unmount", "deep"]);
}

#[test]
fn attributes_survive_unpacking() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let layout =
        fixtures::build(&Image::Attributes, &env.subdir("layout").expect("dir")).expect("fixture");
    let store = Store::new(&env);
    store.ok(&[
        "import",
        "--name",
        "example.com/attr",
        layout.dir.to_str().expect("utf8"),
    ]);
    let rec = store.inspect("example.com/attr");
    let snap = store.snapshot(rec["chainIds"][1].as_str().expect("chain"));
    let owned = std::fs::symlink_metadata(snap.join("attr/owned")).expect("owned");
    assert_eq!((owned.uid(), owned.gid()), (1000, 2000));
    assert_eq!(
        owned.permissions().mode() & 0o7777,
        0o4755,
        "setuid survives chown"
    );
    let dir = std::fs::symlink_metadata(snap.join("attr")).expect("dir");
    assert_eq!(dir.permissions().mode() & 0o7777, 0o750);
    let target = std::fs::symlink_metadata(snap.join("attr/target")).expect("target");
    let link = std::fs::symlink_metadata(snap.join("attr/hardlink")).expect("hardlink");
    assert_eq!(
        (link.ino(), target.nlink()),
        (target.ino(), 2),
        "hardlink shares the inode"
    );
    assert_eq!(
        std::fs::read_link(snap.join("attr/symlink"))
            .expect("symlink")
            .to_str(),
        Some("../attr/target")
    );
    let fifo = std::fs::symlink_metadata(snap.join("attr/fifo")).expect("fifo");
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    assert_eq!(owned.mtime(), 1_767_225_600, "mtime from the tar header");
    // The top layer's hardlink into the layer below became a copy of the target.
    let top = store.snapshot(rec["chainIds"][2].as_str().expect("chain"));
    assert_eq!(
        std::fs::read_to_string(top.join("attr/lower-link")).expect("lower link"),
        "linked\n"
    );
    let copied = std::fs::symlink_metadata(top.join("attr/lower-link")).expect("lower link");
    assert_eq!(
        copied.permissions().mode() & 0o7777,
        0o640,
        "the copy keeps the target's mode"
    );
}

#[test]
fn crafted_layers_cannot_change_anything_outside_the_snapshot() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let store = Store::new(&env);
    let outside = env.subdir("outside").expect("dir");
    let host_file = outside.join("host-file");
    std::fs::write(&host_file, "host\n").expect("host file");
    let escape_name = format!("{}-dotdot-escape", env.id());
    let cases = [
        (
            Hostile::DotDot {
                path: format!("tmp/{escape_name}"),
            },
            "path contains `..`",
        ),
        (
            Hostile::SymlinkEscape {
                dir: outside.to_str().expect("utf8").into(),
            },
            "",
        ),
        (
            Hostile::HardlinkEscape {
                host_file: host_file.to_str().expect("utf8").into(),
            },
            "is in no layer",
        ),
        (Hostile::DeviceNode, "device nodes are not allowed"),
    ];
    for (case, why) in cases {
        let contained = why.is_empty();
        let img = Image::Hostile(case.clone());
        let layout =
            fixtures::build(&img, &env.subdir(&img.name()).expect("dir")).expect("fixture");
        let out = store.run(&[
            "import",
            "--name",
            &format!("example.com/{}", img.name()),
            layout.dir.to_str().expect("utf8"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if contained {
            assert!(
                out.status.success(),
                "{case:?}: contained layer should import: {stderr}"
            );
            // The symlinks resolved inside the snapshot: the files landed there.
            let snap = store.snapshot(&layout.diff_ids[0]);
            assert!(
                snap.join(outside.strip_prefix("/").expect("abs"))
                    .join("pwned")
                    .is_file(),
                "{case:?}: write through the absolute symlink stays inside"
            );
            assert!(
                snap.join(outside.strip_prefix("/").expect("abs"))
                    .join("pwned-rel")
                    .is_file(),
                "{case:?}: write through the relative symlink stays inside"
            );
        } else {
            assert!(
                !out.status.success(),
                "{case:?}: hostile layer was accepted"
            );
            assert!(
                stderr.contains(why),
                "{case:?}: error should say {why:?}: {stderr}"
            );
            assert!(
                stderr.contains(&layout.diff_ids[0][7..19]) || stderr.contains("layer "),
                "{case:?}: error names the layer: {stderr}"
            );
            assert!(
                !store.snapshot(&layout.diff_ids[0]).exists(),
                "{case:?}: a refused layer left a snapshot"
            );
        }
        // Nothing outside changed.
        let names: Vec<_> = std::fs::read_dir(&outside)
            .expect("outside")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec!["host-file"],
            "{case:?}: something was written outside"
        );
        assert_eq!(
            std::fs::read_to_string(&host_file).expect("host file"),
            "host\n",
            "{case:?}: host file changed"
        );
        assert!(
            !Path::new("/tmp").join(&escape_name).exists(),
            "{case:?}: ../ escaped"
        );
        assert!(
            !store
                .entries("snapshots")
                .iter()
                .any(|n| n.starts_with("tmp-")),
            "{case:?}: temp unpack left behind"
        );
    }
    // Device nodes are allowed only when asked for.
    let img = Image::Hostile(Hostile::DeviceNode);
    let layout =
        fixtures::build(&img, &env.subdir("device-allowed").expect("dir")).expect("fixture");
    store.ok(&[
        "--allow-device-nodes",
        "import",
        "--name",
        "example.com/dev",
        layout.dir.to_str().expect("utf8"),
    ]);
    let dev = std::fs::symlink_metadata(store.snapshot(&layout.diff_ids[0]).join("dev/evil"))
        .expect("device");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &dev.file_type()
    ));
}

#[test]
fn docker_save_and_oci_archives_import() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let layout = fixtures::build(
        &Image::Httpd { port: 8080 },
        &env.subdir("layout").expect("dir"),
    )
    .expect("fixture");
    let archive = env.dir().join("httpd-docker.tar");
    berth_integration_tests::util::run(
        std::process::Command::new("skopeo")
            .args(["copy", "--quiet", "--insecure-policy"])
            .arg(layout.oci_ref())
            .arg(format!(
                "docker-archive:{}:example.com/httpd:v1",
                archive.display()
            )),
    )
    .expect("skopeo docker-archive");
    let oci_tar = env.dir().join("httpd-oci.tar");
    berth_integration_tests::util::run(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&layout.dir)
            .arg("-cf")
            .arg(&oci_tar)
            .arg("."),
    )
    .expect("tar layout");
    let store = Store::new(&env);
    let out = store.ok(&["import", archive.to_str().expect("utf8")]);
    assert!(
        out.contains(&layout.config_digest) && out.contains("example.com/httpd:v1"),
        "docker save import: {out}"
    );
    let out = store.ok(&[
        "import",
        "--name",
        "example.com/httpd-oci",
        oci_tar.to_str().expect("utf8"),
    ]);
    assert!(
        out.contains(&layout.config_digest),
        "OCI archive import: {out}"
    );
    let rec = store.inspect("example.com/httpd:v1");
    assert_eq!(rec["config"]["cmd"][0], "/bin/httpd");
    assert_eq!(rec["config"]["labels"]["org.berth.fixture"], "httpd-8080");
    let tags = rec["repoTags"].as_array().expect("tags");
    assert!(
        tags.iter().any(|t| t == "example.com/httpd-oci:latest"),
        "both imports name one image: {tags:?}"
    );
    assert!(store.ok(&["verify"]).starts_with("ok"));
}

fn is_mountpoint(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    info.lines().any(|l| l.split(' ').nth(4) == p.to_str())
}

#[test]
fn an_image_past_the_unpacked_size_cap_is_refused_and_nothing_stays() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    // 32 MiB of zeros that gzip to a few dozen KiB.
    let layout = fixtures::build(
        &Image::Zeros { mib: 32 },
        &env.subdir("layout").expect("dir"),
    )
    .expect("fixture");
    let blob_bytes: u64 = std::fs::read_dir(layout.dir.join("blobs/sha256"))
        .expect("blobs")
        .flatten()
        .map(|e| e.metadata().expect("stat").len())
        .sum();
    assert!(blob_bytes < 1 << 20, "the fixture must compress well");
    let store = Store::new(&env);
    let dir = layout.dir.to_str().expect("utf8");
    let err = store.fails(&[
        "import",
        "--max-unpacked-size",
        "4M",
        "--name",
        "example.com/bomb",
        dir,
    ]);
    assert!(
        err.contains(dir) && err.contains("layer") && err.contains("4194304"),
        "the error names the image, the layer and the cap: {err}"
    );
    assert!(
        store.ok(&["ls", "-q"]).trim().is_empty(),
        "no image recorded"
    );
    assert_eq!(
        store.entries("snapshots"),
        Vec::<String>::new(),
        "no snapshot, whole or partial, and no temp dir or lock"
    );
    // Under a cap it fits, the same image imports (the cap counts unpacked bytes).
    store.ok(&[
        "import",
        "--max-unpacked-size",
        "64M",
        "--name",
        "example.com/bomb",
        dir,
    ]);
    assert_eq!(store.entries("snapshots").len(), 1);
}

#[test]
fn an_unpack_left_by_a_dead_writer_goes_though_its_pid_lives() {
    require_root!();
    let env = TestEnv::new().expect("test env");
    let store = Store::new(&env);
    store.ok(&["ls"]);
    // As a `kill -9` during an unpack leaves it: the writer's PID in the name (here one
    // that is alive: this test's own), its lock file, and no process holding the lock.
    let pid = std::process::id();
    let stale = store.root.join(format!("snapshots/tmp-{pid}-0-1"));
    std::fs::create_dir_all(stale.join("usr/lib")).expect("stale dir");
    std::fs::write(stale.join("usr/lib/big"), vec![7u8; 1 << 20]).expect("stale file");
    std::fs::write(
        store.root.join(format!("snapshots/tmp-{pid}-0-1.lock")),
        b"",
    )
    .expect("stale lock");
    // One whose writer is alive: a process holding the flock on its lock file (this
    // test; berth runs in another process, so the lock is held against it).
    let live = store.root.join("snapshots/tmp-1-0-2");
    std::fs::create_dir_all(&live).expect("live dir");
    let live_lock = store.root.join("snapshots/tmp-1-0-2.lock");
    let f = std::fs::File::create(&live_lock).expect("live lock");
    let held = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).expect("flock");

    store.ok(&["ls"]); // opening the store cleans up
    let left = store.entries("snapshots");
    drop(held);
    assert!(
        !left.iter().any(|e| e.starts_with(&format!("tmp-{pid}-"))),
        "the dead writer's unpack stayed: {left:?}"
    );
    let mut left = left;
    left.sort();
    assert_eq!(
        left,
        vec!["tmp-1-0-2", "tmp-1-0-2.lock"],
        "the live one stays"
    );
    store.ok(&["ls"]);
    assert!(
        store.entries("snapshots").is_empty(),
        "once its writer is gone, the next start removes it"
    );
}
