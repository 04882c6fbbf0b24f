//! As root, for real: subPath bind mounts made, used, kept across a second start, refused
//! for an escape, and gone after a teardown by a fresh manager. Runs in a forked child
//! with a private mount namespace, so the machine's mount table is never touched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use nix::mount::MsFlags;
use serde_json::json;

use crate::kubelet::Objects;
use crate::kubelet::volumes::tests::{TempDir, in_forked_child};
use crate::kubelet::volumes::{MountContext, VolumeManager};

#[test]
fn subpath_bind_mounts_for_real() {
    let t = TempDir::new("subpath-real");
    let root = t.path().to_path_buf();
    in_forked_child("subpath_bind_mounts_for_real", || {
        in_private_namespace(&root)
    });
}

/// The mounts on `path` in this namespace's table.
fn mounts_on(path: &Path) -> Result<usize, String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    Ok(crate::kubelet::volumes::empty_dir::mount_points(&info)
        .iter()
        .filter(|p| *p == path)
        .count())
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

fn in_private_namespace(tmp: &Path) -> Result<(), String> {
    let s = |e: std::io::Error| e.to_string();
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare: {e}"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make / private: {e}"))?;
    let tmp = std::fs::canonicalize(tmp).map_err(s)?;
    let (host, outside) = (tmp.join("host"), tmp.join("outside"));
    std::fs::create_dir_all(&host).map_err(s)?;
    std::fs::create_dir_all(&outside).map_err(s)?;
    std::fs::write(host.join("conf.txt"), "from host").map_err(s)?;
    std::fs::write(outside.join("secret"), "secret").map_err(s)?;
    std::os::unix::fs::symlink(outside.join("secret"), host.join("escape")).map_err(s)?;

    let root = tmp.join("kubelet");
    let m = VolumeManager::new(root.clone(), Arc::new(crate::sys::mount::Linux));
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": {"containers": [], "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host, "type": "Directory"}}]}
    }))
    .map_err(|e| e.to_string())?;
    let c: Container = serde_json::from_value(json!({"name": "app", "volumeMounts": [
        {"name": "data", "mountPath": "/logs", "subPath": "logs/app"},
        {"name": "host", "mountPath": "/etc/conf", "subPath": "conf.txt"}]}))
    .map_err(|e| e.to_string())?;
    let vols = m
        .setup_pod(&p, &Objects::default())
        .map_err(|e| e.to_string())?;
    let ms = m
        .container_mounts(&p, &c, &vols, &MountContext::default())
        .map_err(|e| e.to_string())?;
    let pod_dir = root.join("pods/uid-1");
    let data = pod_dir.join("volumes/kubernetes.io~empty-dir/data");
    let (dir_t, file_t) = (
        PathBuf::from(&ms[0].host_path),
        PathBuf::from(&ms[1].host_path),
    );
    check(
        dir_t == pod_dir.join("volume-subpaths/data/app/0")
            && file_t == pod_dir.join("volume-subpaths/host/app/1"),
        &format!("targets {dir_t:?} {file_t:?}"),
    )?;
    check(
        mounts_on(&dir_t)? == 1 && mounts_on(&file_t)? == 1,
        "one mount on each target",
    )?;
    // Through the targets, the volume's own files.
    std::fs::write(dir_t.join("x"), "through").map_err(s)?;
    check(
        std::fs::read_to_string(data.join("logs/app/x")).map_err(s)? == "through",
        "a file written in the dir target is in the volume",
    )?;
    check(
        std::fs::read_to_string(&file_t).map_err(s)? == "from host",
        "the file target reads the host's file",
    )?;
    std::fs::write(&file_t, "changed").map_err(s)?;
    check(
        std::fs::read_to_string(host.join("conf.txt")).map_err(s)? == "changed",
        "a write to the file target reaches the host's file",
    )?;

    // A second start mounts nothing more.
    m.container_mounts(&p, &c, &vols, &MountContext::default())
        .map_err(|e| e.to_string())?;
    check(
        mounts_on(&dir_t)? == 1 && mounts_on(&file_t)? == 1,
        "still one mount on each target after a second start",
    )?;

    // The container swaps its subPath for a symlink out of the volume: the mount made
    // keeps the directory it was made of, and a new start is refused.
    std::fs::rename(data.join("logs/app"), data.join("logs/old")).map_err(s)?;
    std::os::unix::fs::symlink(&outside, data.join("logs/app")).map_err(s)?;
    check(
        std::fs::read_to_string(dir_t.join("x")).map_err(s)? == "through"
            && !dir_t.join("secret").exists(),
        "the mount still shows the directory opened",
    )?;
    let refused = m
        .container_mounts(&p, &c, &vols, &MountContext::default())
        .map(|_| ())
        .map_err(|e| e.to_string());
    check(
        refused
            == Err("pod ns/web container app volumeMount data: failed to prepare subPath for volumeMount \"data\" of container \"app\"".into()),
        &format!("swapped subPath: {refused:?}"),
    )?;
    let escape: Container = serde_json::from_value(json!({"name": "app", "volumeMounts": [
        {"name": "host", "mountPath": "/s", "subPath": "escape"}]}))
    .map_err(|e| e.to_string())?;
    check(
        m.container_mounts(&p, &escape, &vols, &MountContext::default())
            .is_err(),
        "a subPath symlink to the host is refused",
    )?;

    // A fresh manager, as after a kill -9 of berth, tears it all down.
    VolumeManager::new(root.clone(), Arc::new(crate::sys::mount::Linux))
        .teardown_pod("uid-1")
        .map_err(|e| e.to_string())?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(s)?;
    check(
        !info.contains(pod_dir.to_str().unwrap_or_default()),
        "no mount left below the pod's dir",
    )?;
    check(!pod_dir.exists(), "pod dir removed")?;
    check(
        std::fs::read_to_string(host.join("conf.txt")).map_err(s)? == "changed"
            && std::fs::read_to_string(outside.join("secret")).map_err(s)? == "secret",
        "the host's files are untouched",
    )
}
