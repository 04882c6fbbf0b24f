//! The pod lifecycle through the CRI, as kubelet drives it, for a busybox pod: berth
//! against containerd (CRI plugin, runc) in the same run, through the same Rust client.
//!
//! For each target: RunPodSandbox, CreateContainer, StartContainer, then StopContainer,
//! RemoveContainer, StopPodSandbox, RemovePodSandbox, N times after a warm-up; the
//! median of each step and of the total. Memory per pod: the PSS (smaps_rollup) of the
//! processes the runtime keeps per pod (containerd: shim + pause; berth: the holder, plus
//! the zygote that forks the holders, shared by the pods), with one pod running and
//! averaged over ten running at once; with ten, also the private memory (USS), what each
//! pod alone costs. ExecSync of `/bin/true`:
//! CPU time per call summed over the runtime's processes (see [`exec_cpu`]).
//!
//! Each runtime is started by the bench in the test harness's isolation: a "host"
//! netns, temp dirs, a `berth-test-*` cgroup parent and private mounts, all removed after.
//! For berth it also reports the `berth-holder` binary's size and the code of it each
//! holder maps (resident, and its share with the pods running at once).
//! Run as root: `cargo build --release --workspace &&
//! sudo ./target/release/berth-bench-cri`.

mod procfs;
mod target;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_integration_tests::TestEnv;
use berth_integration_tests::cri::{ContainerSpec, CriClient, PodSpec};
use clap::Parser;

use target::{Kind, Target};

/// Pod lifecycle, per-pod memory and ExecSync CPU through CRI: berth against containerd.
#[derive(Debug, Parser)]
struct Args {
    /// Runtimes to measure, in this order (default: containerd, then berth).
    #[arg(long = "target", value_enum)]
    targets: Vec<Kind>,
    /// Measured pod lifecycles per target.
    #[arg(short = 'n', long, default_value_t = 50)]
    iterations: usize,
    /// Unmeasured lifecycles first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Pods running at once for the shared-memory PSS figure.
    #[arg(long, default_value_t = 10)]
    concurrent: usize,
    /// ExecSync calls measured.
    #[arg(long, default_value_t = 100)]
    execs: usize,
    /// The berth binary (default: the workspace's build, same profile as the bench);
    /// `berth-holder` is taken from next to it.
    #[arg(long)]
    berth: Option<PathBuf>,
}

const STEPS: [&str; 7] = [
    "RunPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "StopPodSandbox",
    "RemovePodSandbox",
];

/// What one target measured.
#[derive(Debug, Default)]
struct Report {
    /// Median per step, then the total, in ms.
    steps: Vec<f64>,
    total: f64,
    /// Median PSS per role with one pod running, KiB.
    pss_one: Vec<(&'static str, u64)>,
    /// Mean PSS per pod per role with `concurrent` pods running, KiB.
    pss_many: Vec<(&'static str, u64)>,
    /// Mean private memory (USS) per pod per role with `concurrent` pods running, KiB.
    uss_many: Vec<(&'static str, u64)>,
    /// PSS of the daemon with `concurrent` pods running, KiB.
    daemon_many: u64,
    /// Pods running at once for the figures above.
    concurrent: usize,
    /// berth: the holder binary's size, and the mean resident and proportional size of
    /// its code mapped per holder with `concurrent` pods running, KiB.
    holder_code: Option<HolderCode>,
    exec: ExecCpu,
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    anyhow::ensure!(
        nix_is_root(),
        "run the benchmark as root (runtimes need it)"
    );
    let explicit = !args.targets.is_empty();
    if !explicit {
        args.targets = vec![Kind::Containerd, Kind::Berth];
    }
    let berth = target::berth_binary(args.berth.clone());
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "CRI pod lifecycle of a busybox pod: {} measured after {} warm-up, {} ExecSync calls",
        args.iterations, args.warmup, args.execs
    )?;
    let mut reports = BTreeMap::new();
    for &kind in &args.targets {
        match measure_target(kind, &berth, &args) {
            Ok(r) => {
                print_report(&mut out, kind, &r)?;
                reports.insert(format!("{kind:?}"), r);
            }
            Err(e) if !explicit && kind == Kind::Berth => {
                writeln!(out, "berth: skipped: {e:#}")?;
            }
            Err(e) => return Err(e.context(format!("{kind:?}"))),
        }
    }
    if let (Some(b), Some(c)) = (reports.get("Berth"), reports.get("Containerd")) {
        let sum = |v: &[(&str, u64)]| v.iter().map(|(_, k)| *k).sum::<u64>() as f64;
        writeln!(
            out,
            "ratio berth/containerd: total {:.2}x (goal <= 0.17x), PSS per pod {:.2}x with one pod (goal <= 0.2x) and {:.2}x with {} (goal <= 0.15x), private memory per pod {:.2}x, ExecSync CPU {:.2}x (goal <= 0.06x)",
            b.total / c.total,
            sum(&b.pss_one) / sum(&c.pss_one),
            sum(&b.pss_many) / sum(&c.pss_many),
            args.concurrent,
            sum(&b.uss_many) / sum(&c.uss_many),
            b.exec.per_call_ms / c.exec.per_call_ms
        )?;
    }
    Ok(())
}

fn measure_target(kind: Kind, berth: &std::path::Path, args: &Args) -> anyhow::Result<Report> {
    let env = TestEnv::new()?;
    let target = Target::start(kind, &env, berth)?;
    let pods = Pods::new(&env, &target)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c = CriClient::connect(&target.endpoint).await?;
        let mut report = Report::default();
        lifecycles(&mut c, &target, &pods, args, &mut report).await?;
        (
            report.pss_many,
            report.uss_many,
            report.daemon_many,
            report.holder_code,
        ) = concurrent_memory(&mut c, &target, &pods, args.concurrent).await?;
        report.concurrent = args.concurrent;
        report.exec = exec_cpu(&mut c, &target, &pods, args.execs).await?;
        Ok(report)
    })
}

