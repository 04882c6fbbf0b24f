//! berth's OCI runtime used in-process (as berth's holder uses it), asserting from inside
//! the busybox container and from outside through /proc and the cgroup files.

mod oci_common;

use berth::oci::{CreateOptions, Exit, PlanOptions, Runtime};
use berth_integration_tests::{TestEnv, require_root};
use oci_common::{Bundle, cap_mask, mounted_below, status_field};
use serde_json::json;

fn runtime(env: &TestEnv) -> Runtime {
    Runtime::new(env.subdir("state").expect("state dir"))
}

fn opts(b: &Bundle) -> CreateOptions {
    b.write();
    CreateOptions {
        bundle: b.dir.clone(),
        ..Default::default()
    }
}

fn spec_of(b: &Bundle) -> oci_spec::runtime::Spec {
    serde_json::from_value(b.spec.clone()).expect("spec")
}

#[test]
fn process_security_and_identity_as_specified() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let mut b = Bundle::new(
        &env,
        "sec",
        "cat /proc/self/status > /out/status; id > /out/id; hostname > /out/hostname; \
         ulimit -n > /out/nofile; umask > /out/umask; pwd > /out/pwd; echo \"$FOO\" > /out/env; \
         mkdir /tmp/newdir 2> /out/mkdir; cat /etc/secret > /out/secret 2>&1; \
         (echo x > /proc/sys/kernel/domainname) 2> /out/ro; touch /out/done; sleep 10",
    );
    std::fs::write(b.dir.join("rootfs/etc/secret"), "top secret\n").expect("secret");
    b.spec["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 23});
    b.spec["process"]["cwd"] = json!("/tmp");
    b.spec["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100}]);
    b.spec["process"]["capabilities"]["bounding"] = json!(["CAP_CHOWN", "CAP_KILL"]);
    b.spec["process"]["capabilities"]["effective"] = json!(["CAP_KILL"]);
    b.spec["process"]["capabilities"]["permitted"] = json!(["CAP_KILL"]);
    // a non-root process keeps after exec only its ambient capabilities
    b.spec["process"]["capabilities"]["inheritable"] = json!(["CAP_KILL"]);
    b.spec["process"]["capabilities"]["ambient"] = json!(["CAP_KILL"]);
    b.spec["linux"]["maskedPaths"]
        .as_array_mut()
        .expect("masked")
        .push(json!("/etc/secret"));
    // RuntimeDefault, plus mkdir answering EXDEV (18) to show the configured errno.
    let mut sc = serde_json::to_value(berth::oci::seccomp_default::runtime_default(&[
        "CAP_KILL".into()
    ]))
    .expect("profile");
    sc["syscalls"].as_array_mut().expect("syscalls").insert(
        0,
        json!({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}),
    );
    b.spec["linux"]["seccomp"] = sc;
    let st = rt.create("sec", &opts(&b)).expect("create");
    assert_eq!(
        rt.state("sec").expect("state").status(),
        berth::oci::Status::Created
    );
    rt.start("sec").expect("start");
    b.wait_out("done");
    // outside: /proc of the container's process
    let pid = st.pid;
    assert_eq!(
        status_field(pid, "CapBnd"),
        cap_mask(&["CAP_CHOWN", "CAP_KILL"])
    );
    assert_eq!(status_field(pid, "CapEff"), cap_mask(&["CAP_KILL"]));
    assert_eq!(status_field(pid, "Seccomp"), "2");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");
    assert!(status_field(pid, "Uid").starts_with("1000"));
    // inside
    let status = b.read_out("status");
    assert!(
        status.contains(&format!("CapEff:\t{}", cap_mask(&["CAP_KILL"]))),
        "{status}"
    );
    assert!(
        status.contains("Seccomp:\t2") && status.contains("NoNewPrivs:\t1"),
        "{status}"
    );
    let id = b.read_out("id");
    assert!(id.contains("gid=1000"), "{id}");
    assert_eq!(b.read_out("env").trim(), "bar baz");
    oci_common::assert_inside_as_specified(&b);
    rt.kill("sec", nix::sys::signal::Signal::SIGKILL, false)
        .expect("kill");
    assert_eq!(berth::oci::wait(pid).expect("wait"), Exit::Signal(9));
    assert_eq!(
        rt.state("sec").expect("state").status(),
        berth::oci::Status::Stopped
    );
    rt.delete("sec", false).expect("delete");
    assert!(!b.cgroup_dir(&env, "memory").exists());
}

#[test]
fn cgroup_limits_written_and_enforced() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let mut hog = Bundle::new(
        &env,
        "hog",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived > /out/r",
    );
    hog.spec["linux"]["resources"]["memory"] = json!({"limit": 33554432, "swap": 33554432});
    let st = rt.create("hog", &opts(&hog)).expect("create hog");
    let mem = hog.cgroup_dir(&env, "memory");
    assert_eq!(
        std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .expect("limit")
            .trim(),
        "33554432"
    );
    rt.start("hog").expect("start");
    let exit = berth::oci::wait(st.pid).expect("wait");
    let oom = std::fs::read_to_string(mem.join("memory.oom_control")).expect("oom_control");
    assert!(
        oom.contains("oom_kill 1") || !hog.read_out("r").contains("survived"),
        "{oom} {exit:?}"
    );
    assert!(!hog.read_out("r").contains("survived"));
    rt.delete("hog", false).expect("delete");

    let mut bomb = Bundle::new(
        &env,
        "bomb",
        "i=0; while [ $i -lt 40 ]; do sleep 2 & i=$((i+1)); done 2> /out/err; wait; touch /out/done",
    );
    bomb.spec["linux"]["resources"]["pids"] = json!({"limit": 10});
    let st = rt.create("bomb", &opts(&bomb)).expect("create bomb");
    let pids = bomb.cgroup_dir(&env, "pids");
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .expect("max")
            .trim(),
        "10"
    );
    rt.start("bomb").expect("start");
    let current = || -> u32 {
        std::fs::read_to_string(pids.join("pids.current"))
            .expect("cur")
            .trim()
            .parse()
            .expect("n")
    };
    let mut peak = 0;
    let _ = berth_integration_tests::util::wait_for(std::time::Duration::from_secs(3), || {
        peak = peak.max(current());
        None::<()>
    });
    // a shell that cannot fork gives up: the container ends
    berth::oci::wait(st.pid).expect("wait");
    assert!(peak <= 10, "pids.current peaked at {peak}");
    assert!(
        bomb.read_out("err").contains("can't fork"),
        "{}",
        bomb.read_out("err")
    );
    // the kernel counts the forks it refused at the limit
    let events = std::fs::read_to_string(pids.join("pids.events")).expect("events");
    let refused: u64 = events
        .trim()
        .strip_prefix("max ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "pids.events: {events}");
    rt.delete("bomb", true).expect("delete");
}

