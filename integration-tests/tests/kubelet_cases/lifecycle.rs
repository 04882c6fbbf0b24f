//! Kubelet cases about the order things start and stop in, termination, adoption after
//! a crash, rejected manifests and churn.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::kubelet::{Kubelet, Pod};
use serde_json::json;

use super::{
    IDLE, apply, host_path, lines, pod, pod_cgroups, running, sh, shared_dir, wait_pod_gone,
};

/// A container that appends `<name> start` to /order/log, then on SIGTERM
/// `<name> stop`, and exits 0.
fn recorder(k: &Kubelet, name: &str) -> serde_json::Value {
    let mut c = sh(
        k,
        name,
        &format!(
            "echo '{name} start' >> /order/log; \
             trap 'echo \"{name} stop\" >> /order/log; exit 0' TERM; {IDLE}"
        ),
    );
    c["volumeMounts"] = json!([{"name": "order", "mountPath": "/order"}]);
    c
}

pub fn init_containers_and_sidecars_in_order(k: &mut Kubelet) -> anyhow::Result<()> {
    let dir = shared_dir(k, "order")?;
    let init = |name: &str| {
        let mut c = sh(k, name, &format!("echo '{name} done' >> /order/log"));
        c["volumeMounts"] = json!([{"name": "order", "mountPath": "/order"}]);
        c
    };
    let sidecar = |name: &str| {
        let mut c = recorder(k, name);
        c["restartPolicy"] = json!("Always");
        c
    };
    let spec = json!({
        "initContainers": [init("init-a"), sidecar("side-b"), init("init-c"), sidecar("side-d")],
        "containers": [recorder(k, "main")],
        "volumes": [host_path("order", &dir)],
        "terminationGracePeriodSeconds": 10,
    });
    apply(k, "order", &[pod("order", spec)])?;
    let p = k.wait_for("order", running("main"), Duration::from_secs(90))?;
    ensure!(p.condition("Initialized") == "True");
    for side in ["side-b", "side-d"] {
        ensure!(p.running(side), "sidecar {side} not running beside main");
    }
    for init in ["init-a", "init-c"] {
        let t = p.terminated(init).context("init container status")?;
        ensure!(
            t["reason"] == "Completed" && t["exitCode"] == 0,
            "{init}: {t}"
        );
    }
    // main's line is written once it runs; give the file a moment.
    let log = dir.join("log");
    berth_integration_tests::util::wait_for(Duration::from_secs(10), || {
        (lines(&log).len() >= 5).then_some(())
    });
    let want_start = [
        "init-a done",
        "side-b start",
        "init-c done",
        "side-d start",
        "main start",
    ];
    ensure!(lines(&log) == want_start, "start order {:?}", lines(&log));

    let uid = p.uid().to_string();
    k.remove_manifest("order")?;
    wait_pod_gone(k, &uid, Duration::from_secs(60))?;
    // Main containers stop first, then the sidecars in reverse order of their start.
    let stops: Vec<String> = lines(&log).into_iter().skip(want_start.len()).collect();
    ensure!(
        stops == ["main stop", "side-d stop", "side-b stop"],
        "stop order {stops:?}"
    );
    Ok(())
}

pub fn lifecycle_hooks_in_order(k: &mut Kubelet) -> anyhow::Result<()> {
    let dir = shared_dir(k, "hooks")?;
    let mut c = recorder(k, "c");
    c["lifecycle"] = json!({
        "postStart": {"exec": {"command": ["sh", "-c", "echo poststart >> /order/log"]}},
        "preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /order/log"]}},
    });
    let spec = json!({"containers": [c], "volumes": [host_path("order", &dir)],
                      "terminationGracePeriodSeconds": 10});
    apply(k, "hooks", &[pod("hooks", spec)])?;
    let p = k.wait_for("hooks", running("c"), Duration::from_secs(60))?;
    let log = dir.join("log");
    // The container is Running only once its postStart hook has returned.
    let started = lines(&log);
    ensure!(started.contains(&"poststart".to_string()), "{started:?}");
    ensure!(started.contains(&"c start".to_string()), "{started:?}");
    let uid = p.uid().to_string();
    k.remove_manifest("hooks")?;
    wait_pod_gone(k, &uid, Duration::from_secs(60))?;
    let all = lines(&log);
    let tail: Vec<&str> = all.iter().skip(2).map(String::as_str).collect();
    ensure!(
        tail == ["prestop", "c stop"],
        "preStop then SIGTERM: {all:?}"
    );
    Ok(())
}

