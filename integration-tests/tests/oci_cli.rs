//! `berth oci` driven as containerd's runc shim drives a runtime, and the same test run
//! against Debian's runc (/usr/sbin/runc), so both are held to one behaviour.

mod oci_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_integration_tests::{TestEnv, require_root};
use oci_common::{Bundle, mounted_below, status_field};
use serde_json::{Value, json};

const RUNC: &str = "/usr/sbin/runc";

/// The berth binary next to this test's deps dir (built by `cargo build`).
fn berth_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berth"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build` first",
        bin.display()
    );
    bin
}

struct Cli {
    argv: Vec<String>,
    root: PathBuf,
}

impl Cli {
    fn new(env: &TestEnv, which: &str) -> Cli {
        let root = env.subdir(&format!("root-{which}")).expect("root");
        let argv = match which {
            "berth" => vec![berth_bin().display().to_string(), "oci".into()],
            _ => vec![RUNC.into()],
        };
        Cli { argv, root }
    }

    fn cmd(&self, env: &TestEnv, args: &[&str]) -> Command {
        let mut c = env.command(&self.argv[0]);
        c.args(&self.argv[1..])
            .arg("--root")
            .arg(&self.root)
            .args(args);
        // the container keeps inherited stdio open: never wait on a pipe it holds
        c.stdin(Stdio::null());
        c
    }

    /// Runs to completion; stdout captured, stderr to a file (the container may hold it).
    fn run(&self, env: &TestEnv, args: &[&str]) -> Output {
        let err = env.dir().join("cli-stderr");
        let mut c = self.cmd(env, args);
        let holds_stdio =
            matches!(args.first(), Some(&"create") | Some(&"run")) || args.contains(&"--detach");
        if holds_stdio {
            c.stdout(Stdio::null());
        }
        c.stderr(std::fs::File::create(&err).expect("stderr file"));
        let mut out = c.output().expect("spawn");
        out.stderr = std::fs::read(&err).unwrap_or_default();
        out
    }