#[test]
fn user_namespace_root_inside_unprivileged_outside() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let mut b = Bundle::new(
        &env,
        "userns",
        "id -u > /out/uid; touch /out/done; sleep 10",
    );
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "user"}));
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // sysfs of a netns another userns owns cannot be mounted; the test does not need it
    b.spec["mounts"]
        .as_array_mut()
        .expect("mounts")
        .retain(|m| m["type"] != "sysfs" && m["type"] != "cgroup");
    let st = rt.create("userns", &opts(&b)).expect("create");
    rt.start("userns").expect("start");
    b.wait_out("done");
    assert_eq!(b.read_out("uid").trim(), "0");
    assert!(
        status_field(st.pid, "Uid").starts_with("100000"),
        "{}",
        status_field(st.pid, "Uid")
    );
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", st.pid)).expect("uid_map");
    assert!(map.split_whitespace().eq(["0", "100000", "65536"]), "{map}");
    rt.delete("userns", true).expect("delete");
    let _ = berth::oci::wait(st.pid);
}

/// The container's process is in its cgroup in every hierarchy, the unified one included
/// (it is born there), and a cgroup namespace is rooted at that cgroup; with and without a
/// user namespace (the runtime then moves it in itself).
#[test]
fn in_its_cgroup_everywhere_and_its_cgroup_namespace_rooted_there() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    for userns in [false, true] {
        let id = if userns { "cgns-user" } else { "cgns" };
        let mut b = Bundle::new(
            &env,
            id,
            "cat /proc/self/cgroup > /out/cg; touch /out/done; sleep 10",
        );
        let ns = b.spec["linux"]["namespaces"].as_array_mut().expect("ns");
        ns.push(json!({"type": "cgroup"}));
        if userns {
            ns.push(json!({"type": "user"}));
            b.spec["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            b.spec["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            b.spec["mounts"]
                .as_array_mut()
                .expect("mounts")
                .retain(|m| m["type"] != "sysfs" && m["type"] != "cgroup");
        }
        let st = rt.create(id, &opts(&b)).expect("create");
        rt.start(id).expect("start");
        b.wait_out("done");
        let outside = std::fs::read_to_string(format!("/proc/{}/cgroup", st.pid)).expect("cgroup");
        let want = format!("/{}/{id}", env.id());
        let paths = |text: &str| -> Vec<(String, String)> {
            text.lines()
                .filter_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, c, p) = (f.next()?, f.next()?, f.next()?);
                    Some((c.to_string(), p.to_string()))
                })
                .collect()
        };
        let hierarchies = paths(&outside);
        assert!(
            hierarchies.iter().any(|(c, _)| c.is_empty()),
            "no unified line: {outside}"
        );
        for (c, p) in &hierarchies {
            assert_eq!(p, &want, "{id}: hierarchy {c:?} in {outside}");
        }
        let inside = b.read_out("cg");
        assert_eq!(paths(&inside).len(), hierarchies.len(), "{inside}");
        for (c, p) in paths(&inside) {
            assert_eq!(p, "/", "{id}: hierarchy {c:?} seen from inside: {inside}");
        }
        rt.delete(id, true).expect("delete");
        let _ = berth::oci::wait(st.pid);
    }
}

