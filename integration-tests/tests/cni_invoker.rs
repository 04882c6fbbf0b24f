//! berth's CNI invoker (src/net/cni) running berth's plugins for real: ADD through a
//! conflist, DEL and GC from the result cache after a restart, timeouts, plugin errors.

mod cni_common;

use std::path::Path;
use std::time::{Duration, Instant};

use berth::net::cni::{Attachment, CniError, Invoker, InvokerConfig};
use berth_integration_tests::{TestEnv, require_root};
use cni_common::*;
use serde_json::json;

/// A conflist (bridge + host-local, portmap) in `<tmp>/net.d`, and an invoker for it.
fn setup(env: &TestEnv, subnet: &str, version: &str) -> (InvokerConfig, std::path::PathBuf) {
    let conf_dir = env.subdir("net.d").expect("net.d");
    let ipam_dir = env.subdir("ipam").expect("ipam");
    let list = json!({
        "cniVersion": version, "name": "pods",
        "plugins": [
            {"type": "berth-bridge", "bridge": "cbr0", "isDefaultGateway": true, "ipMasq": true,
             "hairpinMode": true,
             "ipam": {"type": "berth-host-local", "dataDir": ipam_dir, "ranges": [[{"subnet": subnet}]]}},
            {"type": "berth-portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(conf_dir.join("10-pods.conflist"), list.to_string()).expect("write conflist");
    let cfg = InvokerConfig {
        conf_dir,
        bin_dirs: vec![berth_bin_dir()],
        cache_dir: env.subdir("cache").expect("cache"),
        timeout: Duration::from_secs(10),
    };
    (cfg, ipam_dir.join("pods"))
}

fn allocations(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .parse::<std::net::IpAddr>()
                        .is_ok()
                })
                .count()
        })
        .unwrap_or(0)
}

fn attachment(id: &str, ns: &berth_integration_tests::NetNs) -> Attachment {
    let mut a = Attachment::new(id, Some(&ns.path()), "eth0");
    a.args = vec![("K8S_POD_NAME".into(), id.into())];
    a.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}]),
    );
    a
}

/// ADD through the conflist; then a new invoker (a restarted daemon) whose conflist is
/// gone still DELs everything from its cache, twice without error.
#[test]
fn invoker_add_then_del_after_restart() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (cfg, alloc_dir) = setup(&env, "10.244.10.0/24", "1.0.0");
    let pod = env.pod_netns("a").expect("ns");
    let att = attachment("inv-a", &pod);
    let first = Invoker::new(cfg.clone());
    let result = env.host.block_on(|| first.add(&att)).expect("ADD");
    let ip = result_ip(&result);
    assert!(addrs(&pod, "eth0").contains(&format!("{ip}/24")));
    assert!(
        ruleset(&env.host).contains("inv-a"),
        "no host port rule after ADD"
    );
    env.host.block_on(|| first.check(&att)).expect("CHECK");
    assert_eq!(first.cache().all().len(), 1);

    std::fs::remove_file(cfg.conf_dir.join("10-pods.conflist")).expect("rm conflist");
    let restarted = Invoker::new(cfg.clone());
    env.host
        .block_on(|| restarted.del(&att))
        .expect("DEL from the cache");
    assert!(!has_link(&pod, "eth0").expect("link query"));
    assert_eq!(allocations(&alloc_dir), 0);
    let rules = ruleset(&env.host);
    assert!(
        !rules.contains("inv-a") && !rules.contains(&format!("\"{ip}\"")),
        "{rules}"
    );
    assert!(restarted.cache().all().is_empty());
    // The second DEL has neither cache nor conflist: it must say so, not pretend.
    let again = env.host.block_on(|| restarted.del(&att));
    assert!(matches!(again, Err(CniError::NoConfig { .. })), "{again:?}");
}

