//! `berth cri` serving sandboxes and containers on its socket, driven over gRPC the way
//! the kubelet drives it, and the runtime's promise under kill -9: pods and containers
//! keep running while the daemon is gone, exits that happen meanwhile are reported with
//! their real codes after the restart, and everything is removed cleanly at the end.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

mod cni_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_integration_tests::berth_cri::BerthCri;
use berth_integration_tests::containerd::CriNetwork;
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::util::wait_for;
use berth_integration_tests::{TestEnv, require_root};
use cni_common::berth_bin_dir;
use cri_proto::v1 as cri;
use cri_proto::{ImageServiceClient, RuntimeServiceClient};
use tonic::transport::{Channel, Endpoint, Uri};

async fn connect(sock: &Path) -> (RuntimeServiceClient<Channel>, ImageServiceClient<Channel>) {
    let sock = sock.to_path_buf();
    let channel = Endpoint::try_from("http://[::1]:1")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move {
                let s = tokio::net::UnixStream::connect(sock).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .unwrap();
    (
        RuntimeServiceClient::new(channel.clone()),
        ImageServiceClient::new(channel),
    )
}

fn sandbox_config(logs: &Path, cgroup_parent: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "survivor".into(),
            uid: "uid-survivor".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "survivor".into(),
        log_directory: logs.to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(name: &str, image: &str, cmd: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// `berth cri` on berth's CNI plugins (bridge `berth0` on `subnet`), state in `dir`.
fn start_berth<'a>(env: &'a TestEnv, dir: &Path, ipam: &Path, subnet: &str) -> BerthCri<'a> {
    let net = CriNetwork::berth(&berth_bin_dir(), &dir.join("cni-bin"), subnet, ipam).unwrap();
    BerthCri::start(env, dir, &net).unwrap()
}

/// The IP leases host-local holds for the `berth` network.
fn leases(ipam: &Path) -> Vec<String> {
    std::fs::read_dir(ipam.join("berth"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn pid_of(info: &std::collections::HashMap<String, String>) -> i64 {
    serde_json::from_str::<serde_json::Value>(&info["info"]).unwrap()["pid"]
        .as_i64()
        .unwrap()
}

#[test]
fn pods_survive_kill_9_of_the_daemon_and_exits_meanwhile_are_reported() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let (dir, ipam) = (env.subdir("berth").unwrap(), env.subdir("ipam").unwrap());
    let mut d = start_berth(&env, &dir, &ipam, "10.244.79.0/24");
    let image = d.import(&Image::Busybox).unwrap();
    let logs = env.subdir("logs").unwrap();
    let sock = PathBuf::from(&d.endpoint);
    let cgroup_parent = format!("/{}/survivor", env.cgroups().name());
    let (sid, sleeper, quitter, sleeper_pid) = env.host.block_on(|| async {
        let (mut rt, _) = connect(&sock).await;
        let sid = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config(&logs, &cgroup_parent)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let mut ids = vec![];
        for (name, cmd) in [
            ("sleeper", &["sleep", "3600"][..]),
            ("quitter", &["sh", "-c", "sleep 3; exit 7"][..]),
        ] {
            let id = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: sid.clone(),
                    config: Some(container(name, &image, cmd)),
                    sandbox_config: Some(sandbox_config(&logs, &cgroup_parent)),
                })
                .await
                .unwrap()
                .into_inner()
                .container_id;
            rt.start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap();
            ids.push(id);
        }
        let st = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: ids[0].clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let pid = pid_of(&st.info);
        (sid, ids[0].clone(), ids[1].clone(), pid)
    });
    assert!(sleeper_pid > 0);

    // The daemon dies; the quitter exits while nobody is listening.
    d.kill9();
    std::thread::sleep(Duration::from_secs(4));
    d.restart().unwrap();

    env.host.block_on(|| async {
        let (mut rt, _) = connect(&sock).await;
        let pods = rt
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].id, sid);
        assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);

        let st = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: sleeper.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let s = st.status.unwrap();
        assert_eq!(s.state, cri::ContainerState::ContainerRunning as i32);
        assert_eq!(pid_of(&st.info), sleeper_pid, "the same process, untouched");

        let q = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: quitter.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(q.state, cri::ContainerState::ContainerExited as i32);
        assert_eq!((q.exit_code, q.reason.as_str()), (7, "Error"));
        assert!(q.finished_at > q.started_at && q.started_at > 0);

        let r = rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: sleeper.clone(),
                cmd: vec!["hostname".into()],
                timeout: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "survivor");

        let unknown = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: "ffffffff".into(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");

        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sid.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sid.clone(),
        })
        .await
        .unwrap();
        let left = rt
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .containers;
        assert!(left.is_empty(), "{left:?}");
    });
    assert!(
        wait_for(Duration::from_secs(5), || {
            (!Path::new(&format!("/proc/{sleeper_pid}")).exists()).then_some(())
        })
        .is_some(),
        "the sleeper outlived its pod"
    );
    drop(d);
    assert!(!sock.exists(), "SIGTERM removes the socket");
}