pub fn grace_period_ends_in_sigkill(k: &mut Kubelet) -> anyhow::Result<()> {
    let c = json!({"name": "stubborn", "image": k.images.get(&Image::IgnoreSigterm),
                   "imagePullPolicy": "IfNotPresent"});
    apply(
        k,
        "stubborn",
        &[pod(
            "stubborn",
            json!({"containers": [c], "terminationGracePeriodSeconds": 5}),
        )],
    )?;
    let p = k.wait_for("stubborn", running("stubborn"), Duration::from_secs(60))?;
    let uid = p.uid().to_string();
    let t0 = Instant::now();
    k.remove_manifest("stubborn")?;
    let gone = wait_pod_gone(k, &uid, Duration::from_secs(40))? - t0;
    // SIGTERM is ignored: the process dies at the deadline, from SIGKILL, not before.
    ensure!(
        gone >= Duration::from_millis(4500) && gone < Duration::from_secs(12),
        "pod went away {gone:?} after deletion, want about 5 s"
    );
    // The kubelet shows the deletion as a watch does: the pod once more, deletionTimestamp set.
    k.wait_for("stubborn", Pod::deleted, Duration::from_secs(10))?;
    Ok(())
}

pub fn kill9_and_restart_adopts_pods(k: &mut Kubelet) -> anyhow::Result<()> {
    let mut spec = json!({
        "restartPolicy": "OnFailure",
        "containers": [sh(k, "c", &format!("if [ ! -e /state/ran ]; then touch /state/ran; exit 1; fi; {IDLE}"))],
        "volumes": [{"name": "state", "emptyDir": {}}],
    });
    spec["containers"][0]["volumeMounts"] = json!([{"name": "state", "mountPath": "/state"}]);
    apply(k, "restarted", &[pod("restarted", spec)])?;
    apply(
        k,
        "steady",
        &[pod("steady", json!({"containers": [sh(k, "c", IDLE)]}))],
    )?;
    let t = Duration::from_secs(60);
    let steady = k.wait_for("steady", running("c"), t)?;
    let restarted = k.wait_for("restarted", |p| running("c")(p) && p.restarts("c") == 1, t)?;

    k.kill9();
    // The pods run on without the kubelet.
    for p in [&steady, &restarted] {
        let cg = k.pod_cgroup(super::cgroup_controller(k), p.uid());
        ensure!(
            cg.as_deref().is_some_and(|d| super::procs_below(d) > 0),
            "pod {} stopped with the kubelet",
            p.uid()
        );
    }
    k.restart()?;
    for (name, before) in [("steady", &steady), ("restarted", &restarted)] {
        let after = k.wait_for(name, running("c"), t)?;
        ensure!(after.uid() == before.uid(), "{name}: uid changed");
        ensure!(
            after.container_id("c") == before.container_id("c"),
            "{name}: container {} replaced by {}",
            before.container_id("c"),
            after.container_id("c")
        );
        ensure!(
            after.restarts("c") == before.restarts("c"),
            "{name}: restarts {} -> {}",
            before.restarts("c"),
            after.restarts("c")
        );
    }
    // Still the same a few syncs later: adoption did not start a second copy.
    std::thread::sleep(Duration::from_secs(5));
    let now = k.pod("steady").context("steady")?;
    ensure!(now.container_id("c") == steady.container_id("c") && now.restarts("c") == 0);
    ensure!(
        pod_cgroups(k).len() == 2,
        "pod cgroups {:?}",
        pod_cgroups(k)
    );
    Ok(())
}

