//! berth's kubelet (`berth run`) driving berth's in-process runtime against the same
//! kubelet driving containerd (CRI plugin, runc) over CRI, in the same run.
//!
//! 1. Pods to Ready: a dir of N pod manifests (busybox httpd with an httpGet readiness
//!    probe) appears at once; the wall time until every pod is Ready, the kubelet's
//!    memory (RSS, PSS) and CPU, and the CPU and PSS of every process involved.
//! 2. Probe CPU: M pods, each with an exec liveness probe every second; over a window of
//!    S seconds, the CPU time of every process involved (the kubelet, containerd, the
//!    shims and what they reap: runc and the probe's process; berth: the kubelet, the
//!    holder zygote, the holders and what they reap), per probe.
//!
//! "Every process involved" is the process trees of the kubelet, of containerd and of
//! each containerd shim (berth: of the kubelet and of each pod holder): utime + stime + cutime + cstime (/proc/<pid>/stat), summed at the
//! start and at the end. A process that exits in between is counted through its reaper's
//! cutime/cstime; one that starts in between counts whole. The pods' own processes are
//! in those trees on both runtimes (children of the holders, or of the shims).
//!
//! Each target starts in the test harness's isolation (integration-tests' `Kubelet`: a
//! "host" netns, temp dirs, a `berth-test-*` cgroup parent, private /run and /var/lib for
//! containerd), and everything is removed afterwards. Never pass/fail: it prints figures
//! and the ratio berth/containerd. Run as root:
//! `cargo build --release --workspace && sudo ./target/release/berth-bench-kubelet`.

mod node;
mod procfs;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_integration_tests::TestEnv;
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::kubelet::{Kubelet, RuntimeKind};
use clap::Parser;
use serde_json::json;

/// berth's kubelet on berth's runtime against berth's kubelet on containerd.
#[derive(Debug, Parser)]
struct Args {
    /// Pods of the Ready phase.
    #[arg(long, default_value_t = 50)]
    pods: usize,
    /// Pods of the probe phase.
    #[arg(long, default_value_t = 100)]
    probe_pods: usize,
    /// Length of the probe phase's measured window, seconds.
    #[arg(long, default_value_t = 60)]
    probe_seconds: u64,
    /// The node phase instead: pods created through an API server, `berth node`.
    #[arg(long)]
    api: bool,
    /// Pods of the node phase.
    #[arg(long, default_value_t = 100)]
    api_pods: usize,
    /// Seconds the node phase waits, after registration and after all pods are Ready,
    /// before it reads the node agent's memory.
    #[arg(long, default_value_t = 5)]
    api_settle: u64,
    /// Only this runtime (default: berth, then containerd).
    #[arg(long, value_parser = ["berth", "containerd"])]
    runtime: Option<String>,
}

/// What the Ready phase measured on one runtime.
#[derive(Debug, Default)]
struct ReadyReport {
    wall: Duration,
    kubelet_cpu_ms: f64,
    kubelet_rss_kib: u64,
    kubelet_pss_kib: u64,
    all_cpu_ms: f64,
    all_pss_kib: u64,
    processes: usize,
}

/// What the probe phase measured on one runtime.
#[derive(Debug, Default)]
struct ProbeReport {
    window: Duration,
    probes: u64,
    all_cpu_ms: f64,
    kubelet_cpu_ms: f64,
}

