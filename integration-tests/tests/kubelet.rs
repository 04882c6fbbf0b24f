//! berth's kubelet, standalone (`berth run`), seen from the outside as a kubectl user sees
//! it: static pod manifests in, pod status (`-o json`) out, and the kernel's state (cgroups,
//! the pods' own files, HTTP through a hostPort) read back directly.
//!
//! Every case runs twice: on berth's in-process runtime and on Debian's containerd (CRI
//! plugin, runc, cgroupfs) over CRI, so the kubelet is held to the same behaviour whatever
//! runtime it drives. The asserts carry upstream kubelet's values: phases, condition types,
//! reason strings (`CrashLoopBackOff`, `Completed`, `Error`), back-off delays.
//!
//! A case is `fn(&mut Kubelet) -> anyhow::Result<()>`; the kubelet starts with the
//! fixture images imported and an empty manifests dir.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_integration_tests::TestEnv;
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::kubelet::{GATEWAY, Kubelet, Pod, RuntimeKind};
use serde_json::{Value, json};

#[path = "kubelet_cases/lifecycle.rs"]
mod lifecycle;
#[path = "kubelet_cases/pods.rs"]
mod pods;
use lifecycle::*;
use pods::*;

type Case = fn(&mut Kubelet) -> anyhow::Result<()>;

/// The images every kubelet starts with.
fn images() -> Vec<Image> {
    vec![
        Image::Busybox,
        Image::Httpd { port: 8080 },
        Image::IgnoreSigterm,
    ]
}

/// Starts a kubelet on `runtime` in a fresh environment and runs `case`; a failure panics
/// with the tail of the kubelet's log.
fn on(runtime: RuntimeKind, case: Case) {
    let env = TestEnv::new().expect("env");
    let mut k = Kubelet::start(&env, runtime, &images()).expect("start berth run");
    if let Err(e) = case(&mut k) {
        panic!(
            "{e:#}\n{} kubelet log (tail):\n{}",
            runtime.name(),
            k.log_tail(60)
        );
    }
}

fn on_berth(case: Case) {
    on(RuntimeKind::Berth, case);
}

fn on_containerd(case: Case) {
    on(RuntimeKind::Containerd, case);
}

/// A `#[test]` per case in module `$target`, each running the case through `$runner`.
macro_rules! kubelet_cases {
    ($target:ident, $runner:path, cases { $($case:ident),* $(,)? }) => {
        mod $target {
            $(
                #[test]
                fn $case() {
                    berth_integration_tests::require_root!();
                    $runner(super::$case);
                }
            )*
        }
    };
}

kubelet_cases!(
    berth,
    super::on_berth,
    cases {
        web_pod_ready_and_served_through_host_port,
        crash_loop_back_off_doubles,
        restart_policies_end_in_phases,
        liveness_failure_restarts_container,
        readiness_follows_probe,
        init_containers_and_sidecars_in_order,
        lifecycle_hooks_in_order,
        grace_period_ends_in_sigkill,
        env_and_volume_contents,
        cgroup_limits_written,
        kill9_and_restart_adopts_pods,
        bad_manifests_rejected_valid_pod_untouched,
        create_delete_cycles_leave_nothing,
    }
);

kubelet_cases!(
    containerd,
    super::on_containerd,
    cases {
        web_pod_ready_and_served_through_host_port,
        crash_loop_back_off_doubles,
        restart_policies_end_in_phases,
        liveness_failure_restarts_container,
        readiness_follows_probe,
        init_containers_and_sidecars_in_order,
        lifecycle_hooks_in_order,
        grace_period_ends_in_sigkill,
        env_and_volume_contents,
        cgroup_limits_written,
        kill9_and_restart_adopts_pods,
        bad_manifests_rejected_valid_pod_untouched,
        create_delete_cycles_leave_nothing,
    }
);

/// The examples in examples/ on each runtime (they start their own kubelet, with the
/// examples' image imported).
#[test]
fn examples_on_berth() {
    berth_integration_tests::require_root!();
    examples_run(RuntimeKind::Berth);
}

#[test]
fn examples_on_containerd() {
    berth_integration_tests::require_root!();
    examples_run(RuntimeKind::Containerd);
}

// ---- helpers shared by the cases ----

/// A container running `script` in busybox (`sh -c`), pulled only if missing (the fixture
/// images are `:latest`, which would default to Always).
fn sh(k: &Kubelet, name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": k.images.get(&Image::Busybox),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
    })
}

/// A Pod manifest named `name` with `spec`.
fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

