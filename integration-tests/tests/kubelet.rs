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

#[path = "kubelet_cases/fsgroup.rs"]
mod fsgroup;
#[path = "kubelet_cases/lifecycle.rs"]
mod lifecycle;
#[path = "kubelet_cases/pods.rs"]
mod pods;
#[path = "kubelet_cases/probes.rs"]
mod probes;
#[path = "kubelet_cases/registry.rs"]
mod registry;
#[path = "kubelet_cases/security.rs"]
mod security;
#[path = "kubelet_cases/subpath.rs"]
mod subpath;
use fsgroup::*;
use lifecycle::*;
use pods::*;
use probes::*;
use registry::*;
use security::*;
use subpath::*;

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

/// Every case twice: a `#[test]` in module `berth` running it on berth's runtime, and one
/// in module `containerd` running it on containerd.
macro_rules! kubelet_cases {
    (@on $module:ident, $runner:ident, $($case:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $case() {
                    berth_integration_tests::require_root!();
                    super::$runner(super::$case);
                }
            )*
        }
    };
    ($($case:ident),* $(,)?) => {
        kubelet_cases!(@on berth, on_berth, $($case),*);
        kubelet_cases!(@on containerd, on_containerd, $($case),*);
    };
}

kubelet_cases!(
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
    image_and_config_errors_wait_with_upstream_reasons,
    active_deadline_fails_the_pod,
    pod_settings_reach_the_containers,
    image_pull_policy_always_pulls_from_the_registry,
    grpc_and_https_probes_against_a_container,
    subpath_mounts_safely,
    security_context_reaches_the_container,
    oom_killed_is_reported,
    kill9_while_pod_starts_then_completes,
    fs_group_owns_the_volumes,
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

/// Fetches `http://<addr>/` from the test's "host" netns (HTTP/1.0, the body only).
fn http_get(k: &Kubelet, addr: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().context("address")?;
    let reply = k.env().host.run(|| -> anyhow::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    });
    let reply = reply.with_context(|| format!("GET http://{addr}/"))?;
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    ensure!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "GET http://{addr}/: {head}"
    );
    Ok(body.to_string())
}

// ---- the case that serves ----

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
    let mut failed = Vec::new();
    for url in [
        "127.0.0.1:8080".to_string(),
        format!("{GATEWAY}:8080"),
        format!("{}:8080", p.ip()),
    ] {
        match http_get(k, &url) {
            Ok(body) if body == "berth-fixture\n" => {}
            Ok(body) => failed.push(format!("GET {url}: {body:?}")),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    ensure!(failed.is_empty(), "{failed:#?}");
    Ok(())
}