/// What of the `berth-holder` binary a holder maps, KiB.
#[derive(Debug, Default)]
struct HolderCode {
    file: u64,
    code_rss: u64,
    code_pss: u64,
}

/// How the bench's pods are made.
struct Pods {
    logs: PathBuf,
    cgroup: String,
    image: String,
}

impl Pods {
    /// Pods of `target`, with their logs and cgroups in `env`'s.
    fn new(env: &TestEnv, target: &Target<'_>) -> anyhow::Result<Self> {
        Ok(Pods {
            logs: env.subdir("pod-logs")?,
            cgroup: format!("/{}", env.cgroups().name()),
            image: target.busybox.clone(),
        })
    }

    fn pod(&self, name: &str) -> anyhow::Result<PodSpec> {
        let dir = self.logs.join(name);
        std::fs::create_dir_all(&dir)?;
        let mut p = PodSpec::new(name, &dir, "");
        p.cgroup_parent = format!("{}/pod{}", self.cgroup, p.uid);
        Ok(p)
    }

    /// A container that exits at once on SIGTERM (a `sleep` as PID 1 would ignore it),
    /// once it says "ready" in its log: a SIGTERM before its shell set the trap is
    /// ignored too, and StopContainer then waits out its timeout.
    fn container(&self) -> ContainerSpec {
        ContainerSpec::new(
            "app",
            &self.image,
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; echo ready; sleep 3600 & wait",
            ],
        )
    }

    /// Runs a pod with its container; returns (sandbox id, container id, step times).
    async fn up(
        &self,
        c: &mut CriClient,
        pod: &PodSpec,
    ) -> anyhow::Result<(String, String, [Duration; 3])> {
        let config = pod.config();
        let t0 = Instant::now();
        let id = c.run_pod_sandbox(&config).await.context("RunPodSandbox")?;
        let t1 = Instant::now();
        let cid = c
            .create_container(&id, &self.container().config(pod), &config)
            .await
            .context("CreateContainer")?;
        let t2 = Instant::now();
        c.start_container(&cid).await.context("StartContainer")?;
        let t3 = Instant::now();
        // untimed: the container is up once its trap is set
        let log = pod.log_directory.join(&self.container().log_path);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("ready")) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} never said ready",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok((id, cid, [t1 - t0, t2 - t1, t3 - t2]))
    }

    /// Tears a pod down in kubelet's order; returns the step times.
    async fn down(&self, c: &mut CriClient, id: &str, cid: &str) -> anyhow::Result<[Duration; 4]> {
        let t0 = Instant::now();
        c.stop_container(cid, 10).await.context("StopContainer")?;
        let t1 = Instant::now();
        c.remove_container(cid).await.context("RemoveContainer")?;
        let t2 = Instant::now();
        c.stop_pod_sandbox(id).await.context("StopPodSandbox")?;
        let t3 = Instant::now();
        c.remove_pod_sandbox(id).await.context("RemovePodSandbox")?;
        let t4 = Instant::now();
        Ok([t1 - t0, t2 - t1, t3 - t2, t4 - t3])
    }
}

