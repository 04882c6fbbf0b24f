//! berth's in-process CRI runtime end to end, without gRPC: a pod sandbox (holder + CNI),
//! containers created from an imported busybox image with CRI configs, their logs in CRI
//! format, exec, stop with a grace period, exit codes and reasons, and clean removal.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

mod cni_common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth::image::ImageStore;
use berth::image::progress::Progress;
use berth::image::unpack::UnpackOptions;
use berth::net::cni::{Invoker, InvokerConfig};
use berth::runtime::container::{ContainerConfig, Containers};
use berth::runtime::error::Code;
use berth::runtime::sandbox::{LinuxHolders, SandboxConfig, Sandboxes};
use berth::runtime::spec::{HostFacts, RuntimeOptions};
use berth::sys::overlay::LinuxOverlay;
use berth_integration_tests::fixtures::{self, Image};
use berth_integration_tests::util::{ID_ENV, wait_for, workspace_bin};
use berth_integration_tests::{TestEnv, require_root};
use cni_common::berth_bin_dir;
use cri_proto::v1::{
    ContainerConfig as CriContainer, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStateValue, ImageSpec, LinuxContainerConfig, LinuxContainerResources,
    LinuxPodSandboxConfig, PodSandboxConfig, PodSandboxMetadata,
};
use serde_json::json;

struct Rt {
    sandboxes: Sandboxes,
    containers: Containers,
    logs: std::path::PathBuf,
    /// The test's own cgroup parent: containers never land in the machine's root cgroups.
    cgroup_parent: String,
}

fn runtime(env: &TestEnv) -> Rt {
    let conf_dir = env.subdir("net.d").unwrap();
    let ipam = env.subdir("ipam").unwrap();
    let list = json!({
        "cniVersion": "1.0.0", "name": "pods",
        "plugins": [{"type": "berth-bridge", "bridge": "cbr0", "isGateway": true,
                     "ipam": {"type": "berth-host-local", "dataDir": ipam,
                              "ranges": [[{"subnet": "10.244.78.0/24"}]]}}]
    });
    std::fs::write(conf_dir.join("10-pods.conflist"), list.to_string()).unwrap();
    let state_dir = env.subdir("run").unwrap();
    let holders = LinuxHolders::new(
        &state_dir,
        workspace_bin("berth-holder"),
        vec![(ID_ENV.into(), env.id().into())],
    );
    let cni = Invoker::new(InvokerConfig {
        conf_dir,
        bin_dirs: vec![berth_bin_dir()],
        cache_dir: env.subdir("cni-cache").unwrap(),
        timeout: Duration::from_secs(20),
    });
    let records = env.subdir("lib/sandboxes").unwrap();
    let store = ImageStore::open(
        &env.subdir("images").unwrap(),
        Arc::new(LinuxOverlay),
        UnpackOptions::default(),
    )
    .unwrap();
    let layout = fixtures::build(&Image::Busybox, &env.subdir("layout").unwrap()).unwrap();
    let progress = Progress::silent();
    env.host
        .block_on(|| {
            berth::image::import::import(
                &store,
                &layout.dir,
                Some("example.com/busybox"),
                &progress,
            )
        })
        .unwrap();
    let c_cfg = ContainerConfig {
        records: env.subdir("lib/containers").unwrap(),
        options: RuntimeOptions {
            restrict_oom_score_adj: true,
            ..Default::default()
        },
    };
    let (sandboxes, containers) = env.host.block_on(|| async {
        let sb_cfg = SandboxConfig {
            records,
            state_dir,
            facts: HostFacts::detect(),
        };
        let sandboxes = Sandboxes::open(sb_cfg, Arc::new(holders), Arc::new(cni))
            .await
            .unwrap();
        let containers = Containers::open(c_cfg, store, sandboxes.clone())
            .await
            .unwrap();
        (sandboxes, containers)
    });
    Rt {
        sandboxes,
        containers,
        logs: env.subdir("logs").unwrap(),
        cgroup_parent: format!("/{}", env.cgroups().name()),
    }
}

fn pod(rt: &Rt, name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: rt.logs.join(name).to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/pod-{name}", rt.cgroup_parent),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(name: &str, cmd: &[&str]) -> CriContainer {
    CriContainer {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "example.com/busybox:latest".into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("io.kubernetes.container.name".to_string(), name.to_string())]),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

fn state(rt: &Rt, env: &TestEnv, id: &str) -> (i32, i32, String) {
    let (st, _) = env
        .host
        .block_on(|| rt.containers.status(id, false))
        .unwrap();
    (st.state, st.exit_code, st.reason)
}

