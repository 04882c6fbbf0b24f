//! Kubelet case about volumeMounts with a subPath: each is a bind mount below the pod's
//! dir of a safely opened file, read and written through from the container, kept (not
//! stacked) across a container restart and a kill -9 of the kubelet, refused when it
//! leads out of the volume, and unmounted when the pod goes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use berth_integration_tests::kubelet::{Kubelet, Pod};
use berth_integration_tests::util::{unescape_mount_path, wait_for};
use serde_json::json;

use super::{IDLE, apply, host_path, pod, running, sh, shared_dir};

/// The mount points below `dir` in the kubelet's mount table, one entry per mount.
fn mounts_below(k: &Kubelet, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let pid = k.pid().context("the kubelet is not running")?;
    let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect())
}

pub fn subpath_mounts_safely(k: &mut Kubelet) -> anyhow::Result<()> {
    let out = shared_dir(k, "subpath")?;
    let outside = k.env().subdir("outside")?;
    std::fs::write(outside.join("secret"), "host secret")?;
    std::fs::write(out.join("conf.txt"), "from host\n")?;
    std::fs::create_dir(out.join("data"))?;
    std::os::unix::fs::symlink(outside.join("secret"), out.join("escape"))?;
    std::os::unix::fs::symlink(&outside, out.join("escape-dir"))?;

    // The first run writes through its subPaths and fails; the restart mounts them again.
    let script = format!(
        r#"if [ ! -e /out/ran ]; then
  cat /etc/conf.txt > /out/read
  echo from-pod > /data/written
  echo appended >> /etc/conf.txt
  echo made > /made/f
  echo expr > /expr/f
  touch /out/ran
  exit 1
fi
{IDLE}"#
    );
    let mut c = sh(k, "c", &script);
    c["volumeMounts"] = json!([
        {"name": "out", "mountPath": "/out"},
        {"name": "out", "mountPath": "/etc/conf.txt", "subPath": "conf.txt"},
        {"name": "out", "mountPath": "/data", "subPath": "data"},
        {"name": "scratch", "mountPath": "/made", "subPath": "made/deeper"},
        {"name": "out", "mountPath": "/expr", "subPathExpr": "$(POD_NAME)-dir"},
    ]);
    c["env"] =
        json!([{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]);
    let spec = json!({"containers": [c], "terminationGracePeriodSeconds": 1, "volumes": [
        host_path("out", &out),
        {"name": "scratch", "emptyDir": {}},
    ]});
    apply(k, "subpath", &[pod("subpath", spec)])?;
    let p = k.wait_for(
        "subpath",
        |p: &Pod| running("c")(p) && p.restarts("c") == 1,
        Duration::from_secs(90),
    )?;
    let pods_dir = std::fs::canonicalize(k.kubelet_root.join("pods"))?;
    let pod_dir = pods_dir.join(p.uid());

    ensure!(std::fs::read_to_string(out.join("read"))? == "from host\n");
    ensure!(std::fs::read_to_string(out.join("data/written"))? == "from-pod\n");
    ensure!(std::fs::read_to_string(out.join("conf.txt"))? == "from host\nappended\n");
    let made = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch/made/deeper");
    ensure!(std::fs::read_to_string(made.join("f"))? == "made\n");
    // subPathExpr expands the container's environment.
    let expr = out.join(format!("{}-dir/f", Kubelet::full_name("subpath")));
    ensure!(
        std::fs::read_to_string(&expr).ok().as_deref() == Some("expr\n"),
        "{} not written through the subPathExpr mount",
        expr.display()
    );
    // One bind mount per subPath, at upstream's place, still one after the restart.
    let subpaths = pod_dir.join("volume-subpaths");
    let want = [
        subpaths.join("out/c/1"),
        subpaths.join("out/c/2"),
        subpaths.join("out/c/4"),
        subpaths.join("scratch/c/3"),
    ];
    let mut got = mounts_below(k, &subpaths)?;
    got.sort();
    ensure!(got == want, "subPath mounts {got:?}, want {want:?}");

    // A kill -9 of the kubelet forgets nothing that teardown needs.
    k.kill9();
    k.restart()?;
    let after = k.wait_for("subpath", running("c"), Duration::from_secs(60))?;
    ensure!(after.container_id("c") == p.container_id("c"));

    // A subPath that is a symlink to the host, out of the volume: refused with upstream's
    // message, nothing mounted.
    for (name, sub) in [("escape", "escape"), ("escape-dir", "escape-dir")] {
        let mut c = sh(k, "c", IDLE);
        c["volumeMounts"] = json!([{"name": "out", "mountPath": "/x", "subPath": sub}]);
        let spec = json!({"containers": [c], "volumes": [host_path("out", &out)]});
        apply(k, name, &[pod(name, spec)])?;
        let e = k.wait_for(
            name,
            |p: &Pod| p.waiting_reason("c") == "CreateContainerConfigError",
            Duration::from_secs(60),
        )?;
        let msg = e
            .container("c")
            .map(|c| c["state"]["waiting"]["message"].to_string())
            .unwrap_or_default();
        ensure!(
            msg.contains(r#"failed to prepare subPath for volumeMount \"out\" of container \"c\""#),
            "{name}: message {msg}"
        );
        let refused = pods_dir.join(e.uid()).join("volume-subpaths");
        ensure!(
            mounts_below(k, &refused)?.is_empty(),
            "{name}: something mounted"
        );
    }
    ensure!(std::fs::read_to_string(outside.join("secret"))? == "host secret");

    // Deleted: no mount is left below any pod dir, and the pod dirs go.
    for name in ["subpath", "escape", "escape-dir"] {
        k.remove_manifest(name)?;
    }
    let gone = wait_for(Duration::from_secs(60), || {
        let left = mounts_below(k, &pods_dir).ok()?;
        (left.is_empty() && !pod_dir.exists()).then_some(())
    });
    ensure!(
        gone.is_some(),
        "left after delete: mounts {:?}, pod dir {}",
        mounts_below(k, &pods_dir)?,
        pod_dir.exists()
    );
    // The host's files are untouched by the teardown.
    ensure!(std::fs::read_to_string(out.join("data/written"))? == "from-pod\n");
    ensure!(std::fs::read_to_string(outside.join("secret"))? == "host secret");
    Ok(())
}