async fn lifecycles(
    c: &mut CriClient,
    target: &Target<'_>,
    pods: &Pods,
    args: &Args,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut steps: Vec<Vec<Duration>> = vec![Vec::new(); STEPS.len()];
    let mut totals = Vec::new();
    let mut pss: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for i in 0..args.warmup + args.iterations {
        let pod = pods.pod(&format!("bench-{i}"))?;
        let (id, cid, up) = pods.up(c, &pod).await?;
        // Memory is read between the timed halves, so it costs the timings nothing.
        let procs = target.pod_procs(c, &id).await?;
        let mut sizes = Vec::new();
        for (role, pids) in &procs.roles {
            let kib = pids.iter().map(|p| procfs::pss_kib(*p).unwrap_or(0)).sum();
            sizes.push((*role, kib));
        }
        let down = pods.down(c, &id, &cid).await?;
        if i < args.warmup {
            continue;
        }
        for (role, kib) in sizes {
            pss.entry(role).or_default().push(kib);
        }
        let all: Vec<Duration> = up.iter().chain(down.iter()).copied().collect();
        totals.push(all.iter().sum::<Duration>());
        for (s, d) in steps.iter_mut().zip(all) {
            s.push(d);
        }
    }
    report.steps = steps.into_iter().map(median_ms).collect();
    report.total = median_ms(totals);
    report.pss_one = pss
        .into_iter()
        .map(|(role, mut v)| {
            v.sort_unstable();
            (role, v[v.len() / 2])
        })
        .collect();
    Ok(())
}