pub fn bad_manifests_rejected_valid_pod_untouched(k: &mut Kubelet) -> anyhow::Result<()> {
    apply(
        k,
        "good",
        &[pod("good", json!({"containers": [sh(k, "c", IDLE)]}))],
    )?;
    let good = k.wait_for("good", running("c"), Duration::from_secs(60))?;
    let img = k.images.get(&Image::Busybox).to_string();
    let bad = [
        // (file, text, the field the log must name); each file's pod is `obj-<file>`
        (
            "unknown-field",
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: obj-unknown-field\nspec:\n  containers:\n  \
             - name: c\n    image: {img}\n    imagePullPolicy: IfNotPresent\n    imagePolicy: Always\n"
            ),
            "imagePolicy",
        ),
        (
            "bad-quantity",
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: obj-bad-quantity\nspec:\n  containers:\n  \
             - name: c\n    image: {img}\n    imagePullPolicy: IfNotPresent\n    resources:\n      \
             limits:\n        memory: 12 parsecs\n"
            ),
            "memory",
        ),
        (
            "duplicate-name",
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: obj-duplicate-name\nspec:\n  containers:\n  \
             - name: c\n    image: {img}\n    imagePullPolicy: IfNotPresent\n  \
             - name: c\n    image: {img}\n    imagePullPolicy: IfNotPresent\n"
            ),
            "spec.containers[1].name",
        ),
        (
            "missing-image",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: obj-missing-image\nspec:\n  \
             containers:\n  - name: c\n"
                .to_string(),
            "spec.containers[0].image",
        ),
    ];
    for (file, text, _) in &bad {
        k.write_manifest(file, text)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = k.log();
        let missing: Vec<&str> = bad
            .iter()
            .filter(|(file, _, field)| {
                // The message may wrap: the line naming the file and the two after it.
                let lines: Vec<&str> = log.lines().collect();
                !(0..lines.len()).any(|i| {
                    let text = lines[i..(i + 3).min(lines.len())].join(" ");
                    lines[i].contains(&format!("{file}.yaml"))
                        && text.contains(&format!("obj-{file}"))
                        && text.contains(field)
                })
            })
            .map(|(file, _, _)| *file)
            .collect();
        if missing.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no log line names file, object and field for {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing of the rejected manifests runs; the valid pod was not touched.
    for (file, _, _) in &bad {
        ensure!(
            k.pod(file).is_none(),
            "rejected manifest {file} became a pod"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let now = k.pod("good").context("good")?;
    ensure!(now.running("c") && now.container_id("c") == good.container_id("c"));
    ensure!(now.restarts("c") == 0 && pod_cgroups(k).len() == 1);
    Ok(())
}

pub fn create_delete_cycles_leave_nothing(k: &mut Kubelet) -> anyhow::Result<()> {
    const PODS: usize = 200;
    const BATCH: usize = 20;
    for batch in 0..PODS / BATCH {
        let names: Vec<String> = (0..BATCH).map(|i| format!("churn-{batch}-{i}")).collect();
        for n in &names {
            apply(
                k,
                n,
                &[pod(
                    n,
                    json!({"containers": [sh(k, "c", IDLE)],
                                          "terminationGracePeriodSeconds": 1}),
                )],
            )?;
        }
        let mut uids = Vec::new();
        for n in &names {
            uids.push(
                k.wait_for(n, running("c"), Duration::from_secs(120))?
                    .uid()
                    .to_string(),
            );
        }
        for n in &names {
            k.remove_manifest(n)?;
        }
        for uid in &uids {
            wait_pod_gone(k, uid, Duration::from_secs(60))
                .with_context(|| format!("batch {batch}"))?;
        }
    }
    // Give the kubelet a moment to finish removing what it stopped.
    let clean = berth_integration_tests::util::wait_for(Duration::from_secs(30), || {
        pod_cgroups(k).is_empty().then_some(())
    });
    ensure!(clean.is_some(), "pod cgroups left: {:?}", pod_cgroups(k));
    let pods_dir = k.kubelet_root.join("pods");
    let left = || -> Vec<std::ffi::OsString> {
        std::fs::read_dir(&pods_dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    // Orphaned pod dirs go at housekeeping, every few seconds.
    berth_integration_tests::util::wait_for(Duration::from_secs(30), || {
        left().is_empty().then_some(())
    });
    ensure!(
        left().is_empty(),
        "pod dirs left in {}: {:?}",
        pods_dir.display(),
        left()
    );
    k.stop(Duration::from_secs(60))?;
    let sandboxes = k.runtime_sandboxes()?;
    ensure!(
        sandboxes.is_empty(),
        "the runtime still lists {sandboxes:?}"
    );
    // No holder, shim or kubelet outlives its pods: only containerd itself may be left.
    let procs: Vec<_> = berth_integration_tests::leak::marked(k.env().id())
        .into_iter()
        .filter(|(pid, _)| Some(*pid as u32) != k.runtime_pid())
        .collect();
    ensure!(procs.is_empty(), "processes left: {procs:?}");
    // host-local keeps a file per leased address; only its bookkeeping may remain.
    let ipam = k.env().dir().join("ipam");
    let leases = walk_files(&ipam)
        .into_iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("10."))
        })
        .collect::<Vec<_>>();
    ensure!(leases.is_empty(), "addresses still leased: {leases:?}");
    Ok(())
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