/// GC removes what is not in the valid list: cached attachments and, through the
/// plugins' own GC, allocations nobody cached (an ADD lost in a crash).
#[test]
fn invoker_gc_removes_stale_attachments() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (cfg, alloc_dir) = setup(&env, "10.244.11.0/24", "1.1.0");
    let (a, b) = (
        env.pod_netns("a").expect("ns"),
        env.pod_netns("b").expect("ns"),
    );
    let inv = Invoker::new(cfg.clone());
    let (att_a, mut att_b) = (attachment("gc-a", &a), attachment("gc-b", &b));
    att_b.capability_args.clear();
    env.host.block_on(|| inv.add(&att_a)).expect("ADD a");
    env.host.block_on(|| inv.add(&att_b)).expect("ADD b");
    // An allocation that no cache entry knows: host-local ADD run directly.
    let c = pod_netns_orphan(&env, &cfg);
    assert_eq!(allocations(&alloc_dir), 3);
    let valid = [("gc-a".to_string(), "eth0".to_string())];
    env.host.block_on(|| inv.gc(&valid)).expect("GC");
    assert_eq!(allocations(&alloc_dir), 1, "GC left allocations");
    assert!(
        has_link(&a, "eth0").expect("link query") && !has_link(&b, "eth0").expect("link query")
    );
    assert_eq!(inv.cache().all().len(), 1);
    drop(c);
    env.host.block_on(|| inv.status()).expect("STATUS");
}

fn pod_netns_orphan(env: &TestEnv, cfg: &InvokerConfig) -> berth_integration_tests::NetNs {
    let ns = env.pod_netns("orphan").expect("ns");
    let list: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cfg.conf_dir.join("10-pods.conflist")).expect("read"),
    )
    .expect("json");
    let mut conf = list["plugins"][0].clone();
    conf["name"] = json!("pods");
    conf["cniVersion"] = json!("1.1.0");
    exec(
        env,
        Impl::Berth,
        "host-local",
        "ADD",
        &Att::new("orphan", &ns),
        &conf,
    )
    .expect_ok("orphan ADD");
    ns
}

/// A plugin that hangs is killed at the timeout and reported as such.
#[test]
fn invoker_kills_a_hanging_plugin() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let bin = env.subdir("bin").expect("bin");
    let hang = bin.join("hang");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 30\n").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let conf_dir = env.subdir("net.d").expect("net.d");
    std::fs::write(
        conf_dir.join("99-hang.conflist"),
        json!({"cniVersion": "1.0.0", "name": "hang", "plugins": [{"type": "hang"}]}).to_string(),
    )
    .expect("write");
    let inv = Invoker::new(InvokerConfig {
        conf_dir,
        bin_dirs: vec![bin],
        cache_dir: env.subdir("cache").expect("cache"),
        timeout: Duration::from_millis(500),
    });
    let pod = env.pod_netns("a").expect("ns");
    let started = Instant::now();
    let att = Attachment::new("hang-1", Some(&pod.path()), "eth0");
    let r = env.host.block_on(|| inv.add(&att));
    assert!(matches!(r, Err(CniError::Timeout { .. })), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A plugin's error JSON comes back with its code and message, naming the plugin.
#[test]
fn invoker_reports_plugin_errors() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let conf_dir = env.subdir("net.d").expect("net.d");
    std::fs::write(
        conf_dir.join("10-bad.conflist"),
        json!({"cniVersion": "1.0.0", "name": "bad", "plugins": [
            {"type": "berth-bridge", "mtu": 10, "ipam": {"type": "berth-host-local",
                "dataDir": env.subdir("ipam").expect("ipam"), "subnet": "10.244.12.0/24"}}]})
        .to_string(),
    )
    .expect("write");
    let inv = Invoker::new(InvokerConfig {
        conf_dir,
        bin_dirs: vec![berth_bin_dir()],
        cache_dir: env.subdir("cache").expect("cache"),
        timeout: Duration::from_secs(10),
    });
    let pod = env.pod_netns("a").expect("ns");
    let att = Attachment::new("bad-1", Some(&pod.path()), "eth0");
    let r = env.host.block_on(|| inv.add(&att));
    match r {
        Err(CniError::Plugin {
            plugin, code, msg, ..
        }) => {
            assert_eq!(plugin, "berth-bridge");
            assert_eq!(code, 7);
            assert!(msg.contains("mtu"), "{msg}");
        }
        other => panic!("expected a plugin error, got {other:?}"),
    }
    assert!(
        inv.cache().all().is_empty(),
        "a failed ADD left a cache entry"
    );
}

