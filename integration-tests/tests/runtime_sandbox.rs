//! berth's pod sandboxes for real: a holder process per pod holding its namespaces, the
//! pod network from berth's CNI plugins, state that survives a daemon restart, and the
//! roll-back of a sandbox a crash left half-made.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

mod cni_common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use berth::net::cni::{Invoker, InvokerConfig};
use berth::runtime::error::Code;
use berth::runtime::sandbox::{LinuxHolders, SandboxConfig, Sandboxes};
use berth::runtime::spec::HostFacts;
use berth_integration_tests::util::{ID_ENV, workspace_bin};
use berth_integration_tests::{TestEnv, require_root};
use cni_common::berth_bin_dir;
use cri_proto::v1::{
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState,
    PortMapping,
};
use serde_json::json;

fn config(env: &TestEnv) -> SandboxConfig {
    let conf_dir = env.subdir("net.d").unwrap();
    let ipam = env.subdir("ipam").unwrap();
    let list = json!({
        "cniVersion": "1.0.0", "name": "pods",
        "plugins": [
            {"type": "berth-bridge", "bridge": "cbr0", "isGateway": true,
             "ipam": {"type": "berth-host-local", "dataDir": ipam,
                      "ranges": [[{"subnet": "10.244.77.0/24"}]]}},
            {"type": "berth-portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write(conf_dir.join("10-pods.conflist"), list.to_string()).unwrap();
    SandboxConfig {
        records: env.subdir("lib/sandboxes").unwrap(),
        state_dir: env.subdir("run").unwrap(),
        facts: HostFacts::default(),
    }
}

/// The sandboxes of a daemon started on `cfg` as `berth cri` starts them: holders of
/// this workspace's berth (marked with the test's id for the leak check), the test's
/// network through berth's plugins, host facts detected in the test's host namespace.
fn open(env: &TestEnv, cfg: &SandboxConfig) -> Sandboxes {
    let holders = LinuxHolders::new(
        &cfg.state_dir,
        workspace_bin("berth-holder"),
        vec![(ID_ENV.into(), env.id().into())],
    );
    let cni = Invoker::new(InvokerConfig {
        conf_dir: env.subdir("net.d").unwrap(),
        bin_dirs: vec![berth_bin_dir()],
        cache_dir: env.subdir("cni-cache").unwrap(),
        timeout: Duration::from_secs(20),
    });
    let cfg = cfg.clone();
    env.host
        .block_on(|| async move {
            let cfg = SandboxConfig {
                facts: HostFacts::detect(),
                ..cfg
            };
            Sandboxes::open(cfg, Arc::new(holders), Arc::new(cni)).await
        })
        .unwrap()
}

fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: format!("{name}-host"),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        annotations: HashMap::from([("note".to_string(), "kept as given".to_string())]),
        port_mappings: vec![PortMapping {
            protocol: 0,
            container_port: 80,
            host_port: 18080,
            host_ip: String::new(),
        }],
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

fn nsenter(args: &[&str]) -> String {
    let out = Command::new("nsenter").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "nsenter {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

#[test]
fn a_sandbox_runs_with_its_network_survives_a_restart_and_goes_away() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let cfg = config(&env);
    let sb = open(&env, &cfg);
    let id = env.host.block_on(|| sb.run(pod("web"), "")).unwrap();
    assert_eq!(id.len(), 64);

    let (st, info) = sb.status(&id[..12], true).unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(st.annotations["note"], "kept as given");
    assert_eq!(st.runtime_handler, "berth");
    let ip = st.network.unwrap().ip;
    assert!(ip.starts_with("10.244.77."), "pod ip {ip}");
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let netns = info["netNamespacePath"].as_str().unwrap().to_string();
    let pid = info["pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));

    // The kernel agrees: the pod's eth0 holds the IP, its UTS namespace the hostname.
    let addr = nsenter(&[
        &format!("--net={netns}"),
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(addr.contains(&format!("{ip}/24")), "{addr}");
    let uts = std::path::Path::new(&netns).with_file_name("uts");
    let host = nsenter(&[&format!("--uts={}", uts.display()), "hostname"]);
    assert_eq!(host.trim(), "web-host");

    // Same name again: refused, nothing new made.
    let dup = env.host.block_on(|| sb.run(pod("web"), "")).unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup}");
    assert_eq!(sb.list(None).len(), 1);

    // A restarted daemon finds the sandbox as it was.
    drop(sb);
    let sb = open(&env, &cfg);
    let by_label = sb.list(Some(PodSandboxFilter {
        label_selector: HashMap::from([("app".to_string(), "web".to_string())]),
        ..Default::default()
    }));
    assert_eq!(by_label.len(), 1);
    assert_eq!(by_label[0].id, id);
    assert_eq!(by_label[0].state, PodSandboxState::SandboxReady as i32);
    assert!(
        sb.list(Some(PodSandboxFilter {
            id: id[..8].to_string(),
            ..Default::default()
        }))
        .len()
            == 1
    );

    // Stop: network released, holder still holding the namespaces; twice is fine.
    env.host.block_on(|| sb.stop(&id)).unwrap();
    env.host.block_on(|| sb.stop(&id)).unwrap();
    let (st, _) = sb.status(&id, false).unwrap();
    assert_eq!(st.state, PodSandboxState::SandboxNotready as i32);
    let links = nsenter(&[&format!("--net={netns}"), "ip", "-o", "link"]);
    assert!(!links.contains("eth0"), "eth0 left after stop: {links}");

    // Remove: holder gone, its files gone, record gone; removing again is not an error.
    env.host.block_on(|| sb.remove(&id)).unwrap();
    assert!(
        berth_integration_tests::util::wait_for(Duration::from_secs(5), || (!alive(pid))
            .then_some(()))
        .is_some()
    );
    assert!(!cfg.state_dir.join("pods").join(&id).exists());
    assert_eq!(std::fs::read_dir(&cfg.records).unwrap().count(), 0);
    env.host.block_on(|| sb.remove(&id)).unwrap();
    assert_eq!(sb.status(&id, false).unwrap_err().code(), Code::NotFound);
    // Stopping a removed sandbox succeeds: the CRI calls StopPodSandbox idempotent.
    env.host.block_on(|| sb.stop(&id)).unwrap();
    // The name is free again.
    let again = env.host.block_on(|| sb.run(pod("web"), "")).unwrap();
    env.host.block_on(|| sb.remove(&again)).unwrap();
}

#[test]
fn a_sandbox_left_half_made_by_a_crash_is_rolled_back_on_start() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let cfg = config(&env);
    let sb = open(&env, &cfg);
    let id = env.host.block_on(|| sb.run(pod("db"), "")).unwrap();
    let (_, info) = sb.status(&id, true).unwrap();
    let pid = serde_json::from_str::<serde_json::Value>(&info["info"]).unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;
    drop(sb);
    // What a crash between the holder's start and the end of CNI ADD leaves on disk.
    let rec_path = cfg.records.join(format!("{id}.json"));
    let mut rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
    rec["phase"] = json!("creating");
    std::fs::write(&rec_path, rec.to_string()).unwrap();

    let sb = open(&env, &cfg);
    assert!(sb.list(None).is_empty());
    assert!(!rec_path.exists());
    assert!(
        berth_integration_tests::util::wait_for(Duration::from_secs(5), || (!alive(pid))
            .then_some(()))
        .is_some()
    );
    assert!(!cfg.state_dir.join("pods").join(&id).exists());
    let leases: Vec<_> = std::fs::read_dir(env.dir().join("ipam/pods"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
        .collect();
    assert!(leases.is_empty(), "IP still allocated: {leases:?}");
}

#[test]
fn bad_sandbox_requests_are_refused_by_field_and_change_nothing() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let cfg = config(&env);
    let sb = open(&env, &cfg);
    let no_meta = PodSandboxConfig::default();
    let e = env.host.block_on(|| sb.run(no_meta, "")).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().contains("config.metadata"), "{e}");
    let e = env.host.block_on(|| sb.run(pod("x"), "kata")).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().contains("runtime_handler"), "{e}");
    let mut sysctl = pod("y");
    sysctl
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("kernel.panic".into(), "10".into());
    let e = env.host.block_on(|| sb.run(sysctl, "")).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().contains("linux.sysctls[kernel.panic]"), "{e}");
    assert_eq!(
        sb.status("", false).unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(sb.status("nope", false).unwrap_err().code(), Code::NotFound);
    assert!(sb.list(None).is_empty());
    assert_eq!(std::fs::read_dir(&cfg.records).unwrap().count(), 0);
    // A name freed by a refused request can be used.
    let id = env.host.block_on(|| sb.run(pod("x"), "")).unwrap();
    env.host.block_on(|| sb.remove(&id)).unwrap();
}
