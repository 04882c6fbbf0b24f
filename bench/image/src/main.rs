//! Pull + unpack of a 5-layer, ~50 MB image of random data from a local registry into an
//! empty store: berth (in process, as its daemon pulls, and as the `berth image pull`
//! CLI) against containerd's CRI PullImage, in the same run. Prints medians, the ratio
//! and peak RSS growth. Run as root: `cargo run --release -p berth-bench-image`.
//!
//! containerd is started by the bench itself for every pull, with its own root, state,
//! socket and registry host config under a temp dir, inside a private mount namespace.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth::image::ImageStore;
use berth::image::progress::Progress;
use berth::image::pull::{PullOptions, pull};
use berth::image::registry::RegistryHosts;
use berth::image::unpack::UnpackOptions;
use berth::sys::overlay::LinuxOverlay;
use berth_integration_tests::fixtures::{self, Image};
use berth_integration_tests::registry::{Mode, Registry};
use berth_integration_tests::util::{TempDir, unique_id, wait_for};

const RUNS: usize = 7;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, root, hosts, warm, reference] = args.as_slice()
        && flag == CHILD_FLAG
    {
        return child_pull(Path::new(root), Path::new(hosts), warm, reference);
    }
    if args.get(1).map(String::as_str) == Some(SPAWN_FLAG) {
        return spawn_measured(&args[2..]);
    }
    anyhow::ensure!(
        nix_is_root(),
        "run the benchmark as root (containerd needs it)"
    );
    let id = unique_id();
    let work = TempDir::new(&id, "bench-image")?;
    let image = Image::RandomLayers { count: 5, mib: 10 };
    let layout = fixtures::build(&image, &work.path().join("layout"))?;
    let registry = Registry::start(&id, Mode::Http)?;
    let reference = registry.push(&layout, "bench/random", "latest")?;
    // Each daemon first pulls this small image, so the measured pull finds its code
    // paths paged in and its pools made, as a node's daemon does.
    let warm_layout = fixtures::build(&Image::Busybox, &work.path().join("warm"))?;
    let warm = registry.push(&warm_layout, "bench/warm", "latest")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "image: {reference} (5 layers x 10 MiB random data), {RUNS} runs each, alternating"
    )?;
    writeln!(
        out,
        "the daemons (berth in process, containerd) pull {warm} first; the CLI starts cold"
    )?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let berth_bin = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .join("berth");
    let hosts_file = work.path().join("registries.yaml");
    std::fs::write(
        &hosts_file,
        format!(
            "registries:\n  \"{}\":\n    plainHttp: true\n",
            registry.host()
        ),
    )?;

    let (mut lib, mut cli, mut ctrd) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..RUNS {
        let dir = work.path().join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        lib.push(berth_in_process(
            &dir.join("berth-lib"),
            &hosts_file,
            &warm,
            &reference,
        )?);
        if berth_bin.is_file() {
            cli.push(berth_cli(
                &berth_bin,
                &dir.join("berth-cli"),
                &hosts_file,
                &reference,
            )?);
        }
        ctrd.push(rt.block_on(containerd_pull(
            &dir.join("containerd"),
            &registry,
            &warm,
            &reference,
        ))?);
        std::fs::remove_dir_all(&dir)?;
    }
    let report = |out: &mut dyn Write, name: &str, v: &[Sample]| -> anyhow::Result<Duration> {
        let t = median(v.iter().map(|s| s.time).collect());
        let rss = median_u64(v.iter().map(|s| s.rss_kib).collect());
        writeln!(
            out,
            "{name:<44} median {:>8.1} ms   {:<22} {:>7.1} MiB",
            ms(t),
            v.first().map(|s| s.rss_what).unwrap_or(""),
            rss as f64 / 1024.0
        )?;
        Ok(t)
    };
    let t_lib = report(&mut out, "berth (in process, as the daemon pulls)", &lib)?;
    if !cli.is_empty() {
        report(&mut out, "berth image pull (CLI process, incl. exec)", &cli)?;
    }
    let t_ctrd = report(&mut out, "containerd 1.6 CRI PullImage", &ctrd)?;
    writeln!(
        out,
        "ratio berth/containerd: {:.2}x (goal: at or under 0.5x)",
        t_lib.as_secs_f64() / t_ctrd.as_secs_f64()
    )?;
    if cli.is_empty() {
        writeln!(
            out,
            "(build the release CLI too, `cargo build --release --bin berth`, to time it)"
        )?;
    }
    Ok(())
}