/// The kubelet's whole pod cycle 200 times; afterwards nothing of the pods is left: no
/// sandbox or container record, holder, holder state, rootfs, IP lease, veth, network
/// namespace file or cgroup.
#[test]
fn two_hundred_pod_cycles_leave_nothing_behind() {
    use berth_integration_tests::cri::{ContainerSpec, CriClient, PodSpec};
    require_root!();
    let env = TestEnv::new().unwrap();
    let (dir, ipam) = (env.subdir("berth").unwrap(), env.subdir("ipam").unwrap());
    let d = start_berth(&env, &dir, &ipam, "10.244.80.0/24");
    let image = d.import(&Image::Busybox).unwrap();
    let logs = env.subdir("logs").unwrap();
    let parent = format!("/{}", env.cgroups().name());
    let links = || {
        let out = env
            .host
            .command("ip")
            .args(["-o", "link"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let endpoint = d.endpoint.clone();
    env.host.block_on(|| async {
        let mut c = CriClient::connect(&endpoint).await.unwrap();
        for i in 0..200 {
            let pod = PodSpec::new(
                &format!("cycle-{i}"),
                &logs.join(format!("cycle-{i}")),
                &parent,
            );
            let cfg = pod.config();
            let sid = c.run_pod_sandbox(&cfg).await.unwrap();
            let spec = ContainerSpec::new("app", &image, &["sleep", "3600"]);
            let cid = c
                .create_container(&sid, &spec.config(&pod), &cfg)
                .await
                .unwrap();
            c.start_container(&cid).await.unwrap();
            c.stop_container(&cid, 0).await.unwrap();
            c.remove_container(&cid).await.unwrap();
            c.stop_pod_sandbox(&sid).await.unwrap();
            c.remove_pod_sandbox(&sid).await.unwrap();
        }
        assert!(c.list_pod_sandbox(None).await.unwrap().is_empty());
        assert!(c.list_containers(None).await.unwrap().is_empty());
    });
    let count = |p: PathBuf| std::fs::read_dir(&p).map(|d| d.count()).unwrap_or(0);
    let root = PathBuf::from(&d.root);
    assert_eq!(count(root.join("sandboxes")), 0, "sandbox records or files");
    assert_eq!(count(root.join("containers")), 0, "container records");
    assert_eq!(count(root.join("images/rootfs")), 0, "container rootfs");
    assert_eq!(count(dir.join("run/pods")), 0, "holder state");
    let leases = leases(&ipam);
    assert!(leases.is_empty(), "IP leases left: {leases:?}");
    // lo and the bridge: every pod's veth is gone.
    assert_eq!(links(), 2, "links left in the host netns");
    let holders = berth_integration_tests::leak::marked(env.id())
        .into_iter()
        .filter(|(_, cmd)| is_holder(cmd))
        .count();
    assert_eq!(holders, 0, "holders left running");
    for (_, cg) in env.cgroups().dirs() {
        let children: Vec<_> = std::fs::read_dir(cg)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(
            children.is_empty(),
            "cgroups left under {}: {children:?}",
            cg.display()
        );
    }
}

/// Whether a command line (words joined by spaces) is a pod's holder:
/// `.../berth-holder --state-dir S --pod-id P ...` (not the zygote, `berth-holder zygote`).
fn is_holder(cmd: &str) -> bool {
    let mut words = cmd.split(' ');
    words.next().is_some_and(|w| w.ends_with("/berth-holder"))
        && words.next() == Some("--state-dir")
}

/// The pod ids of the running `berth-holder` processes of this test.
fn running_holders(env: &TestEnv) -> std::collections::BTreeSet<String> {
    berth_integration_tests::leak::marked(env.id())
        .into_iter()
        .filter(|(_, cmd)| is_holder(cmd))
        .filter_map(|(_, cmd)| {
            let mut words = cmd.split(' ');
            words.find(|w| *w == "--pod-id")?;
            words.next().map(str::to_string)
        })
        .collect()
}

/// kill -9 of the daemon while RunPodSandbox is in flight, at several points of it: after
/// the restart every sandbox the daemon knows is READY and nothing else is left (no
/// holder of a pod it does not know, no IP lease, no pod state).
#[test]
fn kill_9_during_run_pod_sandbox_leaves_a_ready_pod_or_nothing() {
    use berth_integration_tests::containerd::cri_peer::on_own_runtime;
    use berth_integration_tests::cri::{CriClient, PodSpec};
    require_root!();
    let env = TestEnv::new().unwrap();
    let (dir, ipam) = (env.subdir("berth").unwrap(), env.subdir("ipam").unwrap());
    let mut d = start_berth(&env, &dir, &ipam, "10.244.81.0/24");
    let logs = env.subdir("logs").unwrap();
    let parent = format!("/{}", env.cgroups().name());
    for (i, delay_ms) in [0u64, 2, 5, 10, 20, 40, 80].into_iter().enumerate() {
        let pod = PodSpec::new(&format!("inflight-{i}"), &logs, &parent);
        let cfg = pod.config();
        let ep = d.endpoint.clone();
        let call = std::thread::spawn(move || {
            on_own_runtime(move || async move {
                let mut c = CriClient::connect(&ep).await?;
                Ok(c.run_pod_sandbox(&cfg).await.ok())
            })
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        d.kill9();
        let _ = call.join();
        d.restart().unwrap();
        let ep = d.endpoint.clone();
        let pods = on_own_runtime(move || async move {
            let mut c = CriClient::connect(&ep).await?;
            Ok(c.list_pod_sandbox(None).await?)
        })
        .unwrap();
        for p in &pods {
            assert_eq!(
                p.state,
                cri::PodSandboxState::SandboxReady as i32,
                "a half-made sandbox survived the restart (kill after {delay_ms} ms)"
            );
        }
        let known: std::collections::BTreeSet<String> = pods.iter().map(|p| p.id.clone()).collect();
        let holders = running_holders(&env);
        assert!(
            holders.is_subset(&known),
            "holders of unknown pods after a kill at {delay_ms} ms: {:?}",
            holders.difference(&known).collect::<Vec<_>>()
        );
    }
    // Everything removed through CRI leaves nothing.
    let ep = d.endpoint.clone();
    on_own_runtime(move || async move {
        let mut c = CriClient::connect(&ep).await?;
        for p in c.list_pod_sandbox(None).await? {
            c.stop_pod_sandbox(&p.id).await?;
            c.remove_pod_sandbox(&p.id).await?;
        }
        Ok(())
    })
    .unwrap();
    assert!(running_holders(&env).is_empty());
    let leases = leases(&ipam);
    assert!(leases.is_empty(), "IP leases left: {leases:?}");
    let pods_dir = dir.join("run/pods");
    assert_eq!(
        std::fs::read_dir(&pods_dir).map(|d| d.count()).unwrap_or(0),
        0,
        "pod state left in {}",
        pods_dir.display()
    );
    // The holders' cgroups (<parent>/<sandbox id>) went with their sandboxes, the rolled
    // back ones too.
    for (_, cg) in env.cgroups().dirs() {
        let left = names_in(cg)
            .into_iter()
            .filter(|n| cg.join(n).is_dir())
            .collect::<Vec<_>>();
        assert!(
            left.is_empty(),
            "cgroups left under {}: {left:?}",
            cg.display()
        );
    }
}

/// The children of process `pid` (its own thread's list: the holder is single-threaded).
fn children_of(pid: i64) -> Vec<i64> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The names in `dir` (none when it is missing).
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// kill -9 of the daemon while CreateContainer and StartContainer are in flight, at
/// several points of them: after each restart every listed container is created, running
/// or exited and answers ContainerStatus; what a half-made create left (rootfs and its
/// mount, daemon record, holder record, holder child) is gone and its name can be used
/// again; a created container can still be started. The pod is then stopped and removed, leaving nothing.
#[test]
fn kill_9_during_create_and_start_container_leaves_consistent_containers() {
    use berth_integration_tests::containerd::cri_peer::on_own_runtime;
    use berth_integration_tests::cri::{ContainerSpec, CriClient, PodSpec};
    require_root!();
    let env = TestEnv::new().unwrap();
    let (dir, ipam) = (env.subdir("berth").unwrap(), env.subdir("ipam").unwrap());
    let mut d = start_berth(&env, &dir, &ipam, "10.244.82.0/24");
    let image = d.import(&Image::Busybox).unwrap();
    let logs = env.subdir("logs").unwrap();
    let pod = PodSpec::new("inflight", &logs, &format!("/{}", env.cgroups().name()));
    let ep = d.endpoint.clone();
    let cfg = pod.config();
    let (sid, holder) = on_own_runtime(move || async move {
        let mut c = CriClient::connect(&ep).await?;
        let sid = c.run_pod_sandbox(&cfg).await?;
        let info = c.pod_sandbox_status(&sid, true).await?.info;
        Ok((sid, pid_of(&info)))
    })
    .unwrap();
    let root = d.root.clone();
    let holder_records = dir.join("run/pods").join(&sid).join("containers");
    // Create and start both in flight (a create takes a few tens of ms here), then only
    // the start, after a create that finished.
    let both = [0u64, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 60, 80, 120];
    let start_only = [0u64, 1, 2, 3, 5, 8, 13];
    let rounds = both
        .iter()
        .map(|d| (*d, false))
        .chain(start_only.iter().map(|d| (*d, true)));
    for (i, (delay_ms, created_first)) in rounds.enumerate() {
        let spec = ContainerSpec::new(&format!("c{i}"), &image, &["sleep", "3600"]);
        let (ccfg, pcfg) = (spec.config(&pod), pod.config());
        let retry = (ccfg.clone(), pcfg.clone());
        let (ep, sid2) = (d.endpoint.clone(), sid.clone());
        let created = created_first.then(|| {
            let (ep, sid2, ccfg, pcfg) = (ep.clone(), sid2.clone(), ccfg.clone(), pcfg.clone());
            on_own_runtime(move || async move {
                let mut c = CriClient::connect(&ep).await?;
                Ok(c.create_container(&sid2, &ccfg, &pcfg).await?)
            })
            .unwrap()
        });
        let call = std::thread::spawn(move || {
            on_own_runtime(move || async move {
                let mut c = CriClient::connect(&ep).await?;
                let id = match created {
                    Some(id) => id,
                    None => c.create_container(&sid2, &ccfg, &pcfg).await?,
                };
                c.start_container(&id).await?;
                Ok(())
            })
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        d.kill9();
        let _ = call.join();
        d.restart().unwrap();
        let ep = d.endpoint.clone();
        let listed = on_own_runtime(move || async move {
            let mut c = CriClient::connect(&ep).await?;
            let mut out = vec![];
            for ctr in c.list_containers(None).await? {
                let st = c.container_status(&ctr.id, false).await?.status;
                let name = ctr.metadata.map(|m| m.name).unwrap_or_default();
                out.push((ctr.id, ctr.state, st.map(|s| s.state), name));
            }
            Ok(out)
        })
        .unwrap();
        let at = format!("kill after {delay_ms} ms");
        let mut live = 0;
        for (id, state, status, _) in &listed {
            assert_eq!(Some(*state), *status, "{id}: list and status agree ({at})");
            assert!(
                [
                    cri::ContainerState::ContainerCreated as i32,
                    cri::ContainerState::ContainerRunning as i32,
                    cri::ContainerState::ContainerExited as i32,
                ]
                .contains(state),
                "{id} is {state} after a {at}"
            );
            if *state != cri::ContainerState::ContainerExited as i32 {
                live += 1;
            }
        }
        let ids: Vec<&String> = listed.iter().map(|(id, _, _, _)| id).collect();
        let known = |name: &String| ids.iter().any(|id| name.starts_with(id.as_str()));
        for (what, dir) in [
            ("daemon record", root.join("containers")),
            ("rootfs", root.join("images/rootfs")),
            ("holder record", holder_records.clone()),
        ] {
            let stray: Vec<String> = names_in(&dir).into_iter().filter(|n| !known(n)).collect();
            assert!(
                stray.is_empty(),
                "{what} of no listed container ({at}): {stray:?}"
            );
        }
        let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", d.pid().unwrap()))
            .unwrap()
            .lines()
            .filter(|l| l.contains("/images/rootfs/"))
            .map(str::to_string)
            .collect::<Vec<_>>();
        assert_eq!(
            mounts.len(),
            listed.len(),
            "one rootfs mount per listed container ({at}): {mounts:?}"
        );
        assert_eq!(
            children_of(holder).len(),
            live,
            "one holder child per created or running container ({at}): {listed:?}"
        );
        // The kubelet retries a create that failed with the same name: a rolled-back
        // one must have released it.
        if !listed.iter().any(|l| l.3 == spec.name) {
            let (ep, sid2) = (d.endpoint.clone(), sid.clone());
            on_own_runtime(move || async move {
                let mut c = CriClient::connect(&ep).await?;
                c.create_container(&sid2, &retry.0, &retry.1).await?;
                Ok(())
            })
            .unwrap_or_else(|e| panic!("create {} again ({at}): {e:#}", spec.name));
        }
    }
    // Every container the restarts kept can be started, stopped and removed; the pod then
    // goes leaving nothing.
    let ep = d.endpoint.clone();
    let sid2 = sid.clone();
    on_own_runtime(move || async move {
        let mut c = CriClient::connect(&ep).await?;
        for ctr in c.list_containers(None).await? {
            if ctr.state == cri::ContainerState::ContainerCreated as i32 {
                c.start_container(&ctr.id).await?;
            }
            c.stop_container(&ctr.id, 0).await?;
            c.remove_container(&ctr.id).await?;
        }
        c.stop_pod_sandbox(&sid2).await?;
        c.remove_pod_sandbox(&sid2).await?;
        Ok(())
    })
    .unwrap();
    assert!(running_holders(&env).is_empty(), "holders left");
    assert!(children_of(holder).is_empty());
    for (what, p) in [
        ("sandbox records or files", root.join("sandboxes")),
        ("container records", root.join("containers")),
        ("container rootfs", root.join("images/rootfs")),
        ("holder state", dir.join("run/pods")),
    ] {
        let left = names_in(&p);
        assert!(left.is_empty(), "{what} left: {left:?}");
    }
    let leases = leases(&ipam);
    assert!(leases.is_empty(), "IP leases left: {leases:?}");
    for (_, cg) in env.cgroups().dirs() {
        let left = names_in(cg)
            .into_iter()
            .filter(|n| cg.join(n).is_dir())
            .collect::<Vec<_>>();
        assert!(
            left.is_empty(),
            "cgroups left under {}: {left:?}",
            cg.display()
        );
    }
}
