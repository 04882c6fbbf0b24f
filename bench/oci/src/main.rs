//! Container start latency: create+start+wait+delete of a busybox `true` bundle, through
//! berth's in-process runtime, `berth oci run` and `runc run` (and crun where it runs),
//! in the same run. Prints the median per container, the ratio to runc, and peak RSS.
//!
//! Usage (root): berth-bench-oci [ITERATIONS] [BERTH_BINARY]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        let _ = writeln!(std::io::stderr(), "bench: {e}");
        std::process::exit(1);
    }
}

struct Sample {
    times: Vec<Duration>,
    /// user+system CPU time of all iterations (the runtime and the container)
    cpu: Duration,
    peak_rss_kib: i64,
}

fn cpu_of(ru: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn self_and_children_cpu() -> Duration {
    let mut total = Duration::ZERO;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: rusage is plain data the kernel fills in.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a local.
        unsafe { libc::getrusage(who, &mut ru) };
        total += cpu_of(&ru);
    }
    total
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse().map_err(|_| "ITERATIONS must be a number"))
        .transpose()?
        .unwrap_or(100);
    let berth = args.next().map(PathBuf::from).unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("berth")))
            .unwrap_or_default()
    });
    let tag = format!("berth-bench-{}", std::process::id());
    // Runtime state lives on tmpfs in production (/run/runc, /run/containerd): so here,
    // on a tmpfs of the bench's own, in a mount namespace of its own.
    let dir = Path::new("/run").join(&tag);
    private_tmpfs(&dir)?;
    let bundle = dir.join("bundle");
    make_bundle(&bundle, &tag)?;
    let result = measure(n, &berth, &dir, &bundle);
    // the cgroup parent the bench made in every hierarchy
    for h in berth::cgroups::Layout::detect().hierarchies {
        let _ = std::fs::remove_dir(h.mount.join(&tag));
    }
    // the tmpfs lives in the bench's own mount namespace: detach it, then the mount point
    if let Ok(target) = std::ffi::CString::new(dir.display().to_string()) {
        // SAFETY: a plain syscall with a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(&dir);
    let mut out = std::io::stdout().lock();
    let results = result?;
    let runc = results
        .iter()
        .find(|(n, _)| *n == "runc run")
        .map(|(_, s)| s.times.clone());
    let runc_med = runc.map(|mut t| median(&mut t));
    writeln!(
        out,
        "{n} iterations of create+start+wait+delete (busybox `true`)"
    )
    .map_err(|e| e.to_string())?;
    writeln!(
        out,
        "{:<22} {:>12} {:>10} {:>14} {:>16}",
        "path", "median", "vs runc", "CPU/container", "peak RSS"
    )
    .map_err(|e| e.to_string())?;
    for (name, mut s) in results {
        let m = median(&mut s.times);
        let ratio = runc_med.map_or("-".to_string(), |r| {
            format!("{:.3}x", m.as_secs_f64() / r.as_secs_f64())
        });
        let cpu = s.cpu.as_secs_f64() * 1e3 / s.times.len() as f64;
        writeln!(
            out,
            "{name:<22} {:>9.2} ms {ratio:>10} {cpu:>11.2} ms {:>12} KiB",
            m.as_secs_f64() * 1e3,
            s.peak_rss_kib
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn private_tmpfs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let c = |s: &str| std::ffi::CString::new(s).map_err(|e| e.to_string());
    let (root, none, tmpfs, target) = (
        c("/")?,
        c("none")?,
        c("tmpfs")?,
        c(&dir.display().to_string())?,
    );
    // SAFETY: plain syscalls with valid NUL-terminated strings.
    let ok = unsafe {
        libc::unshare(libc::CLONE_NEWNS) == 0
            && libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) == 0
            && libc::mount(
                tmpfs.as_ptr(),
                target.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            ) == 0
    };
    if !ok {
        return Err(format!(
            "tmpfs on {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn make_bundle(bundle: &Path, tag: &str) -> Result<(), String> {
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .map_err(|e| format!("busybox: {e}"))?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).map_err(|e| e.to_string())?;
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let spec = serde_json::json!({
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true},
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": format!("/{tag}/c"),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    std::fs::write(bundle.join("config.json"), spec.to_string()).map_err(|e| e.to_string())
}

/// Runs a command, returning its wall time, CPU time and max RSS (KiB) from wait4.
fn timed(cmd: &mut Command) -> Result<(Duration, Duration, i64), String> {
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let el = t.elapsed();
    if r < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{cmd:?} failed (status {status})"));
    }
    Ok((el, cpu_of(&ru), ru.ru_maxrss))
}

fn measure(
    n: usize,
    berth_bin: &Path,
    dir: &Path,
    bundle: &Path,
) -> Result<Vec<(&'static str, Sample)>, String> {
    let mut results = Vec::new();
    // in-process
    let rt = berth::oci::Runtime::new(dir.join("root-lib"));
    let opts = berth::oci::CreateOptions {
        bundle: bundle.to_path_buf(),
        ..Default::default()
    };
    let mut times = Vec::with_capacity(n);
    let mut cpu = Duration::ZERO;
    let mut phases = [Duration::ZERO; 4];
    for i in 0..n + 3 {
        if i == 3 {
            cpu = self_and_children_cpu();
        }
        let t = Instant::now();
        let st = rt.create("c", &opts).map_err(|e| e.to_string())?;
        let t1 = t.elapsed();
        rt.start("c").map_err(|e| {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", st.pid)).unwrap_or_default();
            format!("{e} (state {st:?}, /proc stat {stat})")
        })?;
        let t2 = t.elapsed();
        berth::oci::wait(st.pid).map_err(|e| e.to_string())?;
        let t3 = t.elapsed();
        rt.delete("c", false).map_err(|e| e.to_string())?;
        if i >= 3 {
            times.push(t.elapsed());
            for (p, d) in phases
                .iter_mut()
                .zip([t1, t2 - t1, t3 - t2, t.elapsed() - t3])
            {
                *p += d;
            }
        }
    }
    let cpu = self_and_children_cpu() - cpu;
    let _ = writeln!(
        std::io::stderr(),
        "in-process mean phases: create {:.2} ms, start {:.2} ms, wait {:.2} ms, delete {:.2} ms",
        phases[0].as_secs_f64() * 1e3 / n as f64,
        phases[1].as_secs_f64() * 1e3 / n as f64,
        phases[2].as_secs_f64() * 1e3 / n as f64,
        phases[3].as_secs_f64() * 1e3 / n as f64
    );
    let hwm = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmHWM:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    results.push((
        "berth (in-process)",
        Sample {
            times,
            cpu,
            peak_rss_kib: hwm,
        },
    ));
    let cli = |name: &'static str, argv: Vec<String>| -> Result<(&'static str, Sample), String> {
        let root = dir.join(format!("root-{}", name.replace(' ', "-")));
        let mut times = Vec::with_capacity(n);
        let mut peak = 0;
        let mut cpu = Duration::ZERO;
        for i in 0..n + 3 {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..])
                .arg("--root")
                .arg(&root)
                .args(["run", "--bundle"])
                .arg(bundle)
                .arg("c");
            let (t, c, rss) = timed(&mut c)?;
            if i >= 3 {
                times.push(t);
                cpu += c;
                peak = peak.max(rss);
            }
        }
        Ok((
            name,
            Sample {
                times,
                cpu,
                peak_rss_kib: peak,
            },
        ))
    };
    results.push(cli(
        "berth oci run",
        vec![berth_bin.display().to_string(), "oci".into()],
    )?);
    results.push(cli("runc run", vec!["/usr/sbin/runc".into()])?);
    match cli("crun run", vec!["/usr/bin/crun".into()]) {
        Ok(r) => results.push(r),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "crun skipped: {e}");
        }
    }
    Ok(results)
}
