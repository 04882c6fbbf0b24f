//! The per-pod holder's costs: its memory (RSS and PSS from smaps_rollup) holding a pod of
//! two busybox containers, and the CPU time of one ExecSync of `/bin/true` (the holder, the
//! processes it forks, and the client), against `runc exec` of the same program in a runc
//! container of the same bundle: the part of containerd's exec probe that runc does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::runtime::holder::proto::CreateContainer;
use berth::runtime::holder::{Client, SpawnOptions, ns::PodOptions};

const RUNC: &str = "/usr/sbin/runc";

fn main() {
    if let Err(e) = run() {
        let _ = writeln!(std::io::stderr(), "berth-bench-holder: {e}");
        std::process::exit(1);
    }
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
    let tag = format!("berth-bench-holder-{}", std::process::id());
    let dir = Path::new("/run").join(&tag);
    private_tmpfs(&dir)?;
    let result = measure(n, &berth, &dir, &tag);
    for h in berth::cgroups::Layout::detect().hierarchies {
        let parent = h.mount.join(&tag);
        for c in ["c1", "c2", "runc"] {
            let _ = std::fs::remove_dir(parent.join(c));
        }
        let _ = std::fs::remove_dir(parent);
    }
    if let Ok(target) = std::ffi::CString::new(dir.display().to_string()) {
        // SAFETY: a plain syscall with a valid NUL-terminated path.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = std::fs::remove_dir(&dir);
    let r = result?;
    let mut out = std::io::stdout().lock();
    let w = |out: &mut std::io::StdoutLock<'_>, s: String| {
        writeln!(out, "{s}").map_err(|e| e.to_string())
    };
    w(&mut out, "holder memory with 2 running containers".into())?;
    w(
        &mut out,
        format!("  RSS {} KiB, PSS {} KiB", r.rss_kib, r.pss_kib),
    )?;
    w(
        &mut out,
        format!("ExecSync of /bin/true, CPU per call, mean of {n}"),
    )?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / n as f64;
    w(
        &mut out,
        format!(
            "  berth holder + forked processes {:>8.3} ms, + client {:.3} ms, wall {:.3} ms",
            ms(r.holder_cpu),
            ms(r.holder_cpu + r.client_cpu),
            ms(r.holder_wall)
        ),
    )?;
    match r.runc {
        Some((cpu, wall)) => {
            w(
                &mut out,
                format!(
                    "  runc exec (runc + runc init + true)  {:>8.3} ms, wall {:.3} ms",
                    ms(cpu),
                    ms(wall)
                ),
            )?;
            w(
                &mut out,
                format!(
                    "  ratio berth/runc (CPU) {:.3}x",
                    (r.holder_cpu + r.client_cpu).as_secs_f64() / cpu.as_secs_f64()
                ),
            )?;
        }
        None => w(&mut out, format!("  runc exec: skipped ({RUNC} not found)"))?,
    }
    Ok(())
}

struct Figures {
    rss_kib: u64,
    pss_kib: u64,
    holder_cpu: Duration,
    client_cpu: Duration,
    holder_wall: Duration,
    runc: Option<(Duration, Duration)>,
}

fn measure(n: usize, berth: &Path, dir: &Path, tag: &str) -> Result<Figures, String> {
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs)?;
    let state = dir.join("state");
    let mut c = Client::spawn(&SpawnOptions {
        binary: Some(berth.to_path_buf()),
        state_dir: state.clone(),
        pod_id: "bench".into(),
        pod: PodOptions {
            hostname: Some("bench".into()),
            ..Default::default()
        },
        env: vec![],
    })
    .map_err(|e| e.to_string())?;
    let res = measure_holder(n, &mut c, &state, &rootfs, tag);
    if let Err(e) = c.shutdown() {
        let _ = writeln!(std::io::stderr(), "shutdown: {e}");
    }
    let (rss_kib, pss_kib, holder_cpu, client_cpu, holder_wall) = res?;
    let runc = if Path::new(RUNC).exists() {
        Some(measure_runc(n, dir, &rootfs, tag)?)
    } else {
        None
    };
    Ok(Figures {
        rss_kib,
        pss_kib,
        holder_cpu,
        client_cpu,
        holder_wall,
        runc,
    })
}

type HolderFigures = (u64, u64, Duration, Duration, Duration);

