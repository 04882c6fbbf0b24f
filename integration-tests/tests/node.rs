//! berth's kubelet joined to an API server (`berth node`), seen from the API as a cluster
//! sees a node: the Node and its Lease, pods bound to it running and reported, graceful
//! deletion, mirror pods, what it does when the API server restarts, when berth is killed,
//! and when an object is bad.
//!
//! The API server is the test fixture (integration-tests/src/apiserver/), served in the
//! test's "host" netns; the kubelet runs there as `node1` with a client certificate of
//! `system:node:node1`. Every case runs twice: on berth's in-process runtime and on
//! containerd over CRI.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_integration_tests::TestEnv;
use berth_integration_tests::apiserver::Options;
use berth_integration_tests::cluster::Cluster;
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::kubelet::{Kubelet, NODE, Pod, RuntimeKind};
use serde_json::{Value, json};

#[path = "node_cases/api.rs"]
mod api;
#[path = "node_cases/pods.rs"]
mod pods;
#[path = "node_cases/tls.rs"]
mod tls;
use api::*;
use pods::*;

/// A node case: the cluster, and the kubelet joined to it.
#[derive(Debug)]
pub struct Node<'a> {
    pub c: Cluster,
    pub k: Kubelet<'a>,
}

type Case = fn(&mut Node) -> anyhow::Result<()>;

fn images() -> Vec<Image> {
    vec![Image::Busybox, Image::Httpd { port: 8080 }]
}

fn on(runtime: RuntimeKind, case: Case) {
    on_server(runtime, Options::default(), case);
}

fn on_server(runtime: RuntimeKind, opts: Options, case: Case) {
    let env = TestEnv::new().expect("env");
    let c = Cluster::start(&env, opts).expect("start the API server");
    let dir = env.subdir("node-creds").expect("dir");
    let args = c.node_args(&dir, NODE).expect("node kubeconfig");
    let k = Kubelet::start_node(&env, runtime, &images(), args).expect("start berth node");
    let mut n = Node { c, k };
    if let Err(e) = case(&mut n) {
        panic!(
            "{e:#}\n{} kubelet log (tail):\n{}",
            runtime.name(),
            n.k.log_tail(80)
        );
    }
}

fn on_berth(case: Case) {
    on(RuntimeKind::Berth, case);
}

fn on_containerd(case: Case) {
    on(RuntimeKind::Containerd, case);
}

/// Every case twice, in modules `berth` and `containerd`.
macro_rules! node_cases {
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
        node_cases!(@on berth, on_berth, $($case),*);
        node_cases!(@on containerd, on_containerd, $($case),*);
    };
}

node_cases!(
    bound_pod_runs_reports_and_is_deleted_gracefully,
    fifty_pods_become_ready,
    static_pods_get_mirror_pods,
    kill9_while_pods_run_restarts_nothing,
    watch_resumes_after_api_server_restart,
    bad_pods_are_reported_and_the_others_run,
    config_map_and_secret_volumes_follow_the_api,
    missing_config_map_is_create_container_config_error,
    admission_rejects_with_upstream_reasons,
    events_reach_the_api,
    service_account_token_is_projected,
);

/// --kube-reserved, --system-reserved and --eviction-hard come out of allocatable as
/// upstream's GetNodeAllocatableReservation takes them: memory less all three (the
/// memory.available threshold included), cpu less its reservation, ephemeral-storage less
/// its reservation and nodefs.available's share of the capacity.
fn allocatable_is_capacity_less_the_reservations(runtime: RuntimeKind) {
    berth_integration_tests::require_root!();
    let env = TestEnv::new().expect("env");
    let c = Cluster::start(&env, Options::default()).expect("start the API server");
    let dir = env.subdir("node-creds").expect("dir");
    let mut args = c.node_args(&dir, NODE).expect("node kubeconfig");
    args.extend(
        [
            "--kube-reserved=cpu=100m,memory=64Mi",
            "--system-reserved=memory=32Mi,ephemeral-storage=1Gi",
            "--eviction-hard=memory.available<100Mi,nodefs.available<1%",
        ]
        .map(String::from),
    );
    let k = Kubelet::start_node(&env, runtime, &[], args).expect("start berth node");
    let ready = |n: &Value| {
        n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    };
    let r = c.wait("the Node Ready", Duration::from_secs(60), || {
        c.api.get("nodes", "", NODE).is_some_and(|n| ready(&n))
    });
    if let Err(e) = r {
        panic!("{e:#}\n{}", k.log_tail(40));
    }
    let n = c.api.get("nodes", "", NODE).expect("the Node");
    let q = |kind: &str, r: &str| {
        let s = n["status"][kind][r].as_str().unwrap_or_default();
        ::berth::kubelet::cm::quantity::Amount::parse(s)
            .unwrap_or_else(|| panic!("{kind} {r}: {s:?}"))
            .milli_value()
    };
    let mi = 1024 * 1024 * 1000;
    assert_eq!(
        q("allocatable", "memory"),
        q("capacity", "memory") - (64 + 32 + 100) * mi,
        "{}",
        n["status"]
    );
    assert_eq!(q("allocatable", "cpu"), q("capacity", "cpu") - 100);
    let disk = q("capacity", "ephemeral-storage");
    // As upstream: the percentage is a float32, taken of the whole bytes in float64.
    let one_percent = ((disk / 1000) as f64 * f64::from(0.01f32)) as i64 * 1000;
    assert_eq!(
        q("allocatable", "ephemeral-storage"),
        disk - 1024 * mi - one_percent
    );
    assert_eq!(q("allocatable", "pods"), 110_000);
}