impl ProbeReport {
    fn per_probe_ms(&self) -> f64 {
        self.all_cpu_ms / self.probes.max(1) as f64
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        nix_is_root(),
        "run the benchmark as root (the runtimes need it)"
    );
    let runtimes: Vec<RuntimeKind> = match args.runtime.as_deref() {
        Some("berth") => vec![RuntimeKind::Berth],
        Some(_) => vec![RuntimeKind::Containerd],
        None => vec![RuntimeKind::Berth, RuntimeKind::Containerd],
    };
    let mut out = std::io::stdout().lock();
    if args.api {
        return api_main(&mut out, &runtimes, args.api_pods, args.api_settle);
    }
    writeln!(
        out,
        "berth's kubelet: {} httpd pods to Ready; {} pods with an exec liveness probe every 1 s for {} s",
        args.pods, args.probe_pods, args.probe_seconds
    )?;
    let mut ready = Vec::new();
    for &rt in &runtimes {
        let r = ready_phase(rt, args.pods).with_context(|| format!("{} Ready phase", rt.name()))?;
        writeln!(
            out,
            "\n== Ready, on {}\n  wall {:.2} s until all {} Ready\n  kubelet: CPU {:.0} ms, RSS {} KiB, PSS {} KiB\n  every process involved ({}): CPU {:.0} ms, PSS {} KiB",
            rt.name(),
            r.wall.as_secs_f64(),
            args.pods,
            r.kubelet_cpu_ms,
            r.kubelet_rss_kib,
            r.kubelet_pss_kib,
            r.processes,
            r.all_cpu_ms,
            r.all_pss_kib
        )?;
        ready.push((rt, r));
    }
    let mut probes = Vec::new();
    for &rt in &runtimes {
        let r = probe_phase(rt, args.probe_pods, Duration::from_secs(args.probe_seconds))
            .with_context(|| format!("{} probe phase", rt.name()))?;
        writeln!(
            out,
            "\n== exec liveness probes, on {}\n  {} probes (pods x periods) in {:.1} s\n  CPU of every process involved: {:.0} ms, {:.3} ms per probe (kubelet alone: {:.0} ms)",
            rt.name(),
            r.probes,
            r.window.as_secs_f64(),
            r.all_cpu_ms,
            r.per_probe_ms(),
            r.kubelet_cpu_ms
        )?;
        probes.push((rt, r));
    }
    if let ([(_, rb), (_, rc)], [(_, pb), (_, pc)]) = (ready.as_slice(), probes.as_slice()) {
        writeln!(
            out,
            "\nratio berth/containerd: time to Ready {:.2}x, CPU to Ready (all) {:.2}x, PSS (all) {:.2}x, CPU per probe {:.2}x",
            rb.wall.as_secs_f64() / rc.wall.as_secs_f64(),
            rb.all_cpu_ms / rc.all_cpu_ms,
            rb.all_pss_kib as f64 / rc.all_pss_kib.max(1) as f64,
            pb.per_probe_ms() / pc.per_probe_ms()
        )?;
    }
    Ok(())
}

/// The node phase on each runtime, and the ratios.
fn api_main(
    out: &mut impl Write,
    runtimes: &[RuntimeKind],
    pods: usize,
    settle: u64,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "berth node (the kubelet joined to an API server): {pods} httpd pods created through the API; memory read {settle} s after registration and after all are Ready"
    )?;
    let mib = |k: u64| k as f64 / 1024.0;
    let mut reports = Vec::new();
    for &rt in runtimes {
        let settle = std::time::Duration::from_secs(settle);
        let r = node::node_phase(rt, pods, settle)
            .with_context(|| format!("{} node phase", rt.name()))?;
        writeln!(
            out,
            "\n== node, on {}\n  wall {:.2} s until all {} Ready; per pod from creation to Ready: p50 {:.2} s, p99 {:.2} s",
            rt.name(),
            r.wall.as_secs_f64(),
            r.pods,
            r.p50.as_secs_f64(),
            r.p99.as_secs_f64(),
        )?;
        let names = match rt {
            RuntimeKind::Berth => ["berth daemon", "holder zygote", "holders"],
            RuntimeKind::Containerd => ["berth kubelet", "containerd", "shims"],
        };
        for (when, m) in [
            ("idle", r.idle),
            (&*format!("with {} pods", r.pods), r.busy),
        ] {
            let t = m.total();
            writeln!(
                out,
                "  node agent {when}: PSS {:.1} MiB, RSS {:.1} MiB, {} processes",
                mib(t.pss_kib),
                mib(t.rss_kib),
                t.processes
            )?;
            for (name, p) in names.iter().zip([m.daemon, m.runtime, m.per_pod]) {
                if p.processes > 0 {
                    writeln!(
                        out,
                        "    {name}: PSS {:.1} MiB, RSS {:.1} MiB ({} processes, PSS {:.0} KiB each)",
                        mib(p.pss_kib),
                        mib(p.rss_kib),
                        p.processes,
                        p.pss_kib as f64 / p.processes as f64
                    )?;
                }
            }
        }
        reports.push(r);
    }
    if let [b, c] = reports.as_slice() {
        let ratio = |x: u64, y: u64| x as f64 / y.max(1) as f64;
        writeln!(
            out,
            "\nratio berth/containerd: time to all Ready {:.2}x, p50 {:.2}x, agent PSS idle {:.2}x, with pods {:.2}x (RSS {:.2}x, {:.2}x)",
            b.wall.as_secs_f64() / c.wall.as_secs_f64(),
            b.p50.as_secs_f64() / c.p50.as_secs_f64().max(1e-9),
            ratio(b.idle.total().pss_kib, c.idle.total().pss_kib),
            ratio(b.busy.total().pss_kib, c.busy.total().pss_kib),
            ratio(b.idle.total().rss_kib, c.idle.total().rss_kib),
            ratio(b.busy.total().rss_kib, c.busy.total().rss_kib),
        )?;
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The processes of the kubelet, its runtime and the runtime's shims: containerd's
/// shims, or berth's pod holders (which outlive the daemon by design, so they are not in
/// its tree); a holder counts only when it is this kubelet's (its state dir is below the
/// test's root), so that no other pod on the machine is measured.
fn involved(k: &Kubelet) -> BTreeSet<u32> {
    let roots: Vec<u32> = k.pid().into_iter().chain(k.runtime_pid()).collect();
    let root = k
        .kubelet_root
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let containerd = k.runtime == RuntimeKind::Containerd;
    procfs::trees(&roots, |pid| {
        if containerd {
            procfs::comm(pid).starts_with("containerd-shim")
        } else {
            procfs::comm(pid).starts_with("berth-holder") && procfs::cmdline(pid).contains(&root)
        }
    })
}

/// Waits until every pod of `names` is Ready; fails with the ones that are not.
fn wait_all_ready(k: &Kubelet, names: &[String], timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = k.pods();
        let waiting: Vec<&String> = names
            .iter()
            .filter(|n| !pods.get(&Kubelet::full_name(n)).is_some_and(|p| p.ready()))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} pods not Ready after {timeout:?} (first: {}):\n{}",
                waiting.len(),
                waiting[0],
                k.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ready_phase(rt: RuntimeKind, n: usize) -> anyhow::Result<ReadyReport> {
    let env = TestEnv::new()?;
    let httpd = Image::Httpd { port: 8080 };
    let k = Kubelet::start(&env, rt, std::slice::from_ref(&httpd))?;
    // Let the kubelet settle (first sync, runtime status) before the clock starts.
    std::thread::sleep(Duration::from_secs(3));
    let kubelet = k.pid().context("kubelet pid")?;
    let names: Vec<String> = (0..n).map(|i| format!("web-{i}")).collect();
    let before_all = procfs::cpu_sum(&involved(&k));
    let before_kubelet = procfs::cpu_ns(kubelet);
    let t0 = Instant::now();
    for name in &names {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{
            "name": "httpd", "image": k.images.get(&httpd), "imagePullPolicy": "IfNotPresent",
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
        }]}});
        k.write_manifest(name, &pod.to_string())?;
    }
    wait_all_ready(&k, &names, Duration::from_secs(600))?;
    let wall = t0.elapsed();
    let procs = involved(&k);
    let ms = |ns: u64| ns as f64 / 1e6;
    let (rss, pss) = procfs::rss_pss_kib(kubelet);
    Ok(ReadyReport {
        wall,
        kubelet_cpu_ms: ms(procfs::cpu_ns(kubelet).saturating_sub(before_kubelet)),
        kubelet_rss_kib: rss,
        kubelet_pss_kib: pss,
        all_cpu_ms: ms(procfs::cpu_sum(&procs).saturating_sub(before_all)),
        all_pss_kib: procs.iter().map(|p| procfs::rss_pss_kib(*p).1).sum(),
        processes: procs.len(),
    })
}

