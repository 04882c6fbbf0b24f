//! berth's remote CRI client (`berth::cri::RemoteRuntime`) driving a runtime over its
//! socket the way the kubelet drives it: the pod cgroup made by `kubelet::cm` as the
//! sandbox's cgroup parent, a sandbox and a container with the resources kubelet
//! computes, ExecSync, ImageStatus, a runtime's error status passed through with its code,
//! and GetContainerEvents. The same body runs against `berth cri` and against containerd
//! 1.6, whose missing GetContainerEvents must end the event stream cleanly.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use berth::cgroups::Layout;
use berth::cri::api::{ImageApi, PodApi, RuntimeApi};
use berth::cri::{CriError, RemoteRuntime};
use berth::kubelet::cm::{CgroupManager, NodeFacts, container_resources, hugepage_sizes};
use berth_integration_tests::berth_cri::BerthCri;
use berth_integration_tests::containerd::{CriNetwork, CriPeer};
use berth_integration_tests::cri::{ContainerSpec, PodSpec, api as cri};
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::{TestEnv, require_root};
use futures::StreamExt;
use tonic::Code;

/// The node as the kubelet would describe it to `container_resources`.
const MEMORY_CAPACITY: u64 = 4_000_000_000;

/// What differs between the two runtimes.
struct Target<'a> {
    endpoint: String,
    runtime_name: &'static str,
    busybox: String,
    /// The test's cgroup root (`/berth-test-<random>`): kubepods goes below it.
    cgroup_root: String,
    logs: &'a Path,
    /// Whether the runtime serves GetContainerEvents and ListPodSandboxMetrics.
    events: bool,
}

/// A Burstable pod (cpu and memory requested, memory limited) as the kubelet sees it,
/// in the API's JSON form.
fn kube_pod(uid: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "remote", "namespace": "default", "uid": uid},
        "spec": {"containers": [{
            "name": "app",
            "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"memory": "64Mi"}
            }
        }]}
    })
}

fn exec(id: &str, cmd: &[&str]) -> cri::ExecSyncRequest {
    cri::ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| (*s).to_string()).collect(),
        timeout: 10,
    }
}

