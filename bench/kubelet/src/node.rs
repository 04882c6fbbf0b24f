//! The node phase (`--api`): berth's kubelet joined to an API server (`berth node`, the
//! test API server of integration-tests in the test's "host" netns), on berth's runtime
//! and on containerd.
//!
//! 1. Idle: the node agent's memory once the Node is registered and no pod runs (after
//!    `settle`).
//! 2. N pods created through the API at once (busybox httpd with an httpGet readiness
//!    probe, bound to the node as the scheduler binds them): the wall time until every
//!    pod is Ready in the API, and each pod's time from its creation to Ready (p50, p99).
//! 3. The node agent's memory with the N pods running, `settle` after the last is Ready.
//!
//! "The node agent" is what runs on the node besides the pods' own processes: berth's
//! daemon and its pod holders; or berth's kubelet, containerd and containerd's shims.
//! Memory is the sum of each process's RSS and PSS (/proc/<pid>/smaps_rollup).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_integration_tests::TestEnv;
use berth_integration_tests::apiserver::Options;
use berth_integration_tests::cluster::Cluster;
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::kubelet::{Kubelet, NODE, RuntimeKind};
use serde_json::json;

use crate::procfs;

/// The memory of one kind of node agent process, summed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Part {
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// The node agent's memory by part: the kubelet's daemon; the runtime's daemon
/// (containerd) or berth's holder zygote; the per-pod processes (berth's holders or
/// containerd's shims).
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory {
    pub daemon: Part,
    pub runtime: Part,
    pub per_pod: Part,
}

impl Memory {
    pub fn total(&self) -> Part {
        let ps = [self.daemon, self.runtime, self.per_pod];
        Part {
            processes: ps.iter().map(|p| p.processes).sum(),
            rss_kib: ps.iter().map(|p| p.rss_kib).sum(),
            pss_kib: ps.iter().map(|p| p.pss_kib).sum(),
        }
    }
}

/// What the node phase measured on one runtime.
#[derive(Debug, Default)]
pub struct NodeReport {
    pub pods: usize,
    pub wall: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub idle: Memory,
    pub busy: Memory,
}

fn part(pids: &[u32]) -> Part {
    let (rss_kib, pss_kib) = pids
        .iter()
        .map(|p| procfs::rss_pss_kib(*p))
        .fold((0, 0), |(r, p), (r2, p2)| (r + r2, p + p2));
    Part {
        processes: pids.len(),
        rss_kib,
        pss_kib,
    }
}

/// The node agent's processes and their memory: the kubelet; the runtime's daemon
/// (containerd), or the holder zygote berth's daemon forks holders from; and berth's
/// holders of this kubelet or containerd's shims (not their children: those are the
/// pods).
fn agent(k: &Kubelet) -> Memory {
    let root = k
        .kubelet_root
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let daemon = k.pid();
    let mut runtime: Vec<u32> = k.runtime_pid().into_iter().collect();
    let mut per_pod = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let comm = procfs::comm(pid);
            match k.runtime {
                RuntimeKind::Berth if comm.starts_with("berth-holder") => {
                    if procfs::cmdline(pid).contains(&root) {
                        per_pod.push(pid);
                    } else if daemon.is_some() && procfs::ppid(pid) == daemon {
                        // The zygote: `berth-holder zygote`, the daemon's child.
                        runtime.push(pid);
                    }
                }
                // containerd's shims name no path of the test; no other containerd runs here.
                RuntimeKind::Containerd if comm.starts_with("containerd-shim") => per_pod.push(pid),
                _ => {}
            }
        }
    }
    Memory {
        daemon: part(&daemon.into_iter().collect::<Vec<_>>()),
        runtime: part(&runtime),
        per_pod: part(&per_pod),
    }
}

fn ready(v: &serde_json::Value) -> bool {
    v["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the node phase with `n` pods on `rt`.
pub fn node_phase(rt: RuntimeKind, n: usize, settle: Duration) -> anyhow::Result<NodeReport> {
    let env = TestEnv::new()?;
    let c = Cluster::start(&env, Options::default())?;
    let creds = env.subdir("node-creds")?;
    let args = c.node_args(&creds, NODE)?;
    let httpd = Image::Httpd { port: 8080 };
    let k = Kubelet::start_node(&env, rt, std::slice::from_ref(&httpd), args)?;
    // Registered and settled: the Node is Ready, the first syncs are done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !c.api.get("nodes", "", NODE).is_some_and(|n| {
        n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    }) {
        if Instant::now() > deadline {
            bail!("the Node never became Ready:\n{}", k.log_tail(30));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(settle);
    let idle = agent(&k);

    let image = k.images.get(&httpd).to_string();
    let mut created: BTreeMap<String, Instant> = BTreeMap::new();
    let t0 = Instant::now();
    for i in 0..n {
        let name = format!("web-{i}");
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": NODE, "containers": [{
            "name": "httpd", "image": image, "imagePullPolicy": "IfNotPresent",
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        }]}});
        created.insert(name.clone(), Instant::now());
        c.create_pod("default", pod).context("create a pod")?;
    }
    let mut ready_at: BTreeMap<String, Instant> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while ready_at.len() < n {
        for name in created.keys() {
            if !ready_at.contains_key(name)
                && c.api
                    .get("pods", "default", name)
                    .is_some_and(|v| ready(&v))
            {
                ready_at.insert(name.clone(), Instant::now());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {n} pods Ready after 600 s:\n{}",
                ready_at.len(),
                k.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed();
    let mut each: Vec<Duration> = ready_at
        .iter()
        .map(|(name, at)| at.duration_since(created[name]))
        .collect();
    each.sort();
    std::thread::sleep(settle);
    let busy = agent(&k);
    Ok(NodeReport {
        pods: n,
        wall,
        p50: percentile(&each, 0.5),
        p99: percentile(&each, 0.99),
        idle,
        busy,
    })
}
