//! Kubelet case about a pod's `securityContext.fsGroup`: its emptyDir and configMap
//! volumes belong to the group (setgid directories, group-readable files), what the
//! container writes there does too, the container runs with the group, and a hostPath
//! volume is left as it was. Read back from the host, on the volumes' own files.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use berth_integration_tests::kubelet::Kubelet;
use berth_integration_tests::util::wait_for;
use serde_json::json;

use super::{IDLE, apply, host_path, pod, running, sh, shared_dir};

const FS_GROUP: u32 = 2000;

/// Group and permission bits (with setgid) of `path`, following symlinks.
fn group_and_mode(path: &Path) -> anyhow::Result<(u32, u32)> {
    let m = std::fs::metadata(path).with_context(|| path.display().to_string())?;
    Ok((m.gid(), m.mode() & 0o7777))
}

pub fn fs_group_owns_the_volumes(k: &mut Kubelet) -> anyhow::Result<()> {
    let host = shared_dir(k, "fsgroup")?;
    let host_file = host.join("hostfile");
    std::fs::write(&host_file, "host\n")?;
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o600))?;
    let host_before = group_and_mode(&host)?;

    let script = format!(
        r#"id -G > /scratch/groups
cat /cfg/greeting > /scratch/read
echo written > /scratch/written
touch /scratch/done
{IDLE}"#
    );
    let mut c = sh(k, "c", &script);
    c["volumeMounts"] = json!([
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "cfg", "mountPath": "/cfg"},
        {"name": "host", "mountPath": "/host"},
    ]);
    let spec = json!({
        "containers": [c],
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsUser": 1000, "fsGroup": FS_GROUP},
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            // Owner-only in the manifest: the container's user reads it through the group.
            {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600}},
            host_path("host", &host),
        ],
    });
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                    "data": {"greeting": "hello"}});
    apply(k, "fsgroup", &[cm, pod("fsgroup", spec)])?;
    let p = k.wait_for("fsgroup", running("c"), Duration::from_secs(60))?;
    let pod_dir = std::fs::canonicalize(k.kubelet_root.join("pods"))?.join(p.uid());
    let scratch = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch");
    wait_for(Duration::from_secs(10), || {
        scratch.join("done").exists().then_some(())
    })
    .context("the container never wrote /scratch/done")?;

    // The emptyDir: the group's, setgid, so the container's file is the group's too.
    let (gid, mode) = group_and_mode(&scratch)?;
    ensure!(
        gid == FS_GROUP && mode & 0o2000 != 0,
        "emptyDir gid {gid} mode {mode:o}"
    );
    let written = std::fs::metadata(scratch.join("written"))?;
    ensure!(
        written.gid() == FS_GROUP && written.uid() == 1000,
        "written file uid {} gid {}",
        written.uid(),
        written.gid()
    );
    let groups = std::fs::read_to_string(scratch.join("groups"))?;
    ensure!(
        groups.split_whitespace().any(|g| g == "2000"),
        "id -G in the container: {groups:?}"
    );
    ensure!(
        std::fs::read_to_string(scratch.join("read"))? == "hello",
        "the container could not read the configMap file"
    );

    // The configMap: its directory setgid, its file group-readable (0600 + g+r).
    let cfg = pod_dir.join("volumes/kubernetes.io~configmap/cfg");
    let (gid, mode) = group_and_mode(&cfg)?;
    ensure!(
        gid == FS_GROUP && mode & 0o2000 != 0,
        "configMap dir gid {gid} mode {mode:o}"
    );
    let (gid, mode) = group_and_mode(&cfg.join("greeting"))?;
    ensure!(
        gid == FS_GROUP && mode == 0o640,
        "configMap file gid {gid} mode {mode:o}"
    );

    // The hostPath: untouched.
    ensure!(
        group_and_mode(&host)? == host_before,
        "hostPath dir changed"
    );
    ensure!(
        group_and_mode(&host_file)? == (0, 0o600),
        "hostPath file changed: {:?}",
        group_and_mode(&host_file)?
    );

    k.remove_manifest("fsgroup")?;
    Ok(())
}