#[test]
fn joins_an_existing_netns_by_path() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let pod = env.pod_netns("pod").expect("netns");
    let mut b = Bundle::new(
        &env,
        "join",
        "readlink /proc/self/ns/net > /out/ns; touch /out/done",
    );
    for ns in b.spec["linux"]["namespaces"].as_array_mut().expect("ns") {
        if ns["type"] == "network" {
            ns["path"] = json!(pod.path());
        }
    }
    let st = rt.create("join", &opts(&b)).expect("create");
    rt.start("join").expect("start");
    assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(0));
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(pod.path()).expect("netns"));
    assert_eq!(b.read_out("ns").trim(), format!("net:[{ino}]"));
    rt.delete("join", false).expect("delete");
}

/// Zombie children of `pid` (a zombie has left its cgroup, so /proc is the witness).
fn zombies(pid: i32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|p| {
            berth::oci::state::proc_stat(p.parse().unwrap_or(0)).is_some_and(|s| s.0 == 'Z')
        })
        .count()
}

#[test]
fn pid1_reaps_zombies_only_if_it_is_an_init() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    // pid 1 is `sleep`: the orphan it inherits stays a zombie (berth adds no init).
    let a = Bundle::new(
        &env,
        "noinit",
        "(sleep 0.1 &); touch /out/done; exec sleep 5",
    );
    let st = rt.create("noinit", &opts(&a)).expect("create");
    rt.start("noinit").expect("start");
    a.wait_out("done");
    let z = berth_integration_tests::util::wait_for(std::time::Duration::from_secs(5), || {
        (zombies(st.pid) > 0).then_some(())
    });
    assert!(z.is_some(), "no zombie under a non-init pid 1");
    rt.delete("noinit", true).expect("delete");
    let _ = berth::oci::wait(st.pid);
    // pid 1 is a shell that waits: it reaps.
    let b = Bundle::new(
        &env,
        "init",
        "(sleep 0.1 &); sleep 0.5; wait; touch /out/done; sleep 5",
    );
    let st = rt.create("init", &opts(&b)).expect("create");
    rt.start("init").expect("start");
    b.wait_out("done");
    // `touch` made the file and may not be reaped yet: a reaping init clears it soon.
    let reaped = berth_integration_tests::util::wait_for(std::time::Duration::from_secs(5), || {
        (zombies(st.pid) == 0).then_some(())
    });
    assert!(reaped.is_some(), "a zombie stayed under an init that waits");
    rt.delete("init", true).expect("delete");
    let _ = berth::oci::wait(st.pid);
}

#[test]
fn exit_code_reported() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let b = Bundle::new(&env, "exit", "ls /proc/self/fd > /out/fds; exit 7");
    // an fd of the caller that is not close-on-exec must not reach the container
    let leaky = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open");
    let st = rt.create("exit", &opts(&b)).expect("create");
    rt.start("exit").expect("start");
    assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(7));
    assert_eq!(
        rt.state("exit").expect("state").oci_json()["status"],
        "stopped"
    );
    drop(leaky);
    // stdio, and the directory ls reads
    let fds = b.read_out("fds");
    assert_eq!(
        fds.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{fds}"
    );
    rt.delete("exit", false).expect("delete");
}

