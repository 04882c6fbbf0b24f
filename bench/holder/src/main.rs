//! The per-pod holder's costs: its memory (RSS and PSS from smaps_rollup) holding a pod of
//! two busybox containers, and the CPU time of one ExecSync of `/bin/true` (the holder, the
//! processes it forks, and the client), against `runc exec` of the same program in a runc
//! container of the same bundle: the part of containerd's exec probe that runc does.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::runtime::holder::proto::CreateContainer;
use berth::runtime::holder::{Client, PodOptions, SpawnOptions, Zygote};

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
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(e.path());
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
        format!(
            "  pod 1 of {PODS}: RSS {} KiB, PSS {} KiB, private dirty {} KiB",
            r.rss_kib, r.pss_kib, r.dirty_kib
        ),
    )?;
    w(
        &mut out,
        format!(
            "  PSS per pod, {PODS} holders and their zygote: {} KiB (they share the binary's text and relocated data)",
            r.pss_many_kib
        ),
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

/// Pods running at once for the shared-memory figure.
const PODS: usize = 4;

struct Figures {
    rss_kib: u64,
    pss_kib: u64,
    dirty_kib: u64,
    pss_many_kib: u64,
    holder_cpu: Duration,
    client_cpu: Duration,
    holder_wall: Duration,
    runc: Option<(Duration, Duration)>,
}

fn measure(n: usize, berth: &Path, dir: &Path, tag: &str) -> Result<Figures, String> {
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs)?;
    let state = dir.join("state");
    let mut clients = Vec::new();
    let zygote = Zygote::new(berth.with_file_name("berth-holder"), vec![]);
    let res = (|| {
        for i in 0..PODS {
            let pod_id = format!("bench{i}");
            let c = Client::spawn(
                &zygote,
                &SpawnOptions {
                    state_dir: state.clone(),
                    pod_id: pod_id.clone(),
                    pod: PodOptions {
                        hostname: Some(pod_id.clone()),
                        ..Default::default()
                    },
                },
            )
            .map_err(|e| e.to_string())?;
            clients.push(c);
            let c = clients.last_mut().ok_or("no client")?;
            start_pod(c, &state, &pod_id, &rootfs, tag)?;
            if i == 0 {
                // the first pod alone, after its exec template is built
                exec_n(c, 3)?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let pids: Vec<i32> = clients
            .iter_mut()
            .map(|c| c.hello().map(|h| h.pid).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let mut many = 0;
        for c in clients.iter_mut().skip(1) {
            exec_n(c, 3)?;
        }
        // The zygote that forked them is theirs to share.
        let zygote_pid = zygote.pid().ok_or("no zygote")? as i32;
        for pid in pids.iter().chain([&zygote_pid]) {
            many += smaps_rollup(*pid)?.1;
        }
        Ok::<_, String>((pids[0], many / PODS as u64))
    })();
    let first = res.and_then(|(pid, many)| {
        let c = clients.first_mut().ok_or("no client")?;
        let (rss, pss, dirty) = single_pod_memory(pid)?;
        let (hcpu, ccpu, wall) = measure_exec(n, c, pid)?;
        Ok((rss, pss, dirty, many, hcpu, ccpu, wall))
    });
    for c in clients {
        if let Err(e) = c.shutdown() {
            let _ = writeln!(std::io::stderr(), "shutdown: {e}");
        }
    }
    let (rss_kib, pss_kib, dirty_kib, pss_many_kib, holder_cpu, client_cpu, holder_wall) = first?;
    let runc = if Path::new(RUNC).exists() {
        Some(measure_runc(n, dir, &rootfs, tag)?)
    } else {
        None
    };
    Ok(Figures {
        rss_kib,
        pss_kib,
        dirty_kib,
        pss_many_kib,
        holder_cpu,
        client_cpu,
        holder_wall,
        runc,
    })
}

fn exec_n(c: &mut Client, n: usize) -> Result<(), String> {
    for _ in 0..n {
        let r = c
            .exec_sync("c1", &["/bin/true".to_string()], Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        if r.exit_code != 0 {
            return Err(format!("/bin/true exited {}", r.exit_code));
        }
    }
    Ok(())
}

/// RSS, PSS and private dirty memory of one holder (while the others run: alone, its PSS
/// would be its RSS).
fn single_pod_memory(pid: i32) -> Result<(u64, u64, u64), String> {
    let s =
        std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).map_err(|e| e.to_string())?;
    let field = |name: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    print_mappings(pid);
    Ok((field("Rss:"), field("Pss:"), field("Private_Dirty:")))
}

fn start_pod(
    c: &mut Client,
    state: &Path,
    pod_id: &str,
    rootfs: &Path,
    tag: &str,
) -> Result<(), String> {
    let ns = state.join("pods").join(pod_id).join("ns");
    for id in ["c1", "c2"] {
        let mut spec = spec(
            rootfs,
            tag,
            &format!("{pod_id}-{id}"),
            &["/bin/sleep", "1000000"],
        );
        spec["linux"]["namespaces"] = serde_json::json!([
            {"type": "pid"}, {"type": "mount"},
            {"type": "network", "path": ns.join("net")},
            {"type": "ipc", "path": ns.join("ipc")},
            {"type": "uts", "path": ns.join("uts")}
        ]);
        spec.as_object_mut().map(|o| o.remove("hostname"));
        c.create_container(CreateContainer {
            id: id.into(),
            spec: spec.into(),
            log_path: Some(state.join(format!("logs/{pod_id}-{id}.log"))),
            stdin: false,
            tty: false,
            stdin_once: false,
        })
        .map_err(|e| e.to_string())?;
        c.start_container(id).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn measure_exec(
    n: usize,
    c: &mut Client,
    pid: i32,
) -> Result<(Duration, Duration, Duration), String> {
    let h0 = proc_cpu(pid)?;
    let c0 = self_cpu();
    let t = Instant::now();
    exec_n(c, n)?;
    let wall = t.elapsed();
    Ok((proc_cpu(pid)? - h0, self_cpu() - c0, wall))
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

/// The holder's biggest mappings by PSS, on stderr: where its memory goes.
fn print_mappings(pid: i32) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return;
    };
    let mut maps: Vec<(u64, u64, String)> = Vec::new();
    for line in s.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let perms = f.next().unwrap_or("");
            let name = f.nth(3).unwrap_or("[anon]");
            maps.push((0, 0, format!("{perms} {name}")));
        } else if let Some(m) = maps.last_mut() {
            let v = || {
                line.split_whitespace()
                    .nth(1)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0)
            };
            if first == "Pss:" {
                m.0 += v();
            } else if first == "Private_Dirty:" {
                m.1 += v();
            }
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "holder mappings (PSS KiB, private dirty KiB):");
    for (pss, dirty, name) in maps.iter().take(8) {
        let _ = writeln!(err, "  {pss:>6} {dirty:>6} {name}");
    }
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