fn probe_phase(rt: RuntimeKind, n: usize, window: Duration) -> anyhow::Result<ProbeReport> {
    let env = TestEnv::new()?;
    let k = Kubelet::start(&env, rt, &[Image::Busybox])?;
    let kubelet = k.pid().context("kubelet pid")?;
    let names: Vec<String> = (0..n).map(|i| format!("probed-{i}")).collect();
    for name in &names {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": k.images.get(&Image::Busybox), "imagePullPolicy": "IfNotPresent",
            "command": ["sleep", "100000"],
            "livenessProbe": {"exec": {"command": ["/bin/true"]}, "periodSeconds": 1},
        }]}});
        k.write_manifest(name, &pod.to_string())?;
    }
    wait_all_ready(&k, &names, Duration::from_secs(900))?;
    // Past the start-up: every pod's probe worker is running at its period.
    std::thread::sleep(Duration::from_secs(5));
    let before_all = procfs::cpu_sum(&involved(&k));
    let before_kubelet = procfs::cpu_ns(kubelet);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let elapsed = t0.elapsed();
    let after_all = procfs::cpu_sum(&involved(&k));
    let after_kubelet = procfs::cpu_ns(kubelet);
    let restarted = k.pods().values().filter(|p| p.restarts("c") > 0).count();
    anyhow::ensure!(
        restarted == 0,
        "{restarted} pods restarted: a liveness probe failed, the figures are void"
    );
    Ok(ProbeReport {
        window: elapsed,
        probes: n as u64 * elapsed.as_secs(),
        all_cpu_ms: after_all.saturating_sub(before_all) as f64 / 1e6,
        kubelet_cpu_ms: after_kubelet.saturating_sub(before_kubelet) as f64 / 1e6,
    })
}