#[test]
fn hooks_run_in_order_with_state_on_stdin() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let mut b = Bundle::new(&env, "hooks", "true");
    // host hooks write to the out dir by its host path; startContainer runs inside the
    // container, where the same dir is /out
    let hook = |dir: &std::path::Path, name: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c",
            format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order", dir = dir.display())]})
    };
    let host = b.out.clone();
    b.spec["hooks"] = json!({
        "createRuntime": [hook(&host, "createRuntime")],
        "createContainer": [hook(&host, "createContainer")],
        "startContainer": [hook(std::path::Path::new("/out"), "startContainer")],
        "poststart": [hook(&host, "poststart"), {"path": "/bin/false"}],
        "poststop": [hook(&host, "poststop"), {"path": "/bin/false"}],
    });
    let st = rt.create("hooks", &opts(&b)).expect("create");
    assert_eq!(b.read_out("order"), "createRuntime\ncreateContainer\n");
    rt.start("hooks")
        .expect("a failing poststart hook only warns");
    assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(0));
    rt.delete("hooks", false)
        .expect("a failing poststop hook only warns");
    let order = b.read_out("order");
    let lines: Vec<&str> = order.lines().collect();
    assert_eq!(lines.len(), 5, "{order}");
    assert_eq!(&lines[..2], ["createRuntime", "createContainer"]);
    // startContainer (in the container) and poststart (in the runtime) run concurrently
    let mut mid = lines[2..4].to_vec();
    mid.sort_unstable();
    assert_eq!(mid, ["poststart", "startContainer"], "{order}");
    assert_eq!(lines[4], "poststop");
    let state = |name: &str| -> serde_json::Value {
        serde_json::from_str(&b.read_out(&format!("{name}.json"))).expect(name)
    };
    assert_eq!(state("createRuntime")["id"], "hooks");
    assert_eq!(state("createRuntime")["pid"], st.pid);
    assert_eq!(state("createContainer")["pid"], st.pid);
    assert_eq!(state("startContainer")["status"], "running");
    assert_eq!(state("poststop")["status"], "stopped");
}