/// Writes `docs` (JSON is YAML) as one manifest file `name`, documents separated by `---`.
fn apply(k: &Kubelet, name: &str, docs: &[Value]) -> anyhow::Result<()> {
    let text = docs
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n");
    k.write_manifest(name, &text)
}

/// A `sleep` that a trapped signal interrupts at once.
const IDLE: &str = "while true; do sleep 1 & wait $!; done";

/// A hostPath directory under the test's temp dir, for files the test and the pod share.
fn shared_dir(k: &Kubelet, tag: &str) -> anyhow::Result<PathBuf> {
    let d = k.env().subdir(&format!("shared-{tag}"))?;
    // Containers may run as any user; the test only reads.
    std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    Ok(d)
}

fn host_path(name: &str, dir: &Path) -> Value {
    json!({"name": name, "hostPath": {"path": dir, "type": "Directory"}})
}

fn running(name: &'static str) -> impl Fn(&Pod) -> bool {
    move |p: &Pod| p.phase() == "Running" && p.running(name)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The controller to read cgroup files from: v1 `memory`, else the v2 tree.
fn cgroup_controller(k: &Kubelet) -> &'static str {
    if k.cgroup_dir("memory", "").is_some() {
        "memory"
    } else {
        "unified"
    }
}

/// Pod cgroup directories below the kubelet's kubepods, in every QoS class.
fn pod_cgroups(k: &Kubelet) -> Vec<PathBuf> {
    let Some(kubepods) = k.cgroup_dir(cgroup_controller(k), "kubepods") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in [
        kubepods.clone(),
        kubepods.join("burstable"),
        kubepods.join("besteffort"),
    ] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            out.extend(
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("pod"))
                    .map(|e| e.path())
                    .filter(|p| p.is_dir()),
            );
        }
    }
    out
}

/// Processes anywhere in the cgroup tree at `dir`.
fn procs_below(dir: &Path) -> usize {
    let mut n = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().count())
        .unwrap_or(0);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                n += procs_below(&e.path());
            }
        }
    }
    n
}

/// Waits until pod `uid` has no process left (its cgroup empty or gone); returns when.
fn wait_pod_gone(k: &Kubelet, uid: &str, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        match k.pod_cgroup(cgroup_controller(k), uid) {
            None => return Ok(Instant::now()),
            Some(d) if procs_below(&d) == 0 => return Ok(Instant::now()),
            Some(d) if Instant::now() >= deadline => {
                bail!(
                    "pod {uid} still has processes in {} after {timeout:?}",
                    d.display()
                )
            }
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Fetches `url` from the test's "host" netns with busybox wget.
fn http_get(k: &Kubelet, url: &str) -> anyhow::Result<String> {
    let out = k
        .env()
        .host
        .command("/bin/busybox")
        .args(["wget", "-q", "-T", "5", "-O", "-", url])
        .output()
        .context("busybox wget")?;
    ensure!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---- cases: serving, probes, restarts ----

fn web_pod_ready_and_served_through_host_port(k: &mut Kubelet) -> anyhow::Result<()> {
    let web = pod(
        "web",
        json!({"containers": [{
            "name": "httpd",
            "image": k.images.get(&Image::Httpd { port: 8080 }),
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"name": "http", "containerPort": 8080, "hostPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
            "livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
        }]}),
    );
    apply(k, "web", &[web])?;
    let p = k.wait_for("web", Pod::ready, Duration::from_secs(60))?;
    for cond in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        ensure!(
            p.condition(cond) == "True",
            "{cond} is {:?}",
            p.condition(cond)
        );
    }
    ensure!(p.phase() == "Running");
    ensure!(p.ip().starts_with("10.244.50."), "podIP {:?}", p.ip());
    ensure!(p.0["status"]["qosClass"] == "BestEffort");
    ensure!(p.0["spec"]["nodeName"] == berth_integration_tests::kubelet::NODE);
    ensure!(p.restarts("httpd") == 0);
    // A user on the node reaches the hostPort on loopback and on the node's address.
    for url in [
        "http://127.0.0.1:8080/".to_string(),
        format!("http://{GATEWAY}:8080/"),
        format!("http://{}:8080/", p.ip()),
    ] {
        let body = http_get(k, &url)?;
        ensure!(body == "berth-fixture\n", "GET {url}: {body:?}");
    }
    Ok(())
}

fn crash_loop_back_off_doubles(k: &mut Kubelet) -> anyhow::Result<()> {
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

fn restart_policies_end_in_phases(k: &mut Kubelet) -> anyhow::Result<()> {
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

fn liveness_failure_restarts_container(k: &mut Kubelet) -> anyhow::Result<()> {
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

fn readiness_follows_probe(k: &mut Kubelet) -> anyhow::Result<()> {
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
