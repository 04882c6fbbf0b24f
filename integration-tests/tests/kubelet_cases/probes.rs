//! Kubelet cases about restarts and probes: the crash-loop back-off, restart policies and
//! the phases they end in, liveness and readiness.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_integration_tests::kubelet::{Kubelet, Pod};
use serde_json::json;

use super::{IDLE, apply, host_path, pod, running, sh, shared_dir};

pub fn crash_loop_back_off_doubles(k: &mut Kubelet) -> anyhow::Result<()> {
    apply(
        k,
        "crash",
        &[pod(
            "crash",
            json!({"containers": [sh(k, "crash", "exit 1")]}),
        )],
    )?;
    // Upstream: the first restart is immediate, then the back-off is 10 s, 20 s, 40 s...
    // measured from the container's exit to the next start.
    let mut seen: Vec<(i64, Instant)> = Vec::new();
    let mut back_off_seen = false;
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.last().map(|s| s.0) < Some(3) {
        ensure!(
            Instant::now() < deadline,
            "restarts {:?} within 90 s",
            seen.iter().map(|s| s.0).collect::<Vec<_>>()
        );
        if let Some(p) = k.pod("crash") {
            let n = p.restarts("crash");
            if seen.last().map(|s| s.0) != Some(n) {
                seen.push((n, Instant::now()));
            }
            if p.waiting_reason("crash") == "CrashLoopBackOff" {
                back_off_seen = true;
                ensure!(p.phase() == "Running", "phase {}", p.phase());
                ensure!(p.condition("Ready") == "False");
                let last = &p.container("crash").context("status")?["lastState"]["terminated"];
                ensure!(last["exitCode"] == 1 && last["reason"] == "Error", "{last}");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ensure!(back_off_seen, "never saw waiting reason CrashLoopBackOff");
    let at = |n: i64| seen.iter().find(|s| s.0 == n).map(|s| s.1);
    let (Some(r1), Some(r2), Some(r3)) = (at(1), at(2), at(3)) else {
        bail!(
            "restart counts skipped a value: {:?}",
            seen.iter().map(|s| s.0).collect::<Vec<_>>()
        );
    };
    let (first, second) = (r2 - r1, r3 - r2);
    ensure!(
        first >= Duration::from_secs(9) && first < Duration::from_secs(16),
        "first back-off {first:?}, want about 10 s"
    );
    ensure!(
        second >= Duration::from_secs(19) && second < Duration::from_secs(27),
        "second back-off {second:?}, want about 20 s"
    );
    Ok(())
}

pub fn restart_policies_end_in_phases(k: &mut Kubelet) -> anyhow::Result<()> {
    let once = |name: &str, policy: &str, script: &str| {
        let mut spec = json!({"restartPolicy": policy, "containers": [sh(k, "c", script)],
                              "volumes": [{"name": "state", "emptyDir": {}}]});
        spec["containers"][0]["volumeMounts"] = json!([{"name": "state", "mountPath": "/state"}]);
        pod(name, spec)
    };
    // Fails once, then succeeds: the emptyDir outlives the container.
    let flaky = "if [ -e /state/ran ]; then exit 0; fi; touch /state/ran; exit 2";
    apply(k, "never-ok", &[once("never-ok", "Never", "exit 0")])?;
    apply(k, "never-fail", &[once("never-fail", "Never", "exit 3")])?;
    apply(k, "onfailure", &[once("onfailure", "OnFailure", flaky)])?;
    apply(k, "always", &[once("always", "Always", flaky)])?;
    let done = |p: &Pod| p.terminated("c").is_some() && matches!(p.phase(), "Succeeded" | "Failed");
    let t = Duration::from_secs(60);

    let p = k.wait_for("never-ok", done, t)?;
    let term = p.terminated("c").context("terminated")?;
    ensure!(p.phase() == "Succeeded", "never-ok: {}", p.phase());
    ensure!(
        term["reason"] == "Completed" && term["exitCode"] == 0,
        "{term}"
    );
    ensure!(p.condition("Ready") == "False" && p.restarts("c") == 0);
    let ready = p.0["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    ensure!(ready["reason"] == "PodCompleted", "Ready condition {ready}");

    let p = k.wait_for("never-fail", done, t)?;
    let term = p.terminated("c").context("terminated")?;
    ensure!(p.phase() == "Failed", "never-fail: {}", p.phase());
    ensure!(term["reason"] == "Error" && term["exitCode"] == 3, "{term}");
    ensure!(p.restarts("c") == 0);

    let p = k.wait_for("onfailure", done, t)?;
    ensure!(p.phase() == "Succeeded", "onfailure: {}", p.phase());
    ensure!(
        p.restarts("c") == 1,
        "onfailure restarts {}",
        p.restarts("c")
    );
    let last = &p.container("c").context("status")?["lastState"]["terminated"];
    ensure!(last["exitCode"] == 2 && last["reason"] == "Error", "{last}");

    // restartPolicy Always restarts even a container that exited 0, and the pod stays
    // Running (with the back-off in between).
    let p = k.wait_for("always", |p| p.restarts("c") >= 2, t)?;
    ensure!(p.phase() == "Running", "always: {}", p.phase());
    Ok(())
}

pub fn liveness_failure_restarts_container(k: &mut Kubelet) -> anyhow::Result<()> {
    let mut c = sh(
        k,
        "c",
        &format!("touch /tmp/alive; sleep 3; rm /tmp/alive; {IDLE}"),
    );
    c["livenessProbe"] = json!({"exec": {"command": ["cat", "/tmp/alive"]},
                                "periodSeconds": 1, "failureThreshold": 2});
    apply(
        k,
        "live",
        &[pod(
            "live",
            json!({"containers": [c],
                                            "terminationGracePeriodSeconds": 2}),
        )],
    )?;
    let first = k.wait_for("live", running("c"), Duration::from_secs(60))?;
    let first_id = first.container_id("c").to_string();
    let p = k.wait_for(
        "live",
        |p| p.restarts("c") >= 1 && p.running("c"),
        Duration::from_secs(60),
    )?;
    ensure!(
        p.container_id("c") != first_id,
        "restarted with the same container ID"
    );
    let last = &p.container("c").context("status")?["lastState"]["terminated"];
    // sh ignores nothing here: SIGTERM ends it (143) or the grace period's SIGKILL (137).
    ensure!(
        last["reason"] == "Error" && (last["exitCode"] == 143 || last["exitCode"] == 137),
        "{last}"
    );
    ensure!(
        k.log().contains("Unhealthy"),
        "no Unhealthy event in the log"
    );
    ensure!(
        k.log().contains("Liveness probe failed"),
        "no probe message in the log"
    );
    Ok(())
}

pub fn readiness_follows_probe(k: &mut Kubelet) -> anyhow::Result<()> {
    let dir = shared_dir(k, "ready")?;
    let mut c = sh(k, "c", IDLE);
    c["readinessProbe"] = json!({"exec": {"command": ["cat", "/ready/ok"]}, "periodSeconds": 1});
    c["volumeMounts"] = json!([{"name": "ready", "mountPath": "/ready"}]);
    apply(
        k,
        "ready",
        &[pod(
            "ready",
            json!({"containers": [c], "volumes": [host_path("ready", &dir)]}),
        )],
    )?;
    let p = k.wait_for("ready", running("c"), Duration::from_secs(60))?;
    ensure!(p.condition("Ready") == "False" && p.condition("ContainersReady") == "False");
    let not_ready =
        |p: &Pod| p.condition("Ready") == "False" && p.condition("ContainersReady") == "False";
    for round in 0..2 {
        std::fs::write(dir.join("ok"), "ok")?;
        let p = k
            .wait_for("ready", Pod::ready, Duration::from_secs(15))
            .with_context(|| format!("round {round}: file created"))?;
        ensure!(p.container("c").context("status")?["ready"] == true);
        std::fs::remove_file(dir.join("ok"))?;
        k.wait_for("ready", not_ready, Duration::from_secs(15))
            .with_context(|| format!("round {round}: file removed"))?;
    }
    // Readiness never restarts a container.
    ensure!(k.pod("ready").map(|p| p.restarts("c")) == Some(0));
    Ok(())
}