#[test]
fn missing_cap_sys_resource_reported_or_clamped() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).expect("rlimit");
    let has = caps::has_cap(
        None,
        caps::CapSet::Bounding,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .expect("caps");
    assert!(
        !has,
        "this test is about hosts without CAP_SYS_RESOURCE (TESTING.md)"
    );
    let mut b = Bundle::new(
        &env,
        "rl",
        "ulimit -Hn > /out/hard; cat /proc/self/oom_score_adj > /out/adj",
    );
    b.spec["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "hard": hard + 1000, "soft": 1024}]);
    let e = rt
        .create("rl", &opts(&b))
        .expect_err("explicit rlimit above hard");
    assert!(
        e.to_string().contains("process.rlimits[0].hard")
            && e.to_string().contains("CAP_SYS_RESOURCE"),
        "{e}"
    );
    b.spec["process"]["rlimits"] = json!([]);
    b.spec["process"]["oomScoreAdj"] = json!(-500);
    let e = rt
        .create("rl", &opts(&b))
        .expect_err("explicit negative oom_score_adj");
    assert!(e.to_string().contains("process.oomScoreAdj"), "{e}");
    // a caller's default (clamp allowed): created, clamped
    b.spec["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "hard": hard + 1000, "soft": 1024}]);
    let mut o = opts(&b);
    o.plan = PlanOptions {
        clamp_unprivileged: true,
        ..Default::default()
    };
    let st = rt.create("rl", &o).expect("clamped create");
    rt.start("rl").expect("start");
    assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(0));
    assert_eq!(b.read_out("hard").trim(), hard.to_string());
    let own = std::fs::read_to_string("/proc/self/oom_score_adj").expect("adj");
    assert_eq!(b.read_out("adj").trim(), own.trim());
    rt.delete("rl", false).expect("delete");
}

#[test]
fn bad_specs_fail_naming_the_field_and_leave_nothing() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let base = Bundle::new(&env, "bad", "true");
    std::os::unix::fs::symlink(
        "../../../../../../../../tmp",
        base.dir.join("rootfs/escape"),
    )
    .expect("symlink");
    type Edit = fn(&mut serde_json::Value);
    let cases: Vec<(&str, Edit)> = vec![
        ("root.path", |s| s["root"]["path"] = json!("no-such-rootfs")),
        ("linux.namespaces[1].path", |s| {
            s["linux"]["namespaces"][1]["path"] = json!("/proc/self/ns/nope")
        }),
        ("process.capabilities.bounding[1]", |s| {
            s["process"]["capabilities"]["bounding"][1] = json!("CAP_NOPE")
        }),
        ("linux.seccomp.defaultAction", |s| {
            s["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_BOGUS"})
        }),
        // controllers and files this host lacks, asked for
        ("linux.resources.blockIO.weight", |s| {
            s["linux"]["resources"]["blockIO"] = json!({"weight": 500})
        }),
        ("linux.resources.network.classID", |s| {
            s["linux"]["resources"]["network"] = json!({"classID": 1048577})
        }),
        // a real limit (0, kubelet's default for every size, asks for nothing here)
        ("linux.resources.hugepageLimits[2MB]", |s| {
            s["linux"]["resources"]["hugepageLimits"] =
                json!([{"pageSize": "2MB", "limit": 2097152}])
        }),
        ("mounts[8].destination", |s| {
            s["mounts"]
                .as_array_mut()
                .expect("mounts")
                .push(json!({"destination": "/escape/x", "type": "tmpfs", "source": "tmpfs"}))
        }),
    ];
    for (field, edit) in cases {
        let mut b = Bundle::new(&env, "bad", "true");
        edit(&mut b.spec);
        let e = rt.create("bad", &opts(&b)).expect_err(field);
        assert!(e.to_string().contains(field), "{field}: {e}");
        assert!(!rt.root.dir("bad").exists(), "{field}: state dir left");
        for c in ["memory", "pids", "cpu"] {
            assert!(
                !b.cgroup_dir(&env, c).exists(),
                "{field}: cgroup left in {c}"
            );
        }
        assert!(!mounted_below(&b.dir), "{field}: mount left");
    }
    // spec of every version from 1.0.0 to 1.3.0 runs
    for v in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        let mut b = Bundle::new(&env, "ver", "true");
        b.spec["ociVersion"] = json!(v);
        let st = rt
            .create("ver", &opts(&b))
            .unwrap_or_else(|e| panic!("{v}: {e}"));
        rt.start("ver").expect("start");
        berth::oci::wait(st.pid).expect("wait");
        rt.delete("ver", false).expect("delete");
    }
    let _ = spec_of(&base);
}

#[test]
fn sysctl_domainname_time_namespace_and_readonly_root() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rt = runtime(&env);
    let mut b = Bundle::new(
        &env,
        "misc",
        "cat /proc/sys/net/ipv4/ip_forward > /out/fwd; cat /proc/sys/kernel/domainname > /out/dom; \
         cut -d' ' -f1 /proc/uptime > /out/uptime; (touch /newfile) 2> /out/rofs; \
         uname -m > /out/arch; ionice -p $$ > /out/io; true",
    );
    b.spec["domainname"] = json!("berth.test");
    b.spec["root"]["readonly"] = json!(true);
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.spec["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.spec["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 5});
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("ns")
        .push(json!({"type": "time"}));
    b.spec["linux"]["timeOffsets"] =
        json!({"boottime": {"secs": 86400 * 365}, "monotonic": {"secs": 86400 * 365}});
    let st = rt.create("misc", &opts(&b)).expect("create");
    rt.start("misc").expect("start");
    assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(0));
    assert_eq!(b.read_out("fwd").trim(), "1");
    // the host's own value is untouched: the sysctl was the container's netns
    assert_eq!(b.read_out("dom").trim(), "berth.test");
    let up: f64 = b.read_out("uptime").trim().parse().expect("uptime");
    assert!(
        up > 86400.0 * 365.0,
        "uptime {up}: the time namespace offset is missing"
    );
    assert!(
        b.read_out("rofs").contains("Read-only"),
        "{}",
        b.read_out("rofs")
    );
    assert_eq!(
        b.read_out("arch").trim(),
        "i686",
        "linux.personality LINUX32"
    );
    assert!(
        b.read_out("io").contains("best-effort: prio 5"),
        "{}",
        b.read_out("io")
    );
    rt.delete("misc", false).expect("delete");
    // a sysctl of a namespace the container does not have would change the host
    let mut bad = Bundle::new(&env, "badsysctl", "true");
    bad.spec["linux"]["sysctl"] = json!({"kernel.panic": "1"});
    let e = rt
        .create("badsysctl", &opts(&bad))
        .expect_err("host sysctl");
    assert!(e.to_string().contains("linux.sysctl[kernel.panic]"), "{e}");
}

