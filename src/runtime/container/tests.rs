//! The container logic against recording fakes of the holders, the pod network and the
//! image store: roll-back of a half-made container, idempotent stop and remove, name
//! reservation and recovery after a restart.

use cri_proto::v1::{
    ContainerConfig as CriContainerConfig, ContainerMetadata, ContainerState as CriState, ImageSpec,
};

use super::*;
use crate::runtime::error::Code;
use crate::runtime::fakes::{FakeImages, Scratch, left_in, ok};
use crate::runtime::meta::Phase;
use crate::runtime::sandbox::tests::{Rig as SandboxRig, pod};

/// A node's sandboxes and containers over fakes; one pod, "web", runs.
struct Rig {
    pods: SandboxRig,
    images: FakeImages,
    /// Where the fake store makes rootfs dirs.
    _rootfs: Scratch,
    containers: Containers,
    sandbox: String,
}

impl Rig {
    async fn new() -> Self {
        let pods = SandboxRig::new().await;
        let rootfs = Scratch::new("rootfs");
        let images = FakeImages::new(rootfs.path(), &["busybox"]);
        let sandbox = ok(pods.sandboxes.run(pod("web"), "").await);
        let containers = open(&pods, &images).await;
        Self {
            pods,
            images,
            _rootfs: rootfs,
            containers,
            sandbox,
        }
    }

    /// The daemon restarted: the same records, holders and images.
    async fn restart(&mut self) {
        self.pods.restart().await;
        self.containers = open(&self.pods, &self.images).await;
    }

    fn records(&self) -> PathBuf {
        self.pods.dir.path().join("containers")
    }

    async fn create(&self, name: &str) -> Result<String> {
        self.containers
            .create(&self.sandbox, config(name), Some(pod("web")))
            .await
    }

    async fn state(&self, id: &str) -> (CriState, i32) {
        let (st, _) = ok(self.containers.status(id, false).await);
        (
            CriState::try_from(st.state).unwrap_or(CriState::ContainerUnknown),
            st.exit_code,
        )
    }

    /// The ids of the containers the holder was asked to create, in order.
    fn created(&self) -> Vec<String> {
        let prefix = format!("create_container {}/", self.sandbox);
        self.pods
            .holders
            .calls()
            .iter()
            .filter_map(|c| c.strip_prefix(&prefix).map(String::from))
            .collect()
    }
}

async fn open(pods: &SandboxRig, images: &FakeImages) -> Containers {
    Containers::open(
        ContainerConfig {
            records: pods.dir.path().join("containers"),
            options: RuntimeOptions::default(),
        },
        Arc::new(images.clone()),
        pods.sandboxes.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("open: {e}"))
}

