//! The sandbox logic against recording fakes of the holders and the pod network: roll-back
//! of a half-made sandbox, idempotent stop and remove, name reservation, recovery after
//! a restart, and teardown that runs every step.

use cri_proto::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxState,
};

use super::*;
use crate::runtime::error::Code;
use crate::runtime::fakes::{FakeCni, FakeHolders, Scratch, container_info, left_in, ok};
use crate::runtime::holder::ContainerState;
use crate::runtime::meta::Phase;

/// A node's sandboxes over fakes, with its records and state under a temp dir.
pub(crate) struct Rig {
    pub dir: Scratch,
    pub holders: FakeHolders,
    pub cni: FakeCni,
    pub sandboxes: Sandboxes,
}

impl Rig {
    pub async fn new() -> Self {
        let dir = Scratch::new("sandbox");
        let (holders, cni) = (FakeHolders::default(), FakeCni::default());
        let sandboxes = open(&dir, &holders, &cni).await;
        Self {
            dir,
            holders,
            cni,
            sandboxes,
        }
    }

    /// The daemon restarted: the same records and holders, a new `Sandboxes`.
    pub async fn restart(&mut self) {
        self.sandboxes = open(&self.dir, &self.holders, &self.cni).await;
    }

    pub fn records(&self) -> PathBuf {
        self.dir.path().join("sandboxes")
    }

    /// The ids of the sandboxes the holders were asked to start, in order.
    pub fn spawned(&self) -> Vec<String> {
        self.holders
            .calls()
            .iter()
            .filter_map(|c| c.strip_prefix("spawn ").map(String::from))
            .collect()
    }
}

async fn open(dir: &Scratch, holders: &FakeHolders, cni: &FakeCni) -> Sandboxes {
    Sandboxes::open(
        SandboxConfig {
            records: dir.path().join("sandboxes"),
            state_dir: dir.path().join("state"),
            facts: HostFacts::default(),
        },
        Arc::new(holders.clone()),
        Arc::new(cni.clone()),
    )
    .await
    .unwrap_or_else(|e| panic!("open: {e}"))
}