/// A pure cgroup v2 layout on this host's cgroup2 mount: device rules become a BPF
/// program on the container's cgroup, which the kernel enforces on every open.
#[test]
fn v2_device_filter_enforced() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let unified = env
        .cgroups()
        .dir("unified")
        .expect("a cgroup2 mount")
        .to_path_buf();
    let mount = unified.parent().expect("the cgroup2 mount");
    let rt = Runtime {
        root: berth::oci::state::Root::new(env.subdir("state").expect("state")),
        layout: berth::cgroups::Layout::v2(mount),
    };
    let mut b = Bundle::new(
        &env,
        "devbpf",
        "head -c 1 /dev/zero > /out/zero; dd if=/dev/kmsg of=/dev/null count=1 2> /out/kmsg; true",
    );
    b.spec["mounts"].as_array_mut().expect("mounts").push(
        json!({"destination": "/dev/kmsg", "type": "bind", "source": "/dev/kmsg", "options": ["bind"]}),
    );
    let st = rt.create("devbpf", &opts(&b)).expect("create");
    assert!(unified.join("devbpf").exists());
    rt.start("devbpf").expect("start");
    assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(0));
    assert_eq!(b.read_out("zero").len(), 1, "a default device was denied");
    assert!(
        b.read_out("kmsg").contains("Operation not permitted"),
        "{}",
        b.read_out("kmsg")
    );
    rt.delete("devbpf", false).expect("delete");
    assert!(!unified.join("devbpf").exists());
}

/// A container whose spec names no cgroupsPath goes in `berth/<id>`; the `berth` cgroup
/// goes with the last such container, in every hierarchy, and not while another is in it.
/// The hierarchies' roots are the test's own cgroup parent here (a layout is plain paths),
/// so the real kernel decides what an rmdir of a cgroup still holding another does.
#[test]
fn default_cgroup_parent_goes_with_its_last_container() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let layout = berth::cgroups::Layout {
        hierarchies: env
            .cgroups()
            .dirs()
            .map(|(h, dir)| berth::cgroups::Hierarchy {
                mount: dir.clone(),
                v2: h.v2,
                controllers: h.controllers.clone(),
            })
            .collect(),
    }
    .with_v2_controllers();
    let rt = Runtime {
        root: berth::oci::state::Root::new(env.subdir("state").expect("state")),
        layout,
    };
    let parents = || -> Vec<std::path::PathBuf> {
        env.cgroups()
            .dirs()
            .map(|(_, d)| d.join(berth::cgroups::DEFAULT_PARENT))
            .filter(|d| d.exists())
            .collect()
    };
    let mut pids = vec![];
    for id in ["defcg-a", "defcg-b"] {
        let mut b = Bundle::new(&env, id, "sleep 60");
        b.spec["linux"]
            .as_object_mut()
            .expect("linux")
            .remove("cgroupsPath");
        let st = rt.create(id, &opts(&b)).expect("create");
        rt.start(id).expect("start");
        pids.push(st.pid);
    }
    let n = env.cgroups().dirs().count();
    assert_eq!(parents().len(), n, "berth/ in every hierarchy");
    for p in parents() {
        assert!(
            p.join("defcg-a").is_dir() && p.join("defcg-b").is_dir(),
            "{p:?}"
        );
    }
    rt.kill("defcg-a", nix::sys::signal::Signal::SIGKILL, false)
        .expect("kill");
    let _ = berth::oci::wait(pids[0]);
    rt.delete("defcg-a", false).expect("delete a");
    assert_eq!(parents().len(), n, "b still uses berth/");
    for p in parents() {
        assert!(!p.join("defcg-a").exists(), "{p:?}");
    }
    rt.delete("defcg-b", true).expect("delete b");
    let _ = berth::oci::wait(pids[1]);
    assert_eq!(
        parents(),
        Vec::<std::path::PathBuf>::new(),
        "berth/ left behind"
    );
}