fn config(name: &str) -> CriContainerConfig {
    CriContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_makes_the_rootfs_then_the_holder_container() {
    let rig = Rig::new().await;
    let id = ok(rig.create("app").await);
    assert_eq!(rig.created(), vec![id.clone()]);
    assert_eq!(rig.images.calls(), vec![format!("create_rootfs {id}")]);
    assert_eq!(ok(rig.containers.get(&id)).phase, Phase::Ready);
    assert_eq!(rig.state(&id).await.0, CriState::ContainerCreated);
    ok(rig.containers.start(&id).await);
    assert_eq!(rig.state(&id).await.0, CriState::ContainerRunning);
}

#[tokio::test]
async fn a_failed_holder_create_rolls_the_container_back() {
    let rig = Rig::new().await;
    rig.pods.holders.fail("create_container");
    let e = rig.create("app").await.unwrap_err();
    assert!(e.to_string().contains("create_container refused"), "{e}");
    let id = rig.created().remove(0);
    assert_eq!(
        rig.images.calls(),
        vec![
            format!("create_rootfs {id}"),
            format!("remove_rootfs {id}"),
            format!("remove_views {id}"),
        ]
    );
    assert!(rig.images.world().rootfs.is_empty());
    assert!(
        left_in(&rig.records()).is_empty(),
        "{:?}",
        left_in(&rig.records())
    );
    assert!(rig.containers.all().is_empty());
    rig.pods.holders.world().fail.clear();
    ok(rig.create("app").await);
}

#[tokio::test]
async fn a_missing_image_is_not_found_and_leaves_nothing() {
    let rig = Rig::new().await;
    let mut cfg = config("app");
    cfg.image = Some(ImageSpec {
        image: "nginx".into(),
        ..Default::default()
    });
    let e = rig
        .containers
        .create(&rig.sandbox, cfg, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(rig.created().is_empty());
    assert!(
        left_in(&rig.records()).is_empty(),
        "{:?}",
        left_in(&rig.records())
    );
    ok(rig.create("app").await);
}

#[tokio::test]
async fn a_name_is_held_until_its_container_is_removed() {
    let rig = Rig::new().await;
    let first = ok(rig.create("app").await);
    let e = rig.create("app").await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(
        e.to_string(),
        format!("container name \"app_web_default_uid-web_0\" is reserved for \"{first}\"")
    );
    assert_eq!(rig.created().len(), 1, "nothing made for the refused one");
    ok(rig.containers.remove(&first).await);
    let second = ok(rig.create("app").await);
    assert_ne!(first, second);
}

#[tokio::test]
async fn stop_and_remove_twice_and_of_unknown_ids_succeed() {
    let rig = Rig::new().await;
    let id = ok(rig.create("app").await);
    ok(rig.containers.start(&id).await);
    ok(rig.containers.stop(&id, 0).await);
    assert_eq!(rig.state(&id).await, (CriState::ContainerExited, 137));
    ok(rig.containers.stop(&id, 0).await);
    let signals = rig
        .pods
        .holders
        .calls()
        .iter()
        .filter(|c| c.starts_with("signal"))
        .count();
    assert_eq!(signals, 1, "an exited container is not signalled again");
    ok(rig.containers.remove(&id).await);
    ok(rig.containers.remove(&id).await);
    assert!(rig.images.world().rootfs.is_empty());
    assert!(
        rig.pods.holders.world().pods[&rig.sandbox]
            .containers
            .is_empty()
    );
    assert!(
        left_in(&rig.records()).is_empty(),
        "{:?}",
        left_in(&rig.records())
    );
    ok(rig.containers.stop("0123456789abcdef", 10).await);
    ok(rig.containers.remove("0123456789abcdef").await);
    assert_eq!(
        rig.containers.status(&id, false).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn a_container_whose_holder_died_reads_exited_and_removes() {
    let rig = Rig::new().await;
    let id = ok(rig.create("app").await);
    ok(rig.containers.start(&id).await);
    rig.pods.holders.die(&rig.sandbox);
    assert_eq!(rig.state(&id).await, (CriState::ContainerExited, 255));
    ok(rig.containers.stop(&id, 10).await);
    ok(rig.containers.remove(&id).await);
    assert!(
        rig.pods
            .holders
            .calls()
            .contains(&format!("remove_dead {}/{id}", rig.sandbox)),
        "{:?}",
        rig.pods.holders.calls()
    );
    assert!(rig.images.world().rootfs.is_empty());
    assert!(rig.containers.all().is_empty());
}

#[tokio::test]
async fn a_restart_adopts_containers_and_rolls_back_half_made_ones() {
    let mut rig = Rig::new().await;
    let running = ok(rig.create("running").await);
    ok(rig.containers.start(&running).await);
    let created = ok(rig.create("created").await);
    // A create a crash cut short after the holder made it, before it was recorded Ready.
    let half = ok(rig.create("half").await);
    let mut rec = ok(rig.containers.get(&half));
    rec.phase = Phase::Creating;
    ok(rig
        .containers
        .inner
        .store
        .save(&half, &rec)
        .map_err(RuntimeError::from));

    rig.restart().await;
    let ids: Vec<String> = rig.containers.all().into_iter().map(|r| r.id).collect();
    let mut want = vec![running.clone(), created.clone()];
    want.sort();
    assert_eq!(ids, want, "the half-made one is gone");
    assert_eq!(rig.state(&running).await.0, CriState::ContainerRunning);
    assert_eq!(rig.state(&created).await.0, CriState::ContainerCreated);
    assert!(
        !rig.pods.holders.world().pods[&rig.sandbox]
            .containers
            .contains_key(&half),
        "removed from its holder"
    );
    assert!(!rig.images.world().rootfs.contains(&half));
    assert_eq!(
        rig.create("running").await.unwrap_err().code(),
        Code::AlreadyExists,
        "an adopted container holds its name"
    );
    ok(rig.create("half").await);

    // The pod's holder dies while the daemon is down: its containers read exited.
    rig.pods.holders.die(&rig.sandbox);
    rig.restart().await;
    assert_eq!(rig.state(&running).await, (CriState::ContainerExited, 255));
    assert_eq!(rig.state(&created).await, (CriState::ContainerExited, 255));
}