fn measure_holder(
    n: usize,
    c: &mut Client,
    state: &Path,
    rootfs: &Path,
    tag: &str,
) -> Result<HolderFigures, String> {
    let pid = c.hello().map_err(|e| e.to_string())?.pid;
    let ns = state.join("pods/bench/ns");
    for id in ["c1", "c2"] {
        let mut spec = spec(rootfs, tag, id, &["/bin/sleep", "1000000"]);
        spec["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": ns.join("net")},
            {"type": "ipc", "path": ns.join("ipc")},
            {"type": "uts", "path": ns.join("uts")}
        ]);
        spec.as_object_mut().map(|o| o.remove("hostname"));
        c.create_container(CreateContainer {
            id: id.into(),
            spec,
            log_path: Some(state.join(format!("logs/{id}.log"))),
            stdin: false,
            tty: false,
        })
        .map_err(|e| e.to_string())?;
        c.start_container(id).map_err(|e| e.to_string())?;
    }
    let cmd = vec!["/bin/true".to_string()];
    // warm up, then settle so the figures are the steady state
    for _ in 0..3 {
        c.exec_sync("c1", &cmd, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let (rss, pss) = smaps_rollup(pid)?;
    let h0 = proc_cpu(pid)?;
    let c0 = self_cpu();
    let t = Instant::now();
    for _ in 0..n {
        let r = c
            .exec_sync("c1", &cmd, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        if r.exit_code != 0 {
            return Err(format!("/bin/true exited {}", r.exit_code));
        }
    }
    let wall = t.elapsed();
    let hcpu = proc_cpu(pid)? - h0;
    let ccpu = self_cpu() - c0;
    Ok((rss, pss, hcpu, ccpu, wall))
}

fn measure_runc(
    n: usize,
    dir: &Path,
    rootfs: &Path,
    tag: &str,
) -> Result<(Duration, Duration), String> {
    let bundle = dir.join("runc-bundle");
    std::fs::create_dir_all(&bundle).map_err(|e| e.to_string())?;
    let spec = spec(rootfs, tag, "runc", &["/bin/sleep", "1000000"]);
    std::fs::write(bundle.join("config.json"), spec.to_string()).map_err(|e| e.to_string())?;
    let root = dir.join("runc-root");
    let runc = |args: &[&str]| {
        let mut c = Command::new(RUNC);
        c.arg("--root").arg(&root).args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    };
    let st = runc(&["run", "-d", "--bundle", &bundle.display().to_string(), "b"])
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("runc run: {st}"));
    }
    let res = (|| {
        for _ in 0..3 {
            wait_rusage(runc(&["exec", "b", "/bin/true"]))?;
        }
        let mut cpu = Duration::ZERO;
        let t = Instant::now();
        for _ in 0..n {
            cpu += wait_rusage(runc(&["exec", "b", "/bin/true"]))?;
        }
        Ok((cpu, t.elapsed()))
    })();
    let _ = runc(&["delete", "-f", "b"]).status();
    res
}

/// Spawns, waits, and returns the CPU time of the process and the children it waited for.
fn wait_rusage(mut cmd: Command) -> Result<Duration, String> {
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers to locals.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    if r < 0 || status != 0 {
        return Err(format!("{cmd:?}: status {status}"));
    }
    Ok(cpu_of(&ru))
}

fn cpu_of(ru: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn self_cpu() -> Duration {
    // SAFETY: rusage is plain data the kernel fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a local.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    cpu_of(&ru)
}

/// utime + stime + cutime + cstime of `pid`: the holder and every child it reaped.
fn proc_cpu(pid: i32) -> Result<Duration, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // fields 14..=17 of stat, counted from the state (field 3) at index 0
    let ticks: u64 = f.get(11..15).map(|v| v.iter().sum()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}

fn smaps_rollup(pid: i32) -> Result<(u64, u64), String> {
    let s =
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).map_err(|e| e.to_string())?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("Rss:"), field("Pss:")))
}

fn make_rootfs(rootfs: &Path) -> Result<(), String> {
    for d in ["bin", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(|e| e.to_string())?;
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .map_err(|e| format!("busybox: {e}"))?;
    for app in ["true", "sleep", "sh"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn spec(rootfs: &Path, tag: &str, id: &str, args: &[&str]) -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    serde_json::json!({
        "ociVersion": "1.0.2-dev",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": args,
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true},
        "root": {"path": rootfs, "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": format!("/{tag}/{id}"),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "seccomp": berth::oci::seccomp_default::runtime_default(&[])
        }
    })
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