struct Sample {
    time: Duration,
    rss_kib: u64,
    rss_what: &'static str,
}

const CHILD_FLAG: &str = "--child-pull";

/// berth's pull as its daemon runs it: in a fresh process (this binary again) that first
/// builds its runtime and opens the store, then pulls; it reports time and RSS growth.
fn berth_in_process(
    root: &Path,
    hosts: &Path,
    warm: &str,
    reference: &str,
) -> anyhow::Result<Sample> {
    let out = Command::new(std::env::current_exe()?)
        .arg(CHILD_FLAG)
        .arg(root)
        .arg(hosts)
        .arg(warm)
        .arg(reference)
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "in-process pull failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>());
    let (Some(Ok(ns)), Some(Ok(growth))) = (it.next(), it.next()) else {
        bail!("child said {text:?}");
    };
    Ok(Sample {
        time: Duration::from_nanos(ns),
        rss_kib: growth,
        rss_what: "peak RSS growth",
    })
}

fn child_pull(root: &Path, hosts: &Path, warm: &str, reference: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let hosts = RegistryHosts::load(hosts)?;
    let store = ImageStore::open(root, Arc::new(LinuxOverlay), UnpackOptions::default())?;
    rt.block_on(pull(
        &store,
        &hosts,
        warm,
        &PullOptions::default(),
        &Progress::silent(),
    ))?;
    let before = reset_peak_rss("self")?;
    let t = Instant::now();
    rt.block_on(pull(
        &store,
        &hosts,
        reference,
        &PullOptions::default(),
        &Progress::silent(),
    ))?;
    let time = t.elapsed();
    let peak = status_kib("self", "VmHWM:")?;
    writeln!(
        std::io::stdout(),
        "{} {}",
        time.as_nanos(),
        peak.saturating_sub(before)
    )?;
    Ok(())
}

const SPAWN_FLAG: &str = "--spawn-measured";

/// The CLI as a user runs it. It is started from a fresh, small copy of this binary,
/// because a child's peak RSS counts what it shared with its parent before exec, and
/// this process holds the fixture.
fn berth_cli(bin: &Path, root: &Path, hosts: &Path, reference: &str) -> anyhow::Result<Sample> {
    let out = Command::new(std::env::current_exe()?)
        .arg(SPAWN_FLAG)
        .arg(bin)
        .args(["image", "--root"])
        .arg(root)
        .arg("--registry-config")
        .arg(hosts)
        .args(["pull", reference])
        .env("BERTH_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "berth image pull failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>());
    let (Some(Ok(ns)), Some(Ok(maxrss))) = (it.next(), it.next()) else {
        bail!("spawner said {text:?}");
    };
    Ok(Sample {
        time: Duration::from_nanos(ns),
        rss_kib: maxrss,
        rss_what: "peak RSS of the process",
    })
}

/// Runs `cmd`, then prints its wall time (ns) and peak RSS (KiB).
fn spawn_measured(cmd: &[String]) -> anyhow::Result<()> {
    let (prog, args) = cmd.split_first().context("no command")?;
    let t = Instant::now();
    let child = Command::new(prog)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let (status, maxrss) = wait_rusage(child)?;
    let time = t.elapsed();
    anyhow::ensure!(status == 0, "{prog} exited {status}");
    writeln!(std::io::stdout(), "{} {maxrss}", time.as_nanos())?;
    Ok(())
}

/// Waits for `child` and returns its exit status and peak RSS (KiB).
fn wait_rusage(child: Child) -> anyhow::Result<(i32, u64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own unreaped child; status and usage are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child); // reaped above
    Ok((libc::WEXITSTATUS(status), usage.ru_maxrss as u64))
}