/// A server that grants 20 s tokens (a real one grants 10 minutes at least).
fn short_tokens(runtime: RuntimeKind) {
    berth_integration_tests::require_root!();
    let opts = Options {
        min_token_expiration_seconds: 20,
        ..Options::default()
    };
    on_server(
        runtime,
        opts,
        projected_token_rotates_in_the_running_container,
    );
}

mod token_rotation {
    #[test]
    fn berth() {
        super::short_tokens(super::RuntimeKind::Berth);
    }

    #[test]
    fn containerd() {
        super::short_tokens(super::RuntimeKind::Containerd);
    }
}

mod reservations {
    #[test]
    fn berth() {
        super::allocatable_is_capacity_less_the_reservations(super::RuntimeKind::Berth);
    }

    #[test]
    fn containerd() {
        super::allocatable_is_capacity_less_the_reservations(super::RuntimeKind::Containerd);
    }
}

/// A flag that does not parse stops `berth node` before it starts anything, naming it.
#[test]
fn a_bad_reservation_flag_is_refused_by_name() {
    for (flag, named) in [
        (
            "--eviction-hard=swap.available<1Gi",
            "--eviction-hard: \"swap.available<1Gi\"",
        ),
        ("--kube-reserved=cpu", "--kube-reserved: \"cpu\""),
        ("--system-reserved=memory=-1Gi", "--system-reserved"),
    ] {
        let out = std::process::Command::new(berth_integration_tests::util::workspace_bin("berth"))
            .args(["node", "--kubeconfig", "/nonexistent/kubeconfig", flag])
            .output()
            .expect("run berth node");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}: accepted");
        assert!(err.contains(named), "{flag}: {err}");
    }
}

// ---- helpers shared by the cases ----

/// A busybox container running `script`.
fn sh(n: &Node, name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": n.k.images.get(&Image::Busybox),
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
    })
}

/// A pod bound to the node (as the scheduler binds it) with `spec`.
fn bound(name: &str, mut spec: Value) -> Value {
    spec["nodeName"] = json!(NODE);
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// A `sleep` that a trapped signal interrupts at once.
const IDLE: &str = "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done";

fn running(p: &Pod) -> bool {
    p.phase() == "Running" && p.ready()
}

/// Waits until `ok` holds for the API's pod `name` in namespace default.
fn wait(n: &Node, name: &str, ok: impl Fn(&Pod) -> bool, secs: u64) -> anyhow::Result<Pod> {
    n.c.wait_pod("default", name, ok, Duration::from_secs(secs))
}

/// Waits until pod `name` is gone from the API.
fn wait_gone(n: &Node, name: &str, secs: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while n.c.pod("default", name).is_some() {
        if Instant::now() >= deadline {
            bail!("pod {name} still in the API after {secs} s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Deletes pod `name` through the API with `grace` seconds.
fn delete(n: &Node, name: &str, grace: i64) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod as ApiPod;
    use kube::api::{Api, DeleteParams};
    let name = name.to_string();
    n.c.run(move |c| async move {
        Api::<ApiPod>::namespaced(c, "default")
            .delete(&name, &DeleteParams::default().grace_period(grace as u32))
            .await
            .map(|_| ())
    })
    .context("delete the pod")
}

/// TLS bootstrap and rotation with `berth node` running, then a stale Lease once it stops:
/// a case of its own (it starts berth with a bootstrap kubeconfig only).
#[test]
fn bootstrap_rotation_and_stale_lease_on_berth() {
    berth_integration_tests::require_root!();
    tls::bootstrap_rotation_and_stale_lease(RuntimeKind::Berth).expect("berth");
}

#[test]
fn bootstrap_rotation_and_stale_lease_on_containerd() {
    berth_integration_tests::require_root!();
    tls::bootstrap_rotation_and_stale_lease(RuntimeKind::Containerd).expect("containerd");
}
