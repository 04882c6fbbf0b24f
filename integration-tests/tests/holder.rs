//! The per-pod holder (`berth holder`) driven through its client library, as the CRI
//! service drives it: busybox containers in the pod's namespaces, their CRI logs, exits,
//! ExecSync, a client killed mid-life, shutdown, and bad requests.

mod oci_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth::runtime::holder::proto::CreateContainer;
use berth::runtime::holder::{
    Client, ContainerEvent, ContainerState, ErrorCode, EventKind, Events, HolderError, PodOptions,
    SpawnOptions, Zygote,
};
use berth_integration_tests::util::{ID_ENV, wait_for};
use berth_integration_tests::{TestEnv, require_root};
use oci_common::Bundle;
use serde_json::{Value, json};

/// The berth-holder binary of this build (`cargo build -p berth`, as scripts/test.sh
/// does).
fn holder_bin() -> PathBuf {
    let bin = berth_integration_tests::util::workspace_bin("berth-holder");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p berth` first",
        bin.display()
    );
    bin
}

/// A zygote of this build, its holders marked as this test's.
fn zygote(env: &TestEnv, log: &str) -> Zygote {
    Zygote::new(
        holder_bin(),
        vec![
            (ID_ENV.into(), env.id().into()),
            ("BERTH_LOG".into(), log.into()),
        ],
    )
}

/// A running holder; killed on drop if the test did not shut it down.
struct Holder {
    state: PathBuf,
    pod_id: String,
    pid: i32,
    /// What forked it, when the test owns it; it exits when dropped (the holder lives
    /// on).
    _zygote: Option<Zygote>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.dir().join("holder.log"))
        {
            eprintln!("holder.log:\n{log}");
        }
        // a holder that was told to shut down exits on its own
        wait_for(Duration::from_secs(2), || (!alive(self.pid)).then_some(()));
        if alive(self.pid) {
            eprintln!("test: killing holder {} left running", self.pid);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::SIGKILL,
            );
            wait_for(Duration::from_secs(5), || (!alive(self.pid)).then_some(()));
        }
    }
}

impl Holder {
    fn spawn(env: &TestEnv, pod_id: &str, pod: PodOptions) -> (Holder, Client) {
        let zygote = zygote(env, "debug");
        let (mut h, c) = Holder::spawn_by(&zygote, env, pod_id, pod);
        h._zygote = Some(zygote);
        (h, c)
    }

    /// A holder forked by `zygote`, which the caller keeps.
    fn spawn_by(zygote: &Zygote, env: &TestEnv, pod_id: &str, pod: PodOptions) -> (Holder, Client) {
        let state = env.subdir("state").expect("state");
        let mut c = Client::spawn(
            zygote,
            &SpawnOptions {
                state_dir: state.clone(),
                pod_id: pod_id.into(),
                pod,
            },
        )
        .expect("spawn holder");
        let pid = c.hello().expect("hello").pid;
        (
            Holder {
                state,
                pod_id: pod_id.into(),
                pid,
                _zygote: None,
            },
            c,
        )
    }

    fn client(&self) -> Client {
        Client::connect(&self.state, &self.pod_id).expect("connect")
    }

    fn events(&self) -> Watch {
        let (_, ev) = self.client().subscribe().expect("subscribe");
        ev.set_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        Watch::new(ev)
    }

    fn dir(&self) -> PathBuf {
        self.state.join("pods").join(&self.pod_id)
    }

    fn ns(&self, kind: &str) -> PathBuf {
        self.dir().join("ns").join(kind)
    }

    fn bundle(&self, env: &TestEnv, id: &str, script: &str) -> Bundle {
        pod_bundle(env, &self.dir(), &self.pod_id, id, script)
    }
}

/// A busybox container running `sh -c script` in the pod's net, ipc and uts namespaces
/// (by path), in the pod's pid namespace when it has one or else its own, with its cgroup
/// under the test's parent.
fn pod_bundle(env: &TestEnv, pod_dir: &Path, pod_id: &str, id: &str, script: &str) -> Bundle {
    let mut b = Bundle::new(env, id, script);
    b.spec["root"]["path"] = json!(b.dir.join("rootfs"));
    b.spec.as_object_mut().expect("spec").remove("hostname");
    let mut ns = vec![json!({"type": "mount"})];
    for (kind, oci) in [("net", "network"), ("ipc", "ipc"), ("uts", "uts")] {
        ns.push(json!({"type": oci, "path": pod_dir.join("ns").join(kind)}));
    }
    let pid = pod_dir.join("ns/pid");
    if pid.exists() {
        ns.push(json!({"type": "pid", "path": pid}));
    } else {
        ns.push(json!({"type": "pid"}));
    }
    b.spec["linux"]["namespaces"] = Value::Array(ns);
    b.spec["linux"]["cgroupsPath"] = json!(format!("/{}/{pod_id}-{id}", env.id()));
    b
}

fn req(b: &Bundle, log: Option<PathBuf>) -> CreateContainer {
    CreateContainer {
        id: b.id.clone(),
        spec: b.spec.clone().into(),
        log_path: log,
        stdin: false,
        tty: false,
        stdin_once: false,
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn ns_link(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .expect("ns link")
        .display()
        .to_string()
}

/// A subscribed connection and the events read from it so far.
struct Watch {
    ev: Events,
    seen: Vec<ContainerEvent>,
}

impl Watch {
    fn new(ev: Events) -> Watch {
        Watch { ev, seen: vec![] }
    }

    /// The event `kind` of container `id`, seen before or waited for.
    fn wait(&mut self, id: &str, kind: EventKind) -> ContainerEvent {
        loop {
            if let Some(e) = self.seen.iter().find(|e| e.id == id && e.kind == kind) {
                return e.clone();
            }
            let e = self.ev.next_event().unwrap_or_else(|e| {
                panic!("waiting for {kind:?} of {id}: {e}; seen {:?}", self.seen)
            });
            self.seen.push(e);
        }
    }
}

/// Parses Go's RFC3339Nano as CRI logs carry it; returns nanoseconds since the epoch.
fn parse_rfc3339_nano(s: &str) -> Option<i128> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let rest = rest.strip_suffix('Z')?;
    let (hms, frac) = rest.split_once('.').unwrap_or((rest, ""));
    if frac.len() > 9 || frac.ends_with('0') || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next()??);
    // days from civil (proleptic Gregorian)
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) as i128) * 1_000_000_000 + nanos)
}

/// (time, stream, tag, text) of each record of a CRI log file.
fn records(path: &Path) -> Vec<(i128, String, String, String)> {
    let text = std::fs::read_to_string(path).expect("log");
    assert!(text.ends_with('\n'), "log does not end in a newline");
    text.lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let ts = f.next().expect("ts");
            let t = parse_rfc3339_nano(ts).unwrap_or_else(|| panic!("bad timestamp {ts:?}"));
            let stream = f.next().expect("stream").to_string();
            let tag = f.next().expect("tag").to_string();
            assert!(stream == "stdout" || stream == "stderr", "{l}");
            assert!(tag == "P" || tag == "F", "{l}");
            (t, stream, tag, f.next().unwrap_or("").to_string())
        })
        .collect()
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i128
}

#[test]
fn logs_in_cri_format_and_long_lines_split() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (h, mut c) = Holder::spawn(&env, "logs", PodOptions::default());
    let mut ev = h.events();
    let t0 = now_ns();
    let b = h.bundle(
        &env,
        "logger",
        "echo hello; echo oops >&2; printf 'a\\r\\nb\\n'; echo; \
         head -c 40960 /dev/zero | tr '\\0' x; echo; \
         while [ ! -e /out/go ]; do usleep 10000; done; echo after-reopen; printf tail",
    );
    let log = env.dir().join("logs/logger/0.log");
    c.create_container(req(&b, Some(log.clone())))
        .expect("create");
    c.start_container("logger").expect("start");
    // rotate as kubelet does: rename, then ask for a reopen
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|s| s.matches(" F ").count() >= 5 && s.contains(&"x".repeat(100)))
            .then_some(())
    })
    .expect("first lines logged");
    // the 40 KiB line's last record must be there before the rename
    wait_for(Duration::from_secs(10), || {
        let r = records(&log);
        r.iter()
            .any(|(_, _, tag, t)| tag == "F" && t.len() == 8192)
            .then_some(())
    })
    .expect("long line logged");
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    c.reopen_log("logger").expect("reopen");
    std::fs::write(b.out.join("go"), "").expect("go");
    let stopped = ev.wait("logger", EventKind::Stopped);
    assert_eq!(stopped.container.exit.expect("exit").code, 0);
    let t1 = now_ns();

    let first = records(&rotated);
    for (t, ..) in &first {
        assert!(
            *t >= t0 - 1_000_000_000 && *t <= t1,
            "timestamp {t} outside the test"
        );
    }
    let times: Vec<i128> = first.iter().map(|r| r.0).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "timestamps go back");
    let out: Vec<(&str, &str)> = first
        .iter()
        .filter(|r| r.1 == "stdout")
        .map(|r| (r.2.as_str(), r.3.as_str()))
        .collect();
    let err: Vec<(&str, &str)> = first
        .iter()
        .filter(|r| r.1 == "stderr")
        .map(|r| (r.2.as_str(), r.3.as_str()))
        .collect();
    assert_eq!(err, vec![("F", "oops")]);
    let x = |n| "x".repeat(n);
    let (x16, x8) = (x(16384), x(8192));
    assert_eq!(
        out,
        vec![
            ("F", "hello"),
            ("F", "a"),
            ("F", "b"),
            ("F", ""),
            ("P", x16.as_str()),
            ("P", x16.as_str()),
            ("F", x8.as_str()),
        ]
    );
    // after the reopen: the new file; the text left without a newline at EOF is partial
    let second: Vec<(String, String, String)> = records(&log)
        .into_iter()
        .map(|(_, s, t, x)| (s, t, x))
        .collect();
    assert_eq!(
        second,
        vec![
            ("stdout".into(), "F".into(), "after-reopen".into()),
            ("stdout".into(), "P".into(), "tail".into())
        ]
    );
    c.remove_container("logger").expect("remove");
    c.shutdown().expect("shutdown");
}

#[test]
fn containers_share_the_pods_namespaces() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let pod = PodOptions {
        hostname: Some("holder-pod".into()),
        ..Default::default()
    };
    let (h, mut c) = Holder::spawn(&env, "share", pod);
    let a = h.bundle(
        &env,
        "a",
        "hostname > /out/h; touch /dev/mqueue/berth-q && touch /out/ipc; sleep 1000",
    );
    let b = h.bundle(
        &env,
        "b",
        "ls /dev/mqueue > /out/ipcs; hostname > /out/h; touch /out/done; sleep 1000",
    );
    let ia = c.create_container(req(&a, None)).expect("create a");
    c.start_container("a").expect("start a");
    a.wait_out("ipc");
    let ib = c.create_container(req(&b, None)).expect("create b");
    c.start_container("b").expect("start b");
    b.wait_out("done");
    for kind in ["net", "ipc", "uts"] {
        let holder = ns_link(h.pid, kind);
        assert_eq!(ns_link(ia.pid, kind), holder, "{kind}");
        assert_eq!(ns_link(ib.pid, kind), holder, "{kind}");
        let own = std::fs::read_link(format!("/proc/self/ns/{kind}")).expect("own ns");
        assert_ne!(holder, own.display().to_string(), "{kind} is the test's");
        // the bind-mounted file is the same namespace (same inode)
        let ino =
            |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("ns"));
        assert_eq!(
            ino(&h.ns(kind)),
            ino(Path::new(&format!("/proc/{}/ns/{kind}", h.pid)))
        );
    }
    // each container has its own pid namespace in a pod that does not share it
    assert_ne!(ns_link(ia.pid, "pid"), ns_link(ib.pid, "pid"));
    assert_eq!(a.read_out("h").trim(), "holder-pod");
    assert_eq!(b.read_out("h").trim(), "holder-pod");
    // b sees the message queue a made in the shared ipc namespace
    let key_line = b.read_out("ipcs");
    assert!(key_line.contains("berth-q"), "{key_line}");
    let info = c.hello().expect("hello");
    let kinds: Vec<&str> = info.namespaces.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, vec!["net", "ipc", "uts"]);
    c.shutdown().expect("shutdown");

    // a pod that shares its pid namespace: both containers in it, seeing each other
    let pod = PodOptions {
        share_pid: true,
        ..Default::default()
    };
    let (h2, mut c2) = Holder::spawn(&env, "sharepid", pod);
    let p = h2.bundle(&env, "p1", "sleep 1000");
    let q = h2.bundle(
        &env,
        "p2",
        "ps > /out/ps.tmp; mv /out/ps.tmp /out/ps; sleep 1000",
    );
    let ip = c2.create_container(req(&p, None)).expect("create p1");
    c2.start_container("p1").expect("start p1");
    let iq = c2.create_container(req(&q, None)).expect("create p2");
    c2.start_container("p2").expect("start p2");
    let ps = q.wait_out("ps");
    let pidns = ns_link(ip.pid, "pid");
    assert_eq!(ns_link(iq.pid, "pid"), pidns);
    assert_ne!(pidns, ns_link(h2.pid, "pid"));
    assert!(ps.contains("sleep 1000"), "p2 does not see p1: {ps}");
    c2.shutdown().expect("shutdown");
}

#[test]
fn exits_recorded_with_code_signal_and_oom() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (h, mut c) = Holder::spawn(&env, "exits", PodOptions::default());
    let mut ev = h.events();
    let code = h.bundle(&env, "code", "exit 3");
    let sig = h.bundle(&env, "sig", "sleep 1000");
    // pid 1 of its pid namespace: a signal without a handler is ignored, so TERM is trapped
    let term = h.bundle(
        &env,
        "term",
        "trap 'exit 5' TERM; touch /out/trapped; while true; do usleep 10000; done",
    );
    let mut oom = h.bundle(
        &env,
        "oom",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    );
    oom.spec["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
    for b in [&code, &sig, &term, &oom] {
        c.create_container(req(b, None)).expect("create");
        let e = ev.wait(&b.id, EventKind::Created);
        assert_eq!(e.container.state, ContainerState::Created);
    }
    let before = now_ns();
    for id in ["code", "sig", "term", "oom"] {
        c.start_container(id).expect("start");
        ev.wait(id, EventKind::Started);
    }
    let e = ev.wait("code", EventKind::Stopped);
    let x = e.container.exit.expect("exit");
    assert_eq!((x.code, x.signal, x.oom_killed), (3, None, false));
    c.signal("sig", 9, false).expect("signal");
    let e = ev.wait("sig", EventKind::Stopped);
    let x = e.container.exit.expect("exit");
    assert_eq!((x.code, x.signal, x.oom_killed), (137, Some(9), false));
    term.wait_out("trapped");
    c.signal("term", 15, false).expect("signal");
    let e = ev.wait("term", EventKind::Stopped);
    let x = e.container.exit.expect("exit");
    assert_eq!((x.code, x.signal, x.oom_killed), (5, None, false));
    let e = ev.wait("oom", EventKind::Stopped);
    let x = e.container.exit.expect("exit");
    assert!(x.oom_killed, "{x:?}");
    // the records on disk say the same, with times in order
    for id in ["code", "sig", "term", "oom"] {
        let live = c.container_state(id).expect("state");
        let path = h.dir().join("containers").join(format!("{id}.json"));
        let disk: berth::runtime::holder::ContainerInfo =
            serde_json::from_slice(&std::fs::read(&path).expect("record")).expect("json");
        assert_eq!(disk, live);
        assert_eq!(live.state, ContainerState::Exited);
        assert!(i128::from(live.created_at) <= before);
        assert!(i128::from(live.started_at) >= before);
        assert!(live.finished_at >= live.started_at);
        assert!(i128::from(live.finished_at) <= now_ns());
    }
    c.shutdown().expect("shutdown");
}

#[test]
fn holder_outlives_its_client() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let state = env.subdir("state").expect("state");
    let b = pod_bundle(
        &env,
        &state.join("pods/orphan"),
        "orphan",
        "lives",
        "while [ ! -e /out/go ]; do usleep 10000; done; exit 7",
    );
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    // The "daemon": a child process that spawns the holder, creates and starts the
    // container, then is SIGKILLed.
    // SAFETY: the child only uses the client library and then sleeps; it never returns
    // into the test harness.
    let child = unsafe { libc::fork() };
    if child == 0 {
        drop(r);
        let res = (|| -> Result<(), HolderError> {
            let zygote = zygote(&env, "info");
            let mut c = Client::spawn(
                &zygote,
                &SpawnOptions {
                    state_dir: state.clone(),
                    pod_id: "orphan".into(),
                    pod: PodOptions::default(),
                },
            )?;
            c.create_container(CreateContainer {
                id: "lives".into(),
                spec: b.spec.clone().into(),
                log_path: None,
                stdin: false,
                tty: false,
                stdin_once: false,
            })?;
            c.start_container("lives")?;
            let pid = c.hello()?.pid;
            nix::unistd::write(&w, format!("{pid}\n").as_bytes())
                .map_err(|e| HolderError::Closed { pod: e.to_string() })?;
            // keep the connection open while being killed
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })();
        let _ = nix::unistd::write(&w, format!("error {res:?}\n").as_bytes());
        // SAFETY: leaves the forked child without running the harness's destructors.
        unsafe { libc::_exit(1) };
    }
    drop(w);
    let mut line = String::new();
    // one line: the holder's pid, or why the child failed
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::from(r)),
        &mut line,
    )
    .ok();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), nix::sys::signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(child), None);
    let holder_pid: i32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("client child: {line}"));
    let guard = Holder {
        state: state.clone(),
        pod_id: "orphan".into(),
        pid: holder_pid,
        _zygote: None,
    };
    assert!(alive(holder_pid), "the holder died with its client");
    // a new client finds the running container, then its exit as an event
    let mut c = guard.client();
    let list = c.list_containers().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, ContainerState::Running);
    assert!(alive(list[0].pid));
    let (snapshot, ev) = guard.client().subscribe().expect("subscribe");
    assert_eq!(snapshot, list);
    ev.set_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut ev = Watch::new(ev);
    std::fs::write(b.out.join("go"), "").expect("go");
    let e = ev.wait("lives", EventKind::Stopped);
    assert_eq!(e.container.exit.expect("exit").code, 7);
    c.remove_container("lives").expect("remove");
    let e = ev.wait("lives", EventKind::Deleted);
    assert_eq!(e.id, "lives");
    c.shutdown().expect("shutdown");
    drop(guard);
}

#[test]
fn exec_sync_output_exit_code_and_timeout() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (h, mut c) = Holder::spawn(&env, "exec", PodOptions::default());
    let sh = |s: &str| vec!["/bin/sh".to_string(), "-c".into(), s.into()];
    let mut b = h.bundle(&env, "target", "sleep 1000");
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.spec["linux"]["seccomp"] =
        serde_json::to_value(berth::oci::seccomp_default::runtime_default(&[])).expect("seccomp");
    let info = c.create_container(req(&b, None)).expect("create");
    c.start_container("target").expect("start");
    // The init is compared once it runs the container's program: until its execve it still
    // holds the capabilities the runtime drops at that exec for a non-root user.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !["sh", "sleep"].contains(
        &std::fs::read_to_string(format!("/proc/{}/comm", info.pid))
            .unwrap_or_default()
            .trim(),
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "the init never ran its program"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // the exec'd process is confined as the container's own: user, capabilities, seccomp,
    // no_new_privs, cgroup, namespaces
    let r = c
        .exec_sync(
            "target",
            &sh("cat /proc/self/status; cat /proc/self/cgroup >&2; \
                 for n in net mnt pid uts; do readlink /proc/self/ns/$n; done"),
            Duration::from_secs(10),
        )
        .expect("exec status");
    let status = String::from_utf8_lossy(&r.stdout).to_string();
    for field in ["Uid", "Gid", "CapEff", "CapBnd", "Seccomp", "NoNewPrivs"] {
        let line = |s: &str| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .map(str::to_string)
        };
        let init = std::fs::read_to_string(format!("/proc/{}/status", info.pid)).expect("status");
        assert_eq!(line(&status), line(&init), "{field}");
    }
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let init_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", info.pid)).expect("cgroup");
    assert_eq!(String::from_utf8_lossy(&r.stderr), init_cg);
    let links: Vec<String> = status.lines().rev().take(4).map(str::to_string).collect();
    for (kind, link) in ["uts", "pid", "mnt", "net"].iter().zip(&links) {
        assert_eq!(*link, ns_link(info.pid, kind), "{kind}");
    }
    let r = c
        .exec_sync(
            "target",
            &sh("echo out; echo err >&2; hostname; exit 4"),
            Duration::from_secs(10),
        )
        .expect("exec");
    assert_eq!(r.exit_code, 4);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        format!(
            "out\n{}\n",
            nix::unistd::gethostname()
                .expect("hostname")
                .to_string_lossy()
        )
    );
    assert_eq!(String::from_utf8_lossy(&r.stderr), "err\n");
    // a big output arrives whole
    let r = c
        .exec_sync("target", &sh("head -c 300000 /dev/zero"), Duration::ZERO)
        .expect("exec big");
    assert_eq!((r.exit_code, r.stdout.len()), (0, 300_000));
    // a slow exec is killed at its timeout while the holder serves other calls
    let mut slow = h.client();
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let r = slow.exec_sync(
            "target",
            &["sleep".into(), "30".into()],
            Duration::from_millis(500),
        );
        (r, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(c.list_containers().expect("list").len(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "list waited for the exec"
    );
    let (r, took) = t.join().expect("thread");
    let e = r.expect_err("timeout");
    assert_eq!(e.code(), Some(ErrorCode::DeadlineExceeded), "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // the container runs on; its sleep 30 is gone
    let st = c.container_state("target").expect("state");
    assert_eq!(st.state, ContainerState::Running);
    assert_eq!(st.pid, info.pid);
    let ps = c
        .exec_sync("target", &["ps".into()], Duration::from_secs(5))
        .expect("ps");
    assert!(!String::from_utf8_lossy(&ps.stdout).contains("sleep 30"));
    // a missing program is an error, not an exit code from nowhere
    let e = c.exec_sync("target", &["/no/such".into()], Duration::from_secs(5));
    match e {
        Ok(r) => assert_ne!(r.exit_code, 0),
        Err(e) => assert!(e.to_string().contains("/no/such"), "{e}"),
    }
    c.shutdown().expect("shutdown");
}

#[test]
fn shutdown_leaves_nothing_behind() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (mut h, mut c) = Holder::spawn(
        &env,
        "bye",
        PodOptions {
            hostname: Some("bye".into()),
            share_pid: true,
            ..Default::default()
        },
    );
    let mut pids = vec![];
    let mut bundles = vec![];
    for (i, id) in ["one", "two"].iter().enumerate() {
        let b = h.bundle(&env, id, "sleep 1000");
        let mut r = req(&b, Some(env.dir().join(format!("logs/{id}.log"))));
        r.stdin = i == 0;
        pids.push(c.create_container(r).expect("create").pid);
        c.start_container(id).expect("start");
        bundles.push(b);
    }
    let holder_dir = h.dir();
    assert!(holder_dir.join("ns/pid").exists());
    c.shutdown().expect("shutdown");
    wait_for(Duration::from_secs(10), || (!alive(h.pid)).then_some(())).expect("holder exits");
    for pid in pids {
        assert!(!alive(pid), "container {pid} left running");
    }
    assert!(!holder_dir.exists(), "{} left", holder_dir.display());
    let mounts = std::fs::read_to_string("/proc/thread-self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&h.state.display().to_string()),
        "mounts left under the state dir"
    );
    for b in &bundles {
        for ctl in ["memory", "pids", "cpu"] {
            let dir = env
                .cgroups()
                .dir(ctl)
                .expect("ctl")
                .join(format!("bye-{}", b.id));
            assert!(!dir.exists(), "{} left", dir.display());
        }
    }
    // nothing of the pod in the process table either (the pod's pid 1 included), once
    // the zygote that forked the holder is gone with its daemon
    drop(h._zygote.take());
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| e.windows(env.id().len()).any(|w| w == env.id().as_bytes()))
        })
        .map(|p| p.to_string())
        .collect();
    assert!(left.is_empty(), "processes left: {left:?}");
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (h, mut c) = Holder::spawn(&env, "bad", PodOptions::default());
    let b = h.bundle(&env, "good", "sleep 1000");
    let info = c.create_container(req(&b, None)).expect("create");
    c.start_container("good").expect("start");
    let code = |r: Result<_, HolderError>| -> (ErrorCode, String) {
        let e = r.map(|_: ()| ()).expect_err("must fail");
        (e.code().unwrap_or(ErrorCode::Internal), e.to_string())
    };
    let (k, m) = code(c.start_container("nope").map(drop));
    assert_eq!(k, ErrorCode::NotFound);
    assert!(m.contains("nope"), "{m}");
    let (k, m) = code(c.create_container(req(&b, None)).map(drop));
    assert_eq!(k, ErrorCode::AlreadyExists);
    assert!(m.contains("good"), "{m}");
    let (k, m) = code(c.start_container("good").map(drop));
    assert_eq!(k, ErrorCode::FailedPrecondition, "{m}");
    let mut bad = h.bundle(&env, "badspec", "true");
    bad.spec["ociVersion"] = json!("2.0.0");
    let (k, m) = code(c.create_container(req(&bad, None)).map(drop));
    assert_eq!(k, ErrorCode::InvalidArgument);
    assert!(m.contains("ociVersion"), "{m}");
    bad.spec["ociVersion"] = json!("1.0.2");
    bad.spec["process"]["args"] = json!("not a list");
    let (k, m) = code(c.create_container(req(&bad, None)).map(drop));
    assert_eq!(k, ErrorCode::InvalidArgument, "{m}");
    let mut r = req(&h.bundle(&env, "relog", "true"), Some("rel/log".into()));
    r.id = "relog".into();
    let (k, m) = code(c.create_container(r).map(drop));
    assert_eq!(k, ErrorCode::InvalidArgument);
    assert!(m.contains("log_path"), "{m}");
    let (k, m) = code(c.signal("good", 999, false));
    assert_eq!(k, ErrorCode::InvalidArgument);
    assert!(m.contains("999"), "{m}");
    let (k, _) = code(
        c.exec_sync("nope", &["true".into()], Duration::ZERO)
            .map(drop),
    );
    assert_eq!(k, ErrorCode::NotFound);
    let (k, m) = code(
        c.create_container(CreateContainer {
            id: "../x".into(),
            ..req(&b, None)
        })
        .map(drop),
    );
    assert_eq!(k, ErrorCode::InvalidArgument, "{m}");
    // garbage on the socket: an error answer, and the holder serves on
    {
        use std::io::{Read, Write};
        let mut s =
            std::os::unix::net::UnixStream::connect(h.dir().join("holder.sock")).expect("connect");
        s.write_all(&7u32.to_be_bytes()).expect("w");
        s.write_all(b"garbage").expect("w");
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("answer");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).expect("answer");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["err"]["error"]["code"], "invalid_argument", "{v}");
        let mut wrong_version = Vec::new();
        berth::runtime::holder::proto::encode(
            &json!({"v": 99, "id": 5, "req": {"op": "hello"}}),
            &mut wrong_version,
        )
        .expect("enc");
        s.write_all(&wrong_version).expect("w");
        s.read_exact(&mut len).expect("answer");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut body).expect("answer");
        let v: Value = serde_json::from_slice(&body).expect("json");
        assert!(
            v["err"]["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("version 99"),
            "{v}"
        );
    }
    // nothing changed
    let list = c.list_containers().expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, "good");
    assert_eq!(list[0].state, ContainerState::Running);
    assert_eq!(list[0].pid, info.pid);
    assert!(alive(info.pid));
    assert!(!h.dir().join("oci/badspec").exists());
    c.shutdown().expect("shutdown");
}

/// The words of `pid`'s command line.
fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect()
}

/// Sums of `fields` over `pid`'s mappings of `binary` with permissions `perms`.
fn mapped(pid: i32, binary: &Path, perms: &str, fields: &[&str]) -> Vec<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut sums = vec![0; fields.len()];
    let mut in_it = false;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let p = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            in_it = p == perms && Path::new(path) == binary;
        } else if in_it {
            for (i, f) in fields.iter().enumerate() {
                if first == format!("{f}:") {
                    sums[i] += words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                }
            }
        }
    }
    sums
}

#[test]
fn holders_forked_by_one_zygote_share_its_relocated_pages_and_name_their_pod() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let zygote = zygote(&env, "info");
    let (h1, mut c1) = Holder::spawn_by(&zygote, &env, "twin-a", PodOptions::default());
    let (h2, mut c2) = Holder::spawn_by(&zygote, &env, "twin-b", PodOptions::default());
    let z = zygote.pid().expect("the zygote runs") as i32;
    assert_eq!(cmdline(z)[1..], ["zygote"], "the zygote's command line");
    let bin = holder_bin().canonicalize().expect("binary");
    for h in [&h1, &h2] {
        // ps and the daemon's recovery find a holder by its command line
        let words = cmdline(h.pid);
        assert_eq!(words[1], "--state-dir", "{words:?}");
        assert_eq!(words[3], "--pod-id", "{words:?}");
        assert_eq!(words[4], h.pod_id, "{words:?}");
        // without glibc's cache of freed blocks, which would pin heap pages
        let environ = std::fs::read(format!("/proc/{}/environ", h.pid)).expect("environ");
        assert!(
            environ
                .split(|b| *b == 0)
                .any(|v| v.starts_with(b"GLIBC_TUNABLES=glibc.malloc.tcache_count=0")),
            "holder {}: tcache tunable not set",
            h.pid
        );
        // detached from the zygote, as an exec'd holder detaches from its spawner
        let ppid = std::fs::read_to_string(format!("/proc/{}/stat", h.pid)).expect("stat");
        let ppid: i32 = ppid
            .rsplit_once(')')
            .expect("stat")
            .1
            .split_whitespace()
            .nth(1)
            .expect("ppid")
            .parse()
            .expect("ppid");
        assert_ne!(ppid, z, "holder {} is still the zygote's child", h.pid);
        // The pages the loader relocated (read-only after start, anonymous since
        // written) are the zygote's, shared with both holders rather than copied.
        let [anon, shared_dirty, private_dirty] = mapped(
            h.pid,
            &bin,
            "r--p",
            &["Anonymous", "Shared_Dirty", "Private_Dirty"],
        )[..] else {
            unreachable!()
        };
        assert!(anon >= 64, "holder {}: {anon} KiB of relocated data", h.pid);
        assert_eq!(private_dirty, 0, "holder {}: relocated data copied", h.pid);
        assert_eq!(
            shared_dirty, anon,
            "holder {}: relocated data not shared",
            h.pid
        );
    }
    // A zygote that died is started again for the next holder; running holders are
    // not its concern.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(z), nix::sys::signal::SIGKILL).expect("kill");
    wait_for(Duration::from_secs(5), || (!alive(z)).then_some(()));
    let (h3, mut c3) = Holder::spawn_by(&zygote, &env, "twin-c", PodOptions::default());
    let z2 = zygote.pid().expect("the zygote runs again") as i32;
    assert_ne!(z2, z);
    assert!(
        alive(h1.pid) && alive(h2.pid),
        "holders died with their zygote"
    );
    c1.hello().expect("holder a answers");
    c2.hello().expect("holder b answers");
    c3.hello().expect("holder c answers");
    // Dropping the daemon's handle ends the zygote (EOF on its socket); holders live on.
    drop(zygote);
    assert!(!alive(z2), "the zygote outlived its daemon's handle");
    for (h, c) in [(&h1, c1), (&h2, c2), (&h3, c3)] {
        assert!(alive(h.pid), "holder {} died with its zygote", h.pid);
        c.shutdown().expect("shutdown");
    }
}

/// `berth-holder` links only what a holder runs: none of the daemon's crates (async
/// runtime, gRPC, HTTP, TLS, protobuf) and none of the daemon's own code, read from the
/// binary's symbol table (docs/holder.md, "What the binary holds"). The holder's loop is
/// there, so the symbols were read.
#[test]
fn the_holder_binary_holds_none_of_the_daemons_crates() {
    let bin = holder_bin();
    let out = std::process::Command::new("nm")
        .args(["--defined-only", "--demangle"])
        .arg(&bin)
        .output()
        .unwrap_or_else(|e| panic!("run nm (binutils): {e}"));
    assert!(out.status.success(), "nm {}: {}", bin.display(), out.status);
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(
        symbols
            .lines()
            .any(|l| l.ends_with(" berth::holder::server::Server::run")),
        "the holder's loop is not in {}",
        bin.display()
    );
    for daemon_only in [
        "tokio::",
        "tonic::",
        "reqwest::",
        "rustls::",
        "prost::",
        "hyper::",
        "h2::",
        "berth::runtime::",
        "berth::cri::",
        "berth::image::",
        "berth::net::",
    ] {
        let found: Vec<&str> = symbols
            .lines()
            .filter(|l| l.contains(daemon_only))
            .take(5)
            .collect();
        assert!(
            found.is_empty(),
            "{} holds {daemon_only} code: {found:#?}",
            bin.display()
        );
    }
}
