//! CRI mount propagation: HOST_TO_CONTAINER and BIDIRECTIONAL binds of a source on a
//! shared mount, seen from both sides.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use berth_integration_tests::cri::{self, api};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{Target, sh, sleeper, wait_until};

/// A tmpfs holding `file` (with `text`) mounted at `at`.
fn tmpfs_with(at: &Path, file: &str, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(at)?;
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )
    .with_context(|| format!("mount tmpfs at {}", at.display()))?;
    std::fs::write(at.join(file), text)?;
    Ok(())
}

/// Unmounts what the case mounted (in the test's own mount namespace) on the way out.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = umount2(p, MntFlags::MNT_DETACH);
        }
    }
}

/// A privileged container (kubelet allows Bidirectional only there) with a
/// HOST_TO_CONTAINER bind at /h2c and a BIDIRECTIONAL one at /bidi, both of directories
/// on a shared tmpfs (a node's kubelet dir on its shared /): a mount made on the host
/// under either source appears in the container; a mount made in the container under
/// /bidi appears on the host, one under /h2c does not.
pub async fn mount_propagation_both_ways(c: &mut cri::CriClient, t: &Target) -> anyhow::Result<()> {
    let src = t.logs.with_file_name("propagation");
    std::fs::create_dir_all(&src)?;
    let mut guard = Unmount(vec![]);
    mount(
        Some("tmpfs"),
        &src,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    )
    .context("mount the shared source")?;
    guard.0.push(src.clone());
    mount(
        None::<&str>,
        &src,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .context("make the source shared")?;
    for d in ["h2c", "bidi"] {
        std::fs::create_dir_all(src.join(d))?;
    }

    let pod = t.pod("propagation");
    let mut pod_config = pod.config();
    if let Some(sc) = pod_config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        sc.privileged = true;
    }
    let id = c
        .run_pod_sandbox(&pod_config)
        .await
        .context("RunPodSandbox")?;
    let mut spec = sleeper("app", t);
    spec.security = Some(api::LinuxContainerSecurityContext {
        privileged: true,
        namespace_options: Some(api::NamespaceOption {
            network: api::NamespaceMode::Pod as i32,
            pid: api::NamespaceMode::Container as i32,
            ipc: api::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let bind = |name: &str, propagation: api::MountPropagation| api::Mount {
        container_path: format!("/{name}"),
        host_path: src.join(name).display().to_string(),
        propagation: propagation as i32,
        ..Default::default()
    };
    spec.mounts = vec![
        bind("h2c", api::MountPropagation::PropagationHostToContainer),
        bind("bidi", api::MountPropagation::PropagationBidirectional),
    ];
    let cid = c
        .create_container(&id, &spec.config(&pod), &pod_config)
        .await
        .context("CreateContainer")?;
    c.start_container(&cid).await.context("StartContainer")?;

    // host -> container, through both binds
    for d in ["h2c", "bidi"] {
        let at = src.join(d).join("fromhost");
        tmpfs_with(&at, "f", d)?;
        guard.0.push(at);
        let seen = sh(c, &cid, &format!("cat /{d}/fromhost/f")).await?;
        ensure!(seen == d, "{}: /{d}/fromhost/f reads {seen:?}", t.name);
    }
    // container -> host: only through the bidirectional one
    for d in ["bidi", "h2c"] {
        sh(
            c,
            &cid,
            &format!("mkdir -p /{d}/fromctr && mount -t tmpfs none /{d}/fromctr && echo {d} > /{d}/fromctr/f"),
        )
        .await?;
    }
    let from_ctr = src.join("bidi/fromctr/f");
    if wait_until(|| std::fs::read_to_string(&from_ctr).is_ok_and(|s| s.trim() == "bidi"))
        .await
        .is_err()
    {
        let inside = sh(c, &cid, "cat /proc/self/mountinfo").await?;
        anyhow::bail!(
            "{}: the container's mount under /bidi did not reach the host; the container's \
             mounts:\n{inside}",
            t.name
        );
    }
    guard.0.push(src.join("bidi/fromctr"));
    ensure!(
        !src.join("h2c/fromctr/f").exists(),
        "{}: a mount under a HOST_TO_CONTAINER bind reached the host",
        t.name
    );

    c.stop_container(&cid, 0).await?;
    c.remove_container(&cid).await?;
    c.stop_pod_sandbox(&id).await?;
    c.remove_pod_sandbox(&id).await?;
    drop(guard);
    Ok(())
}