/// Starts a fresh containerd under `dir`, waits for its CRI service, pulls once.
async fn containerd_pull(
    dir: &Path,
    registry: &Registry,
    warm: &str,
    reference: &str,
) -> anyhow::Result<Sample> {
    let mut ctrd = Containerd::start(dir, &registry.host())?;
    let result = async {
        let sock = ctrd.socket.clone();
        let up = wait_for(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).ok()
        });
        anyhow::ensure!(up.is_some(), "containerd did not listen: {}", ctrd.log());
        let deadline = Instant::now() + Duration::from_secs(20);
        while grpc(&sock, "/runtime.v1.ImageService/ListImages", &[])
            .await
            .is_err()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "containerd's CRI did not come up: {}",
                ctrd.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        grpc(
            &sock,
            "/runtime.v1.ImageService/PullImage",
            &pull_image_request(warm),
        )
        .await
        .with_context(|| format!("warm-up PullImage: {}", ctrd.log()))?;
        let pid = ctrd.child.id().to_string();
        let before = reset_peak_rss(&pid)?;
        let t = Instant::now();
        grpc(
            &sock,
            "/runtime.v1.ImageService/PullImage",
            &pull_image_request(reference),
        )
        .await
        .with_context(|| format!("PullImage: {}", ctrd.log()))?;
        let time = t.elapsed();
        let peak = status_kib(&pid, "VmHWM:")?;
        Ok(Sample {
            time,
            rss_kib: peak.saturating_sub(before),
            rss_what: "peak RSS growth",
        })
    }
    .await;
    ctrd.stop();
    result
}

struct Containerd {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Containerd {
    fn start(dir: &Path, registry_host: &str) -> anyhow::Result<Self> {
        let d = |s: &str| dir.join(s);
        let certs = d("certs.d").join(registry_host);
        std::fs::create_dir_all(&certs)?;
        std::fs::write(
            certs.join("hosts.toml"),
            format!(
                "server = \"http://{registry_host}\"\n\n[host.\"http://{registry_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )?;
        let socket = d("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    conf_dir = "{cni}"
    bin_dir = "{cni}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{certs}"
"#,
            root = d("root").display(),
            state = d("state").display(),
            sock = socket.display(),
            opt = d("opt").display(),
            cni = d("cni").display(),
            certs = d("certs.d").display(),
        );
        std::fs::write(d("config.toml"), config)?;
        let log = std::fs::File::create(d("containerd.log"))?;
        // Its own mount namespace: whatever containerd mounts stays off the machine.
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "containerd",
                "--config",
            ])
            .arg(d("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start containerd (install containerd: scripts/setup.sh)")?;
        // unshare execs containerd in place: the pid is containerd's.
        Ok(Self {
            child,
            socket,
            dir: dir.to_path_buf(),
        })
    }

    fn log(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        s.lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `PullImageRequest{image: ImageSpec{image: reference}}` in protobuf wire format
/// (field 1, length-delimited, nested once): the one CRI message the bench sends, so
/// it is encoded here rather than generated.
fn pull_image_request(reference: &str) -> Vec<u8> {
    let spec = length_delimited(1, reference.as_bytes());
    length_delimited(1, &spec)
}

fn length_delimited(field: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2];
    let mut n = bytes.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(bytes);
    out
}

/// One unary gRPC call over containerd's unix socket; the reply body is discarded.
async fn grpc(sock: &Path, method: &str, message: &[u8]) -> anyhow::Result<()> {
    let stream = tokio::net::UnixStream::connect(sock).await?;
    let (client, conn) = h2::client::handshake(stream).await?;
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await?;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://localhost{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (resp, mut send) = client.send_request(req, false)?;
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    send.send_data(bytes::Bytes::from(frame), true)?;
    let resp = resp.await?;
    let header_status = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let c = chunk?;
        let _ = body.flow_control().release_capacity(c.len());
    }
    let trailers = body.trailers().await?;
    let status = header_status.or_else(|| {
        trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap_or("?").to_string())
    });
    let message = trailers
        .as_ref()
        .and_then(|t| t.get("grpc-message"))
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    conn.abort();
    match status.as_deref() {
        Some("0") => Ok(()),
        other => bail!("{method}: grpc-status {other:?} {message}"),
    }
}

/// Resets the peak RSS of `/proc/<pid>` (clear_refs 5) and returns its current RSS (KiB).
fn reset_peak_rss(pid: &str) -> anyhow::Result<u64> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("reset VmHWM")?;
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: &str, field: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| {
            l.strip_prefix(field)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
