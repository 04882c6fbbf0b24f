//! Container statistics read from a real cgroup while a process in it burns CPU and
//! memory: the numbers the CRI stats RPCs report must move with what the kernel counts.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth::cgroups::{Cgroup, Layout};
use berth::runtime::stats::{CpuSampler, memory_usage, read_cgroup, read_net_dev};
use berth_integration_tests::util::wait_for;
use berth_integration_tests::{TestEnv, require_root};

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

#[test]
fn stats_move_when_a_process_burns_cpu_and_memory() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let layout = Layout::detect();
    let cg = Cgroup::at(&layout, format!("{}/burner", env.cgroups().name()).as_ref()).unwrap();
    cg.create().unwrap();

    let before = read_cgroup(&cg).unwrap();
    assert_eq!(before.pids, Some(0));
    let idle_mem = before.memory.clone().unwrap().usage;

    // The burner waits on stdin until it is in the cgroup, then touches 48 MiB and spins.
    let mut child = env
        .command("sh")
        .args([
            "-c",
            "read go; exec python3 -c 'b = b\"x\" * (48 << 20)\nwhile True: pass'",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    cg.add(child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();

    let sampler = CpuSampler::default();
    let t0 = now_ns();
    let first = sampler.sample(
        "burner",
        t0,
        read_cgroup(&cg).unwrap().cpu_usage_ns.unwrap(),
    );
    // Usage also counts the page cache of python itself, so wait on the resident set:
    // the 48 MiB buffer is resident only once python has finished filling it.
    let grown = wait_for(Duration::from_secs(20), || {
        let s = read_cgroup(&cg).unwrap();
        let m = s.memory.clone()?;
        (m.usage >= idle_mem + (48 << 20) && m.rss >= 48 << 20).then_some(s)
    })
    .expect("the cgroup's resident memory never grew by 48 MiB");
    assert_eq!(grown.pids, Some(1));
    let mem = memory_usage(now_ns(), grown.memory.as_ref().unwrap());
    assert!(mem.working_set_bytes.unwrap().value >= 48 << 20, "{mem:?}");
    assert!(mem.rss_bytes.unwrap().value >= 48 << 20, "{mem:?}");

    // Half a second of spinning shows as at least a fifth of a core even on a busy
    // two-core machine.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = sampler.sample(
        "burner",
        now_ns(),
        read_cgroup(&cg).unwrap().cpu_usage_ns.unwrap(),
    );
    assert!(
        second.usage_core_nano_seconds.unwrap().value
            > first.usage_core_nano_seconds.unwrap().value,
        "cpu usage did not grow"
    );
    assert!(
        second.usage_nano_cores.unwrap().value > 200_000_000,
        "{second:?}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    cg.remove(true).unwrap();
}

#[test]
fn network_counters_come_from_the_namespace_of_the_given_process() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let pod = env.pod_netns("stats").unwrap();
    // A process parked in the pod namespace; its /proc/<pid>/net/dev shows that namespace.
    let mut child = pod.command("sleep").arg("30").spawn().unwrap();
    let ifaces = read_net_dev("/proc".as_ref(), child.id() as i32).unwrap();
    let names: Vec<_> = ifaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["lo"], "a fresh namespace has only loopback");
    child.kill().unwrap();
    child.wait().unwrap();
}