async fn lifecycle(t: &Target<'_>) -> anyhow::Result<()> {
    let rt = RemoteRuntime::connect(&t.endpoint).await?;
    let mut events = rt.container_events();
    if t.events {
        // The call goes out when the stream is first polled; nothing has happened yet,
        // so this poll only subscribes.
        let first = tokio::time::timeout(Duration::from_secs(1), events.next()).await;
        ensure!(first.is_err(), "an event before anything ran: {first:?}");
    } else {
        // containerd 1.6 answers UNIMPLEMENTED: the stream ends, it does not hang or fail.
        let end = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .context("the event stream neither delivered nor ended")?;
        ensure!(
            end.is_none(),
            "an event from a runtime without events: {end:?}"
        );
    }

    let v = rt
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await?;
    ensure!(v.runtime_name == t.runtime_name, "{v:?}");

    let img = |image: &str| cri::ImageStatusRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        verbose: false,
    };
    let st = rt.image_status(img(&t.busybox)).await?;
    let image = st.image.context("busybox is imported")?;
    ensure!(!image.id.is_empty() && image.size > 0, "{image:?}");
    let missing = rt.image_status(img("berth.test/missing:latest")).await?;
    ensure!(missing.image.is_none(), "{missing:?}");

    // The pod cgroup, as the kubelet makes it before RunPodSandbox.
    let layout = Layout::detect();
    let cm = CgroupManager::new(layout.clone(), t.cgroup_root.clone().into())
        .with_hugepage_sizes(hugepage_sizes(Path::new("/sys")));
    cm.ensure_qos_hierarchy()?;
    let mut spec = PodSpec::new("remote", t.logs, "");
    // (the type is the kubelet's Pod, k8s-openapi's, inferred from its use)
    let pod = serde_json::from_value(kube_pod(&spec.uid))?;
    spec.cgroup_parent = cm.ensure_pod(&pod)?;
    ensure!(
        spec.cgroup_parent == format!("{}/kubepods/burstable/pod{}", t.cgroup_root, spec.uid),
        "{}",
        spec.cgroup_parent
    );

    let sid = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(spec.config()),
            runtime_handler: String::new(),
        })
        .await?
        .pod_sandbox_id;

    let node = NodeFacts {
        memory_capacity: MEMORY_CAPACITY,
        cpu_capacity_millis: 2000,
        // No CAP_SYS_RESOURCE on the test machines; a Burstable score is positive anyway.
        can_lower_oom_score_adj: false,
        cgroup_v2: layout.is_v2_only(),
        swap_controller: false,
        hugepage_sizes: hugepage_sizes(Path::new("/sys")),
    };
    let kube_ctr = &pod.spec.as_ref().context("spec")?.containers[0];
    let resources = container_resources(&pod, kube_ctr, &node);
    // 1000 - 1000 * 64Mi / 4e9
    ensure!(resources.oom_score_adj == 984, "{resources:?}");
    let mut config = ContainerSpec::new("app", &t.busybox, &["sleep", "3600"]).config(&spec);
    if let Some(l) = config.linux.as_mut() {
        l.resources = Some(resources);
    }
    let cid = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sid.clone(),
            config: Some(config),
            sandbox_config: Some(spec.config()),
        })
        .await?
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: cid.clone(),
    })
    .await?;

    if t.events {
        let started = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(ev) = events.next().await {
                if ev.container_id == cid
                    && ev.container_event_type() == cri::ContainerEventType::ContainerStartedEvent
                {
                    return Some(ev);
                }
            }
            None
        })
        .await
        .context("no start event within 10 s")?
        .context("the event stream ended")?;
        ensure!(started.pod_sandbox_status.is_some(), "{started:?}");
    }

    let st = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: cid.clone(),
            verbose: false,
        })
        .await?
        .status
        .context("status")?;
    ensure!(
        st.state == cri::ContainerState::ContainerRunning as i32,
        "{st:?}"
    );

    let out = rt
        .exec_sync(exec(&cid, &["cat", "/proc/self/oom_score_adj"]))
        .await?;
    ensure!(out.exit_code == 0, "{out:?}");
    ensure!(String::from_utf8_lossy(&out.stdout) == "984\n", "{out:?}");
    let out = rt.exec_sync(exec(&cid, &["sh", "-c", "exit 3"])).await?;
    ensure!(out.exit_code == 3, "{out:?}");

    // The runtime's own status comes through with its code.
    let e = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "0123456789abcdef-not-there".into(),
            verbose: false,
        })
        .await
        .expect_err("unknown container");
    ensure!(e.code() == Code::NotFound, "{e}");
    ensure!(
        matches!(
            e,
            CriError::Remote {
                rpc: "ContainerStatus",
                ..
            }
        ),
        "{e:?}"
    );
    match rt.list_pod_sandbox_metrics().await {
        Ok(m) if t.events => ensure!(
            m.pod_metrics.iter().any(|p| p.pod_sandbox_id == sid),
            "{m:?}"
        ),
        Err(e) if !t.events => ensure!(e.code() == Code::Unimplemented, "{e}"),
        r => anyhow::bail!("ListPodSandboxMetrics: {r:?}"),
    }

    rt.stop_container(cri::StopContainerRequest {
        container_id: cid.clone(),
        timeout: 0,
    })
    .await?;
    rt.remove_container(cri::RemoveContainerRequest {
        container_id: cid.clone(),
    })
    .await?;
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sid.clone(),
    })
    .await?;
    let left = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?;
    ensure!(left.items.is_empty(), "{left:?}");

    cm.destroy_pod(&spec.uid)?;
    ensure!(cm.pod_uids()?.is_empty());
    Ok(())
}

fn drive(t: &Target<'_>, log: impl Fn() -> String) {
    let r = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(lifecycle(t));
    if let Err(e) = r {
        let log = log();
        let lines: Vec<&str> = log.lines().collect();
        panic!(
            "{e:#}\n{} log (tail):\n{}",
            t.runtime_name,
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
}

#[test]
fn berth_cri_through_the_remote_client() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let dir = env.subdir("berth").unwrap();
    let ipam = env.subdir("ipam").unwrap();
    let net = CriNetwork::berth_built(&dir.join("cni-bin"), "10.244.31.0/24", &ipam).unwrap();
    let berth = BerthCri::start(&env, &dir, &net).unwrap();
    let logs = env.subdir("pod-logs").unwrap();
    let t = Target {
        endpoint: format!("unix://{}", berth.endpoint),
        runtime_name: "berth",
        busybox: berth.import(&Image::Busybox).unwrap(),
        cgroup_root: format!("/{}", env.cgroups().name()),
        logs: &logs,
        events: true,
    };
    drive(&t, || berth.log());
}

#[test]
fn containerd_through_the_remote_client() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let dir = env.subdir("containerd").unwrap();
    let ipam = env.subdir("ipam").unwrap();
    let net = CriNetwork::reference("10.244.31.0/24", &ipam);
    let peer = CriPeer::start(&env, &dir, &net).unwrap();
    let logs = env.subdir("pod-logs").unwrap();
    let t = Target {
        endpoint: peer.endpoint.clone(),
        runtime_name: "containerd",
        busybox: peer.import(&Image::Busybox).unwrap(),
        cgroup_root: format!("/{}", env.cgroups().name()),
        logs: &logs,
        events: false,
    };
    drive(&t, || peer.containerd().log());
}