    fn ok(&self, env: &TestEnv, args: &[&str]) -> String {
        let o = self.run(env, args);
        assert!(
            o.status.success(),
            "{:?} {args:?}: {}",
            self.argv,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn state(&self, env: &TestEnv, id: &str) -> Value {
        serde_json::from_str(&self.ok(env, &["state", id])).expect("state json")
    }
}

fn lifecycle(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    let b = Bundle::new(&env, "life", "touch /out/started; sleep 30");
    b.write();
    let bundle = b.dir.display().to_string();
    let pidfile = env.dir().join("life.pid");
    cli.ok(
        &env,
        &[
            "create",
            "--bundle",
            &bundle,
            "--pid-file",
            &pidfile.display().to_string(),
            "life",
        ],
    );
    let st = cli.state(&env, "life");
    assert_eq!(st["status"], "created", "{st}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(st["pid"], pid);
    assert!(
        !b.out.join("started").exists(),
        "the process ran before start"
    );
    // an invalid transition fails
    assert!(!cli.run(&env, &["resume", "life"]).status.success());
    cli.ok(&env, &["start", "life"]);
    b.wait_out("started");
    assert_eq!(cli.state(&env, "life")["status"], "running");
    assert!(
        !cli.run(&env, &["start", "life"]).status.success(),
        "started twice"
    );
    // outside: the container's cgroup holds the process
    let procs =
        std::fs::read_to_string(b.cgroup_dir(&env, "memory").join("cgroup.procs")).expect("procs");
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "{procs}"
    );
    let list = cli.ok(&env, &["list", "--format", "json"]);
    assert!(list.contains("\"life\""), "{list}");
    let ps = cli.ok(&env, &["ps", "--format", "json", "life"]);
    let ps: Vec<i32> = serde_json::from_str(&ps).expect("ps json");
    assert!(ps.contains(&pid), "{ps:?}");
    cli.ok(&env, &["pause", "life"]);
    assert_eq!(cli.state(&env, "life")["status"], "paused");
    // a task frozen by the v1 freezer shows as D
    assert_eq!(status_field(pid, "State").chars().next(), Some('D'));
    cli.ok(&env, &["resume", "life"]);
    assert_eq!(cli.state(&env, "life")["status"], "running");
    cli.ok(
        &env,
        &[
            "exec",
            "--env",
            "X=from-exec",
            "life",
            "/bin/sh",
            "-c",
            "echo $X $(hostname) > /out/exec",
        ],
    );
    assert_eq!(b.read_out("exec").trim(), "from-exec berth-box");
    // update: resources as JSON on stdin
    let mut up = cli.cmd(&env, &["update", "--resources", "-", "life"]);
    up.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = up.spawn().expect("update");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        br#"{"pids":{"limit":42}}"#,
    )
    .expect("write");
    drop(child.stdin.take());
    let o = child.wait_with_output().expect("update");
    assert!(
        o.status.success(),
        "update: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let max =
        std::fs::read_to_string(b.cgroup_dir(&env, "pids").join("pids.max")).expect("pids.max");
    assert_eq!(max.trim(), "42");
    assert!(
        !cli.run(&env, &["delete", "life"]).status.success(),
        "deleted a running container"
    );
    // exec as containerd's shim does it: an OCI process JSON, detached, with a pid file
    // (the output file appears whole, by rename, so the test never reads it half-written)
    let process = env.dir().join("process.json");
    let pf = env.dir().join("exec.pid");
    let proc_json = json!({"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
        "args": ["/bin/sh", "-c", "echo via-process > /out/p.tmp; mv /out/p.tmp /out/p"], "env": ["PATH=/bin"]});
    std::fs::write(&process, proc_json.to_string()).expect("process.json");
    let (ps_, pfs) = (process.display().to_string(), pf.display().to_string());
    cli.ok(
        &env,
        &[
            "exec",
            "--process",
            &ps_,
            "--detach",
            "--pid-file",
            &pfs,
            "life",
        ],
    );
    assert_eq!(b.wait_out("p").trim(), "via-process");
    let exec_pid: i32 = std::fs::read_to_string(&pf)
        .expect("exec pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(exec_pid > 0);
    // a second process, then SIGKILL to every process of the container
    cli.ok(&env, &["exec", "--detach", "life", "/bin/sleep", "30"]);
    let procs = b.cgroup_dir(&env, "pids").join("cgroup.procs");
    let count = || {
        std::fs::read_to_string(&procs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert!(count() >= 2, "exec --detach: {} processes", count());
    cli.ok(&env, &["kill", "--all", "life", "KILL"]);
    let emptied =
        berth_integration_tests::util::wait_for(std::time::Duration::from_secs(5), || {
            (count() == 0).then_some(())
        });
    assert!(emptied.is_some(), "kill --all left {} processes", count());
    let stopped =
        berth_integration_tests::util::wait_for(std::time::Duration::from_secs(5), || {
            (cli.state(&env, "life")["status"] == "stopped").then_some(())
        });
    assert!(stopped.is_some(), "not stopped after SIGKILL");
    cli.ok(&env, &["delete", "life"]);
    assert!(!cli.run(&env, &["state", "life"]).status.success());
    assert!(!b.cgroup_dir(&env, "memory").exists(), "cgroup left");
}

fn run_exit_code(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    let b = Bundle::new(&env, "exit", "exit 3");
    b.write();
    let o = cli.run(
        &env,
        &["run", "--bundle", &b.dir.display().to_string(), "exit"],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !cli.run(&env, &["state", "exit"]).status.success(),
        "run left its container"
    );
    // --no-pivot: a move mount and chroot instead of pivot_root
    let bundle = b.dir.display().to_string();
    let o = cli.run(&env, &["run", "--no-pivot", "--bundle", &bundle, "exit"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn bad_capability(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    let mut b = Bundle::new(&env, "badcap", "true");
    b.spec["process"]["capabilities"]["bounding"] = json!(["CAP_NOPE"]);
    b.write();
    let o = cli.run(
        &env,
        &["create", "--bundle", &b.dir.display().to_string(), "badcap"],
    );
    if which == "runc" {
        // Peer difference, seen with Debian's runc 1.1.5: it ignores capability names it
        // does not know (logging a warning) and creates the container, where the runtime
        // spec asks for an error. Held to what it does, and cleaned up.
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        cli.ok(&env, &["delete", "--force", "badcap"]);
        assert!(!b.cgroup_dir(&env, "memory").exists(), "cgroup left");
        return;
    }
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CAP_NOPE"), "{err}");
    assert!(!cli.root.join("badcap").exists(), "state dir left");
    assert!(!b.cgroup_dir(&env, "memory").exists(), "cgroup left");
}

/// The container's process sees itself in its cgroup in every hierarchy (the unified one
/// included), and in a cgroup namespace sees `/` everywhere.
fn cgroup_membership(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    for cgns in [false, true] {
        let id = if cgns { "cgns" } else { "cgmember" };
        let mut b = Bundle::new(&env, id, "cat /proc/self/cgroup > /out/cg");
        if cgns {
            b.spec["linux"]["namespaces"]
                .as_array_mut()
                .expect("ns")
                .push(json!({"type": "cgroup"}));
        }
        b.write();
        let o = cli.run(&env, &["run", "--bundle", &b.dir.display().to_string(), id]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let seen = b.read_out("cg");
        let want = if cgns {
            "/".to_string()
        } else {
            b.cgroups_path.clone()
        };
        let lines: Vec<&str> = seen.lines().collect();
        assert!(
            lines.iter().any(|l| l.starts_with("0::")),
            "{which}: no unified line: {seen}"
        );
        for l in lines {
            let path = l.splitn(3, ':').nth(2).unwrap_or_default();
            assert_eq!(path, want, "{which} {id}: {l} in {seen}");
        }
    }
}

#[test]
fn berth_cgroup_membership() {
    require_root!();
    cgroup_membership("berth");
}

#[test]
fn runc_cgroup_membership() {
    require_root!();
    cgroup_membership("runc");
}

#[test]
fn berth_lifecycle() {
    require_root!();
    lifecycle("berth");
}

#[test]
fn runc_lifecycle() {
    require_root!();
    lifecycle("runc");
}

#[test]
fn berth_run_reports_exit_code() {
    require_root!();
    run_exit_code("berth");
}

#[test]
fn runc_run_reports_exit_code() {
    require_root!();
    run_exit_code("runc");
}

#[test]
fn berth_bad_capability_fails_cleanly() {
    require_root!();
    bad_capability("berth");
}

#[test]
fn runc_bad_capability_fails_cleanly() {
    require_root!();
    bad_capability("runc");
}

#[test]
fn berth_features_and_systemd_cgroup() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, "berth");
    let f: Value = serde_json::from_str(&cli.ok(&env, &["features"])).expect("features json");
    assert_eq!(f["ociVersionMax"], "1.3.0");
    let o = cli.run(&env, &["--systemd-cgroup", "list"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--systemd-cgroup"));
    // errors also go to --log, as JSON lines with --log-format json (what the shim reads)
    let log = env.dir().join("oci.log");
    let l = log.display().to_string();
    let o = cli.run(
        &env,
        &["--log", &l, "--log-format", "json", "start", "nope"],
    );
    assert!(!o.status.success());
    let line: Value =
        serde_json::from_str(std::fs::read_to_string(&log).expect("log").trim()).expect("json");
    assert_eq!(line["level"], "error");
    assert!(
        line["msg"].as_str().is_some_and(|m| m.contains("nope")),
        "{line}"
    );
}

/// Receives one fd sent with SCM_RIGHTS.
fn recv_fd(stream: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave this process the fd.
            return unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no fd in the console socket message");
}

fn terminal(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    let mut b = Bundle::new(
        &env,
        "tty",
        "tty > /out/tty; echo hello-from-tty; touch /out/done; sleep 2",
    );
    b.spec["process"]["terminal"] = json!(true);
    b.spec["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    b.write();
    let sock = env.dir().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let s = sock.display().to_string();
    cli.ok(
        &env,
        &[
            "create",
            "--bundle",
            &b.dir.display().to_string(),
            "--console-socket",
            &s,
            "tty",
        ],
    );
    let (conn, _) = listener.accept().expect("accept");
    let master = std::fs::File::from(recv_fd(&conn));
    cli.ok(&env, &["start", "tty"]);
    b.wait_out("done");
    assert!(
        b.read_out("tty").trim().starts_with("/dev/pts/"),
        "{}",
        b.read_out("tty")
    );
    // the pty master carries the process's output
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("hello-from-tty")
        && std::time::Instant::now() < deadline
    {
        match std::io::Read::read(&mut &master, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        String::from_utf8_lossy(&got).contains("hello-from-tty"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    cli.ok(&env, &["delete", "--force", "tty"]);
}

#[test]
fn berth_terminal_over_console_socket() {
    require_root!();
    terminal("berth");
}

#[test]
fn runc_terminal_over_console_socket() {
    require_root!();
    terminal("runc");
}

/// The runtime killed (-9) in the middle of create: the state left says "creating" and
/// `delete --force` removes the cgroup, the processes and the state.
#[test]
fn berth_recovers_from_a_kill_during_create() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, "berth");
    let mut b = Bundle::new(&env, "crash", "true");
    // a createRuntime hook runs while the runtime waits for it: kill the runtime there
    b.spec["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $PPID"]}]});
    b.write();
    let o = cli.run(
        &env,
        &["create", "--bundle", &b.dir.display().to_string(), "crash"],
    );
    assert!(!o.status.success());
    let st = cli.state(&env, "crash");
    assert_eq!(st["status"], "creating", "{st}");
    assert!(
        b.cgroup_dir(&env, "memory").exists(),
        "the kill came before the cgroup existed"
    );
    cli.ok(&env, &["delete", "--force", "crash"]);
    assert!(!cli.root.join("crash").exists(), "state left");
    for c in ["memory", "pids", "freezer"] {
        assert!(!b.cgroup_dir(&env, c).exists(), "cgroup left in {c}");
    }
}

/// The process's security and identity, through the command line, asserted inside and
/// outside: the same spec for berth and runc.
fn security(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    let mut b = Bundle::new(
        &env,
        "sec",
        "cat /proc/self/status > /out/status; id > /out/id; hostname > /out/hostname; \
         ulimit -n > /out/nofile; umask > /out/umask; pwd > /out/pwd; \
         mkdir /tmp/newdir 2> /out/mkdir; cat /etc/secret > /out/secret 2>&1; \
         (echo x > /proc/sys/kernel/domainname) 2> /out/ro; touch /out/done; sleep 10",
    );
    std::fs::write(b.dir.join("rootfs/etc/secret"), "top secret\n").expect("secret");
    b.spec["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 23});
    b.spec["process"]["cwd"] = json!("/tmp");
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100}]);
    b.spec["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"], "ambient": ["CAP_KILL"]});
    b.spec["linux"]["maskedPaths"]
        .as_array_mut()
        .expect("masked")
        .push(json!("/etc/secret"));
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]
    });
    b.write();
    cli.ok(
        &env,
        &["create", "--bundle", &b.dir.display().to_string(), "sec"],
    );
    let pid = cli.state(&env, "sec")["pid"].as_i64().expect("pid") as i32;
    cli.ok(&env, &["start", "sec"]);
    b.wait_out("done");
    let kill = oci_common::cap_mask(&["CAP_KILL"]);
    assert_eq!(
        status_field(pid, "CapBnd"),
        oci_common::cap_mask(&["CAP_CHOWN", "CAP_KILL"])
    );
    assert_eq!(status_field(pid, "CapEff"), kill);
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    let status = b.read_out("status");
    assert!(status.contains(&format!("CapAmb:\t{kill}")), "{status}");
    // nothing of the runtime's signal state leaks into the container (Rust ignores
    // SIGPIPE). Peer difference seen with runc 1.1.5: its container inherits the
    // real-time signals 32 and/or 33 ignored (seen varying from run to run), so only berth is held
    // to an empty SigIgn.
    if which == "berth" {
        assert!(status.contains("SigIgn:\t0000000000000000"), "{status}");
    }
    assert!(status.contains("SigBlk:\t0000000000000000"), "{status}");
    oci_common::assert_inside_as_specified(&b);
    cli.ok(&env, &["delete", "--force", "sec"]);
}