/// A plugin that cannot even be started (not executable, for ADD and for the DEL that
/// rolls it back) fails ADD with the cause, and leaves no cache file behind.
#[test]
fn invoker_failed_add_leaves_no_cache_file() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let bin = env.subdir("bin").expect("bin");
    std::fs::write(bin.join("noexec"), "#!/bin/sh\nexit 0\n").expect("write");
    let conf_dir = env.subdir("net.d").expect("net.d");
    std::fs::write(
        conf_dir.join("10-noexec.conflist"),
        json!({"cniVersion": "1.0.0", "name": "noexec", "plugins": [{"type": "noexec"}]})
            .to_string(),
    )
    .expect("write");
    let cache_dir = env.subdir("cache").expect("cache");
    let inv = Invoker::new(InvokerConfig {
        conf_dir,
        bin_dirs: vec![bin],
        cache_dir: cache_dir.clone(),
        timeout: Duration::from_secs(10),
    });
    let pod = env.pod_netns("a").expect("ns");
    let att = Attachment::new("noexec-1", Some(&pod.path()), "eth0");
    let e = env.host.block_on(|| inv.add(&att)).expect_err("ADD");
    assert!(matches!(e, CniError::Spawn { .. }), "{e:?}");
    assert!(e.to_string().contains("Permission denied"), "{e}");
    let left: Vec<_> = walk(&cache_dir);
    assert!(left.is_empty(), "a failed ADD left {left:?}");

    // An argument no plugin can be given is refused before anything is written.
    let mut bad = Attachment::new("nul-1", Some(&pod.path()), "eth0");
    bad.args = vec![("K8S_POD_NAME".into(), "we\0b".into())];
    let e = env.host.block_on(|| inv.add(&bad)).expect_err("ADD");
    assert!(matches!(e, CniError::BadAttachment(_)), "{e:?}");
    let left: Vec<_> = walk(&cache_dir);
    assert!(left.is_empty(), "a refused ADD left {left:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// `berth cni` drives the same invoker from the command line: add (with a host port),
/// check and del, with clear errors for bad arguments.
#[test]
fn berth_cni_cli_add_check_del() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let (cfg, alloc_dir) = setup(&env, "10.244.14.0/24", "1.0.0");
    let pod = env.pod_netns("a").expect("ns");
    let berth = |args: &[&str]| {
        let mut cmd = env.host.command(berth_bin().to_str().expect("path"));
        cmd.arg("cni")
            .arg("--conf-dir")
            .arg(&cfg.conf_dir)
            .arg("--bin-dir")
            .arg(&cfg.bin_dirs[0])
            .arg("--cache-dir")
            .arg(&cfg.cache_dir)
            .args(args);
        cmd.output().expect("run berth")
    };
    let netns = pod.path();
    let netns = netns.to_str().expect("path");
    let out = berth(&[
        "add", "--id", "cli-a", "--netns", netns, "--port", "8093:80",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("result JSON");
    let ip = result_ip(&result);
    assert!(addrs(&pod, "eth0").contains(&format!("{ip}/24")));
    assert!(ruleset(&env.host).contains("cli-a"), "no host port rule");
    let out = berth(&["check", "--id", "cli-a", "--netns", netns]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = berth(&["del", "--id", "cli-a", "--netns", netns]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!has_link(&pod, "eth0").expect("link query"));
    assert_eq!(allocations(&alloc_dir), 0);
    let out = berth(&["add", "--id", "cli-b", "--netns", netns, "--port", "80"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port \"80\""));
}