#[test]
fn containers_of_a_pod_run_log_exec_stop_and_go_away() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let rt = runtime(&env);
    let pod_cfg = pod(&rt, "web");
    let sid = env
        .host
        .block_on(|| rt.sandboxes.run(pod_cfg.clone(), ""))
        .unwrap();

    // A server and a client container share the pod's network namespace.
    let server = env
        .host
        .block_on(|| {
            rt.containers.create(
                &sid,
                container(
                    "server",
                    &["sh", "-c", "echo ready; exec nc -ll -p 7000 -e echo pong"],
                ),
                Some(pod_cfg.clone()),
            )
        })
        .unwrap();
    assert_eq!(
        state(&rt, &env, &server).0,
        ContainerState::ContainerCreated as i32
    );
    env.host.block_on(|| rt.containers.start(&server)).unwrap();
    assert_eq!(
        state(&rt, &env, &server).0,
        ContainerState::ContainerRunning as i32
    );

    // Its output reaches the CRI log file in the kubelet's format.
    let log = rt.logs.join("web/server/0.log");
    let line = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("ready"))
    })
    .expect("no log line");
    let parts: Vec<&str> = line.lines().next().unwrap().splitn(4, ' ').collect();
    assert_eq!(&parts[1..], &["stdout", "F", "ready"], "{line}");
    assert!(parts[0].ends_with('Z') && parts[0].contains('T'), "{line}");

    let client = env
        .host
        .block_on(|| {
            rt.containers.create(
                &sid,
                container(
                    "client",
                    &[
                        "sh",
                        "-c",
                        "sleep 0.3; nc 127.0.0.1 7000 </dev/null; exit 3",
                    ],
                ),
                Some(pod_cfg.clone()),
            )
        })
        .unwrap();
    env.host.block_on(|| rt.containers.start(&client)).unwrap();
    let exited = wait_for(Duration::from_secs(20), || {
        let s = state(&rt, &env, &client);
        (s.0 == ContainerState::ContainerExited as i32).then_some(s)
    })
    .expect("client never exited");
    assert_eq!((exited.1, exited.2.as_str()), (3, "Error"));
    let client_log = std::fs::read_to_string(rt.logs.join("web/client/0.log")).unwrap();
    assert!(client_log.contains(" stdout F pong"), "{client_log}");

    // ExecSync: output and exit code; a timeout is enforced.
    let r = env
        .host
        .block_on(|| {
            rt.containers.exec_sync(
                &server,
                vec!["sh".into(), "-c".into(), "hostname; exit 4".into()],
                5,
            )
        })
        .unwrap();
    assert_eq!(
        (String::from_utf8_lossy(&r.stdout).trim(), r.exit_code),
        ("web", 4)
    );
    let slow = env.host.block_on(|| {
        rt.containers
            .exec_sync(&server, vec!["sleep".into(), "30".into()], 1)
    });
    assert_eq!(slow.unwrap_err().code(), Code::DeadlineExceeded);

    // List with filters.
    let running = env.host.block_on(|| {
        rt.containers.list(Some(ContainerFilter {
            pod_sandbox_id: sid[..10].to_string(),
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        }))
    });
    assert_eq!(
        running.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![server.as_str()]
    );

    // Stop with a grace period: nc dies of SIGTERM.
    env.host
        .block_on(|| rt.containers.stop(&server, 10))
        .unwrap();
    let s = state(&rt, &env, &server);
    assert_eq!(
        (s.0, s.1),
        (ContainerState::ContainerExited as i32, 128 + 15)
    );
    env.host
        .block_on(|| rt.containers.stop(&server, 10))
        .unwrap();

    // A duplicate name is refused while the first exists.
    let dup = env.host.block_on(|| {
        rt.containers
            .create(&sid, container("server", &["true"]), Some(pod_cfg.clone()))
    });
    assert_eq!(dup.unwrap_err().code(), Code::AlreadyExists);

    for id in [&server, &client] {
        env.host.block_on(|| rt.containers.remove(id)).unwrap();
        env.host.block_on(|| rt.containers.remove(id)).unwrap();
        assert_eq!(
            env.host
                .block_on(|| rt.containers.status(id, false))
                .unwrap_err()
                .code(),
            Code::NotFound
        );
    }
    assert!(env.host.block_on(|| rt.containers.list(None)).is_empty());
    env.host.block_on(|| rt.sandboxes.remove(&sid)).unwrap();
    assert!(
        std::fs::read_dir(env.dir().join("images/rootfs"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
}

#[test]
fn an_oom_kill_and_bad_requests_are_reported() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let rt = runtime(&env);
    let mut pod_cfg = pod(&rt, "hog");
    pod_cfg.linux.as_mut().unwrap().cgroup_parent = format!("/{}/hogpod", env.cgroups().name());
    let sid = env
        .host
        .block_on(|| rt.sandboxes.run(pod_cfg.clone(), ""))
        .unwrap();

    let mut hog = container(
        "hog",
        &[
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo $x",
        ],
    );
    hog.linux.as_mut().unwrap().resources = Some(LinuxContainerResources {
        memory_limit_in_bytes: 32 << 20,
        ..Default::default()
    });
    let id = env
        .host
        .block_on(|| rt.containers.create(&sid, hog, Some(pod_cfg.clone())))
        .unwrap();
    env.host.block_on(|| rt.containers.start(&id)).unwrap();
    let s = wait_for(Duration::from_secs(30), || {
        let s = state(&rt, &env, &id);
        (s.0 == ContainerState::ContainerExited as i32).then_some(s)
    })
    .expect("hog never exited");
    assert_eq!(s.2, "OOMKilled", "{s:?}");

    let missing = env.host.block_on(|| {
        let mut c = container("ghost", &["true"]);
        c.image.as_mut().unwrap().image = "example.com/nothing:here".into();
        rt.containers.create(&sid, c, Some(pod_cfg.clone()))
    });
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let bad_sandbox = env.host.block_on(|| {
        rt.containers
            .create("0000", container("x", &["true"]), Some(pod_cfg.clone()))
    });
    assert_eq!(bad_sandbox.unwrap_err().code(), Code::NotFound);
    let mut bad_cap = container("caps", &["true"]);
    bad_cap.linux.as_mut().unwrap().security_context =
        Some(cri_proto::v1::LinuxContainerSecurityContext {
            capabilities: Some(cri_proto::v1::Capability {
                add_capabilities: vec!["CAP_NOT_A_THING".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
    let e = env
        .host
        .block_on(|| rt.containers.create(&sid, bad_cap, Some(pod_cfg.clone())))
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert_eq!(env.host.block_on(|| rt.containers.list(None)).len(), 1);

    env.host.block_on(|| rt.sandboxes.remove(&sid)).unwrap();
    env.host.block_on(|| rt.containers.remove(&id)).unwrap();
}