#[test]
fn berth_security_as_specified() {
    require_root!();
    security("berth");
}

#[test]
fn runc_security_as_specified() {
    require_root!();
    security("runc");
}

/// A bind of `dir` onto itself, made shared: the bundle sits on a shared mount, as a
/// node's /var/lib does on the node's shared /. Made in the test's private mount
/// namespace; the test's temp dir takes it down.
fn make_shared_mount(dir: &Path) {
    use nix::mount::{MsFlags, mount};
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .expect("shared");
}

/// The optional fields (`shared:N`, `master:N`) of the line for `/` in a mountinfo.
fn root_propagation(mountinfo: &str) -> String {
    mountinfo
        .lines()
        .filter_map(|l| l.split_once(" - ").map(|(pre, _)| pre))
        .filter(|pre| pre.split(' ').nth(4) == Some("/"))
        .map(|pre| pre.split(' ').skip(6).collect::<Vec<_>>().join(" "))
        .next_back()
        .unwrap_or_default()
}

/// linux.rootfsPropagation shared and rshared with the bundle on a shared mount (and
/// rslave and private, the usual ones): the container runs, and its / has the
/// propagation asked for.
fn rootfs_propagation(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    for prop in ["shared", "rshared", "rslave", "private"] {
        let id = format!("prop-{prop}");
        let mut b = Bundle::new(&env, &id, "cat /proc/self/mountinfo > /out/mi");
        make_shared_mount(&b.dir);
        b.spec["linux"]["rootfsPropagation"] = json!(prop);
        b.write();
        let o = cli.run(
            &env,
            &["run", "--bundle", &b.dir.display().to_string(), &id],
        );
        assert!(
            o.status.success(),
            "{which} {prop}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let root = root_propagation(&b.read_out("mi"));
        eprintln!("{which} {prop}: / has {root:?}");
        let shared = root.contains("shared:");
        if which == "runc" && prop.ends_with("shared") {
            // Peer difference, seen with Debian's runc 1.1.5: it runs the container but
            // leaves its / private (it applies rootfsPropagation to the mount namespace's
            // / before pivot_root, not to the new root after it); held to running it.
            continue;
        }
        assert_eq!(
            shared,
            prop.ends_with("shared"),
            "{which} {prop}: / is {root:?}"
        );
    }
}

#[test]
fn berth_rootfs_propagation_shared() {
    require_root!();
    rootfs_propagation("berth");
}

#[test]
fn runc_rootfs_propagation_shared() {
    require_root!();
    rootfs_propagation("runc");
}

/// A spec without a mount namespace (and one without any namespace) runs in the
/// caller's mount namespace, its root entered with chroot; masked paths, which would be
/// masked for the caller too, are refused.
fn no_mount_namespace(which: &str) {
    let env = TestEnv::new().expect("env");
    let cli = Cli::new(&env, which);
    let ours = std::fs::read_link("/proc/thread-self/ns/mnt").expect("our mount ns");
    for none_at_all in [false, true] {
        let id = if none_at_all { "nons" } else { "nomntns" };
        let mut b = Bundle::new(
            &env,
            id,
            "readlink /proc/self/ns/mnt > /out/ns; ls / > /out/ls; echo ok > /out/done",
        );
        let linux = b.spec["linux"].as_object_mut().expect("linux");
        linux.remove("maskedPaths");
        linux.remove("readonlyPaths");
        if none_at_all {
            linux.remove("namespaces");
            // a hostname needs a uts namespace
            b.spec.as_object_mut().expect("spec").remove("hostname");
        } else {
            let ns = b.spec["linux"]["namespaces"].as_array_mut().expect("ns");
            ns.retain(|n| n["type"] != "mount");
        }
        b.write();
        let o = cli.run(&env, &["run", "--bundle", &b.dir.display().to_string(), id]);
        assert!(
            o.status.success(),
            "{which} {id}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(b.read_out("done").trim(), "ok");
        assert_eq!(
            b.read_out("ns").trim(),
            ours.to_string_lossy(),
            "{which} {id}: the caller's mount namespace"
        );
        let ls = b.read_out("ls");
        assert!(
            ls.lines().any(|l| l == "out") && ls.lines().any(|l| l == "bin"),
            "{which} {id}: / is the rootfs: {ls}"
        );
        // the container's mounts were made here, under its rootfs
        assert!(mounted_below(&b.dir.join("rootfs")), "{which} {id}");
    }
    // masked paths would mask the caller's own
    let mut b = Bundle::new(&env, "nomntmask", "true");
    let ns = b.spec["linux"]["namespaces"].as_array_mut().expect("ns");
    ns.retain(|n| n["type"] != "mount");
    b.write();
    let o = cli.run(
        &env,
        &["run", "--bundle", &b.dir.display().to_string(), "nomntmask"],
    );
    assert!(
        !o.status.success(),
        "{which}: masked paths without a mount ns"
    );
    if which == "berth" {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("linux.maskedPaths"), "{err}");
    }
}

#[test]
fn berth_runs_without_a_mount_namespace() {
    require_root!();
    no_mount_namespace("berth");
}

#[test]
fn runc_runs_without_a_mount_namespace() {
    require_root!();
    no_mount_namespace("runc");
}