/// Mean PSS and private memory per pod and role with `n` pods running at once (pages of
/// the runtime's binaries are then shared between their processes, as on a node).
async fn concurrent_memory(
    c: &mut CriClient,
    target: &Target<'_>,
    pods: &Pods,
    n: usize,
) -> anyhow::Result<(
    Vec<(&'static str, u64)>,
    Vec<(&'static str, u64)>,
    u64,
    Option<HolderCode>,
)> {
    let mut running = Vec::new();
    for i in 0..n {
        let pod = pods.pod(&format!("many-{i}"))?;
        let (id, cid, _) = pods.up(c, &pod).await?;
        running.push((id, cid));
    }
    // A process shared by the pods (berth's zygote) is counted once.
    let mut procs: BTreeMap<&'static str, std::collections::BTreeSet<u32>> = BTreeMap::new();
    for (id, _) in &running {
        for (role, pids) in target.pod_procs(c, id).await?.roles {
            procs.entry(role).or_default().extend(pids);
        }
    }
    let (mut pss, mut private) = (Vec::new(), Vec::new());
    for (role, pids) in &procs {
        let (p, u) = pids
            .iter()
            .map(|p| procfs::memory_kib(*p).unwrap_or((0, 0)))
            .fold((0, 0), |(a, b), (p, u)| (a + p, b + u));
        pss.push((*role, p / n.max(1) as u64));
        private.push((*role, u / n.max(1) as u64));
    }
    let holder_code = match (target.kind, procs.get("holder")) {
        (Kind::Berth, Some(pids)) => {
            let bin = target.holder_binary();
            let name = bin.to_string_lossy().into_owned();
            let (mut rss, mut pss) = (0, 0);
            for p in pids {
                let (r, s) = procfs::mapped_code_kib(*p, &name)?;
                rss += r;
                pss += s;
            }
            let holders = pids.len().max(1) as u64;
            Some(HolderCode {
                file: std::fs::metadata(&bin)
                    .with_context(|| format!("{}", bin.display()))?
                    .len()
                    / 1024,
                code_rss: rss / holders,
                code_pss: pss / holders,
            })
        }
        _ => None,
    };
    let memory = (pss, private, procfs::pss_kib(target.daemon)?, holder_code);
    for (id, cid) in &running {
        pods.down(c, id, cid).await?;
    }
    Ok(memory)
}

/// CPU per ExecSync call.
#[derive(Debug, Default)]
struct ExecCpu {
    per_call_ms: f64,
    /// (process, ms per call).
    parts: Vec<(String, f64)>,
    /// ms per call spent inside the pod's cgroup (already part of the parts above).
    in_pod_ms: Option<f64>,
    wall_median_ms: f64,
}

/// ExecSync of `/bin/true`, `calls` times in one running container. Method: utime +
/// stime + cutime + cstime from /proc/<pid>/stat of the daemon and of the pod's runtime
/// processes (containerd's shim, berth's holder), read before and after. The runc
/// processes the shim starts and the exec'd process are its (reaped) children, so their
/// CPU is in the shim's cutime/cstime; the pod cgroup's cpuacct.usage delta is printed as
/// the share that ran inside the container. Clock-tick resolution (10 ms) over 100 calls.
async fn exec_cpu(
    c: &mut CriClient,
    target: &Target<'_>,
    pods: &Pods,
    calls: usize,
) -> anyhow::Result<ExecCpu> {
    let pod = pods.pod("exec")?;
    let (id, cid, _) = pods.up(c, &pod).await?;
    let procs = target.pod_procs(c, &id).await?;
    let mut watched = vec![(format!("{:?}", target.kind).to_lowercase(), target.daemon)];
    for (role, pids) in &procs.roles {
        if *role != "pause" {
            watched.extend(pids.iter().map(|p| (role.to_string(), *p)));
        }
    }
    for _ in 0..5 {
        c.exec_sync(&cid, &["/bin/true"], 10).await?;
    }
    let before: Vec<u64> = watched
        .iter()
        .map(|(_, p)| procfs::cpu_ns(*p))
        .collect::<anyhow::Result<_>>()?;
    let pod_before = procfs::cpuacct_ns(&pod.cgroup_parent);
    let mut walls = Vec::new();
    for _ in 0..calls {
        let t = Instant::now();
        let r = c.exec_sync(&cid, &["/bin/true"], 10).await?;
        walls.push(t.elapsed());
        anyhow::ensure!(r.exit_code == 0, "/bin/true exited {}", r.exit_code);
    }
    let after: Vec<u64> = watched
        .iter()
        .map(|(_, p)| procfs::cpu_ns(*p))
        .collect::<anyhow::Result<_>>()?;
    let pod_after = procfs::cpuacct_ns(&pod.cgroup_parent);
    pods.down(c, &id, &cid).await?;
    let per = |ns: u64| ns as f64 / 1e6 / calls as f64;
    let parts: Vec<(String, f64)> = watched
        .iter()
        .zip(before.iter().zip(&after))
        .map(|((name, _), (b, a))| (name.clone(), per(a.saturating_sub(*b))))
        .collect();
    Ok(ExecCpu {
        per_call_ms: parts.iter().map(|(_, ms)| ms).sum(),
        parts,
        in_pod_ms: pod_before
            .zip(pod_after)
            .map(|(b, a)| per(a.saturating_sub(b))),
        wall_median_ms: median_ms(walls),
    })
}

fn print_report(out: &mut impl Write, kind: Kind, r: &Report) -> anyhow::Result<()> {
    writeln!(out, "\n== {kind:?}")?;
    for (name, ms) in STEPS.iter().zip(&r.steps) {
        writeln!(out, "  {name:<18} {ms:8.1} ms (median)")?;
    }
    writeln!(
        out,
        "  {:<18} {:8.1} ms (median of per-pod totals)",
        "total", r.total
    )?;
    let fmt = |v: &[(&str, u64)]| {
        let parts: Vec<String> = v
            .iter()
            .map(|(role, kib)| format!("{role} {:.2} MiB", *kib as f64 / 1024.0))
            .collect();
        let sum: u64 = v.iter().map(|(_, k)| k).sum();
        format!("{:.2} MiB ({})", sum as f64 / 1024.0, parts.join(" + "))
    };
    writeln!(out, "  PSS per pod, 1 pod running:   {}", fmt(&r.pss_one))?;
    writeln!(out, "  PSS per pod, pods at once:    {}", fmt(&r.pss_many))?;
    writeln!(out, "  private per pod, pods at once: {}", fmt(&r.uss_many))?;
    let pods: u64 = r.pss_many.iter().map(|(_, k)| k).sum();
    writeln!(
        out,
        "  the runtime's PSS, pods at once: {:.2} MiB (daemon {:.2} MiB + {} pods)",
        (r.daemon_many + pods * r.concurrent as u64) as f64 / 1024.0,
        r.daemon_many as f64 / 1024.0,
        r.concurrent
    )?;
    if let Some(h) = &r.holder_code {
        writeln!(
            out,
            "  berth-holder: {} KiB file; its code mapped per holder: {} KiB resident, {} KiB PSS (pods at once)",
            h.file, h.code_rss, h.code_pss
        )?;
    }
    let parts: Vec<String> = r
        .exec
        .parts
        .iter()
        .map(|(n, ms)| format!("{n} {ms:.2} ms"))
        .collect();
    writeln!(
        out,
        "  ExecSync /bin/true: {:.2} ms CPU per call ({}); in the pod cgroup {}; wall {:.1} ms (median)",
        r.exec.per_call_ms,
        parts.join(" + "),
        r.exec
            .in_pod_ms
            .map_or("n/a".to_string(), |ms| format!("{ms:.2} ms")),
        r.exec.wall_median_ms
    )?;
    Ok(())
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