/// A pod of its own network; on the node's IPC, because a pod's own /dev/shm is a tmpfs
/// mount, which needs root.
pub(crate) fn pod(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    ipc: NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ready(sb: &Sandboxes, id: &str) -> bool {
    let (status, _) = ok(sb.status(id, false));
    status.state == PodSandboxState::SandboxReady as i32
}

#[tokio::test]
async fn run_starts_the_holder_then_the_network() {
    let rig = Rig::new().await;
    let id = ok(rig.sandboxes.run(pod("web"), "").await);
    assert_eq!(rig.spawned(), vec![id.clone()]);
    assert_eq!(
        rig.cni.calls(),
        vec![format!("lo /fake/{id}/ns/net"), format!("add {id}")]
    );
    let rec = ok(rig.sandboxes.get(&id)).snapshot();
    assert_eq!(rec.phase, Phase::Ready);
    assert_eq!(
        rec.netns.as_deref(),
        Some(format!("/fake/{id}/ns/net").as_str())
    );
    assert_eq!(rec.ips.len(), 1, "{:?}", rec.ips);
    assert!(ready(&rig.sandboxes, &id));
}

#[tokio::test]
async fn a_failed_cni_add_rolls_the_sandbox_back() {
    let rig = Rig::new().await;
    rig.cni.world().fail_add = true;
    let e = rig.sandboxes.run(pod("web"), "").await.unwrap_err();
    assert!(e.to_string().contains("ADD refused"), "{e}");
    let id = rig.spawned().remove(0);
    assert!(
        rig.holders.calls().contains(&format!("shutdown {id}")),
        "the holder is shut down: {:?}",
        rig.holders.calls()
    );
    assert!(!rig.holders.is_running(&id));
    assert_eq!(
        rig.cni.calls().last(),
        Some(&format!("del {id}")),
        "what ADD may have made is released"
    );
    assert!(
        left_in(&rig.records()).is_empty(),
        "{:?}",
        left_in(&rig.records())
    );
    assert!(rig.sandboxes.list(None).is_empty());
    rig.cni.world().fail_add = false;
    ok(rig.sandboxes.run(pod("web"), "").await);
}

#[tokio::test]
async fn a_failed_holder_spawn_leaves_nothing() {
    let rig = Rig::new().await;
    rig.holders.fail("spawn");
    let e = rig.sandboxes.run(pod("web"), "").await.unwrap_err();
    assert!(e.to_string().contains("spawn refused"), "{e}");
    assert!(
        rig.cni.calls().is_empty(),
        "no network: {:?}",
        rig.cni.calls()
    );
    assert!(
        left_in(&rig.records()).is_empty(),
        "{:?}",
        left_in(&rig.records())
    );
    assert!(rig.sandboxes.list(None).is_empty());
    rig.holders.world().fail.clear();
    ok(rig.sandboxes.run(pod("web"), "").await);
}

#[tokio::test]
async fn a_name_is_held_until_its_sandbox_is_removed() {
    let rig = Rig::new().await;
    let first = ok(rig.sandboxes.run(pod("web"), "").await);
    let e = rig.sandboxes.run(pod("web"), "").await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(
        e.to_string(),
        format!("sandbox name \"web_default_uid-web_0\" is reserved for \"{first}\"")
    );
    assert_eq!(rig.spawned().len(), 1, "nothing made for the refused one");
    ok(rig.sandboxes.stop(&first).await);
    assert_eq!(
        rig.sandboxes.run(pod("web"), "").await.unwrap_err().code(),
        Code::AlreadyExists,
        "a stopped sandbox keeps its name"
    );
    ok(rig.sandboxes.remove(&first).await);
    let second = ok(rig.sandboxes.run(pod("web"), "").await);
    assert_ne!(first, second);
}

#[tokio::test]
async fn stop_and_remove_twice_and_of_unknown_ids_succeed() {
    let rig = Rig::new().await;
    let id = ok(rig.sandboxes.run(pod("web"), "").await);
    rig.holders.world().pods.get_mut(&id).map(|p| {
        p.containers
            .insert("c1".into(), container_info("c1", ContainerState::Running))
    });
    ok(rig.sandboxes.stop(&id).await);
    ok(rig.sandboxes.stop(&id).await);
    assert!(!ready(&rig.sandboxes, &id));
    let dels = |rig: &Rig| {
        rig.cni
            .calls()
            .iter()
            .filter(|c| c.starts_with("del"))
            .count()
    };
    assert_eq!(dels(&rig), 1, "a stopped sandbox is not torn down again");
    assert!(
        rig.holders.calls().contains(&format!("signal {id}/c1 9")),
        "{:?}",
        rig.holders.calls()
    );
    assert!(rig.holders.is_running(&id), "stop keeps the namespaces");
    ok(rig.sandboxes.remove(&id).await);
    ok(rig.sandboxes.remove(&id).await);
    assert!(!rig.holders.is_running(&id));
    assert!(rig.cni.world().attached.is_empty());
    assert!(
        left_in(&rig.records()).is_empty(),
        "{:?}",
        left_in(&rig.records())
    );
    ok(rig.sandboxes.stop("0123456789abcdef").await);
    ok(rig.sandboxes.remove("0123456789abcdef").await);
    assert_eq!(
        rig.sandboxes.status(&id, false).unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_sandbox_whose_holder_died_stops_and_removes() {
    let rig = Rig::new().await;
    let id = ok(rig.sandboxes.run(pod("web"), "").await);
    rig.holders.die(&id);
    assert!(!ready(&rig.sandboxes, &id));
    assert!(rig.sandboxes.holder_gone(&id));
    ok(rig.sandboxes.stop(&id).await);
    assert!(rig.holders.calls().contains(&format!("finish_dead {id}")));
    assert!(rig.cni.calls().contains(&format!("del {id}")));
    ok(rig.sandboxes.remove(&id).await);
    assert!(
        rig.holders.calls().contains(&format!("kill {id}")),
        "what may be left of it is killed: {:?}",
        rig.holders.calls()
    );
    assert!(rig.sandboxes.list(None).is_empty());
}

#[tokio::test]
async fn teardown_runs_every_step_and_names_every_failure() {
    let rig = Rig::new().await;
    let id = ok(rig.sandboxes.run(pod("web"), "").await);
    rig.holders.world().pods.get_mut(&id).map(|p| {
        p.containers
            .insert("c1".into(), container_info("c1", ContainerState::Running))
    });
    rig.holders.fail("signal");
    rig.cni.world().fail_del = true;
    let e = rig.sandboxes.remove(&id).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("signal refused by the test"), "{msg}");
    assert!(msg.contains("DEL refused by the test"), "{msg}");
    assert!(
        rig.holders.calls().contains(&format!("shutdown {id}")),
        "the holder is shut down although the network was not released: {:?}",
        rig.holders.calls()
    );
    assert!(!rig.holders.is_running(&id));
    // Kept, so that the kubelet's retry releases the network.
    assert_eq!(rig.sandboxes.list(None).len(), 1);
    rig.cni.world().fail_del = false;
    ok(rig.sandboxes.remove(&id).await);
    assert!(rig.cni.world().attached.is_empty());
    assert!(rig.sandboxes.list(None).is_empty());
}

#[tokio::test]
async fn a_restart_adopts_sandboxes_and_rolls_back_half_made_ones() {
    let mut rig = Rig::new().await;
    let live = ok(rig.sandboxes.run(pod("live"), "").await);
    let dead = ok(rig.sandboxes.run(pod("dead"), "").await);
    // A run a crash cut short after the holder started, before CNI ADD returned.
    let half = "feedfacefeedface".to_string();
    let (pid, start) = rig.holders.running(&half, vec![]);
    let mut rec = crate::runtime::meta::SandboxRecord::new(
        half.clone(),
        "half_default_uid-half_0".into(),
        1,
        &pod("half"),
    );
    rec.holder_pid = pid;
    rec.holder_start = start;
    rec.netns = Some(format!("/fake/{half}/ns/net"));
    ok(
        crate::runtime::meta::RecordStore::<crate::runtime::meta::SandboxRecord>::open(
            rig.records(),
        )
        .and_then(|s| s.save(&half, &rec))
        .map_err(RuntimeError::from),
    );
    rig.holders.die(&dead);

    rig.restart().await;
    let ids: Vec<String> = rig.sandboxes.list(None).into_iter().map(|s| s.id).collect();
    let mut want = vec![live.clone(), dead.clone()];
    want.sort();
    assert_eq!(ids, want, "the half-made one is gone");
    assert!(
        ready(&rig.sandboxes, &live),
        "adopted with its running holder"
    );
    assert!(!ready(&rig.sandboxes, &dead), "its holder is gone");
    assert!(rig.holders.calls().contains(&format!("shutdown {half}")));
    assert!(!rig.holders.is_running(&half));
    assert!(rig.cni.calls().contains(&format!("del {half}")));
    assert!(!rig.records().join(format!("{half}.json")).exists());
    assert_eq!(
        rig.sandboxes.run(pod("live"), "").await.unwrap_err().code(),
        Code::AlreadyExists,
        "an adopted sandbox holds its name"
    );
    ok(rig.sandboxes.run(pod("half"), "").await);
}
