//! Image volumes (Kubernetes ImageVolume) over CRI, as kubelet 1.33 sends them: a
//! `Mount` with `image.image` set to the image's ref (what PullImage returned), `readonly`
//! set, `host_path` empty, and `image_sub_path` for a volumeMount's subPath. Against
//! `berth cri` (the image mounted read-only, sub paths, refusals by field, the image held
//! while in use, the view cleaned up on removal, across a kill -9, and as an orphan), and
//! what containerd 1.6, which predates the field, does with the same request.

use std::path::Path;

use anyhow::{Context, ensure};
use berth_integration_tests::TestEnv;
use berth_integration_tests::berth_cri::BerthCri;
use berth_integration_tests::containerd::{CriNetwork, CriPeer};
use berth_integration_tests::cri::{ContainerSpec, CriClient, PodSpec, api as cri};
use berth_integration_tests::fixtures::Image;
use tonic::Code;

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn pod(env: &TestEnv, name: &str) -> PodSpec {
    let logs = env.dir().join("pod-logs").join(name);
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut p = PodSpec::new(name, &logs, "");
    p.cgroup_parent = format!("/{}/pod{}", env.cgroups().name(), p.uid);
    p
}

/// An image volume mount as kubelet builds it.
fn image_mount(path: &str, image: &str, sub: &str) -> cri::Mount {
    cri::Mount {
        container_path: path.into(),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        image_sub_path: sub.into(),
        readonly: true,
        ..Default::default()
    }
}

async fn sh(c: &mut CriClient, id: &str, script: &str) -> anyhow::Result<(i32, String)> {
    let r = c
        .exec_sync(id, &["sh", "-c", script], 10)
        .await
        .with_context(|| format!("ExecSync {script:?}"))?;
    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&r.stderr));
    Ok((r.exit_code, out))
}

/// The views berth keeps for `container` (dirs under the image store's `views/`).
fn views_of(berth: &BerthCri, container: &str) -> Vec<String> {
    std::fs::read_dir(berth.root.join("images/views").join(container))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points under the image store's views/, as the daemon's mount namespace sees them.
fn view_mounts(berth: &BerthCri) -> Vec<String> {
    let views = berth.root.join("images/views");
    let pid = berth.pid().expect("berth runs");
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(&views))
        .map(String::from)
        .collect()
}

#[test]
fn image_volumes_on_berth() {
    berth_integration_tests::require_root!();
    let env = TestEnv::new().expect("env");
    let dir = env.subdir("berth").expect("dir");
    let ipam = env.subdir("ipam").expect("ipam");
    let net = CriNetwork::berth_built(&dir.join("cni-bin"), "10.244.31.0/24", &ipam)
        .expect("berth plugins");
    let mut berth = BerthCri::start(&env, &dir, &net).expect("berth cri");
    let busybox = berth.import(&Image::Busybox).expect("busybox");
    let data = berth.import(&Image::MultiLayer).expect("multilayer");
    let endpoint = berth.endpoint.clone();
    let result = block_on(async {
        let mut c = CriClient::connect(&endpoint).await?;
        let id = c
            .image_status(&data, false)
            .await?
            .image
            .context("the volume image is stored")?
            .id;
        let p = pod(&env, "vol");
        let pod_id = c.run_pod_sandbox(&p.config()).await?;

        // Refusals, each naming the field; none leaves a view behind.
        let mut rw = image_mount("/vol", &id, "");
        rw.readonly = false;
        let cases = [
            (rw, Code::InvalidArgument, "mounts[0].readonly"),
            (
                image_mount("/vol", &id, "../../etc"),
                Code::InvalidArgument,
                "mounts[0].image_sub_path",
            ),
            (
                image_mount("/vol", &id, "/data"),
                Code::InvalidArgument,
                "mounts[0].image_sub_path",
            ),
            (
                image_mount("/vol", &id, "data/missing"),
                Code::InvalidArgument,
                "mounts[0].image_sub_path",
            ),
            (
                image_mount("/vol", "berth.test/never-pulled:1", ""),
                Code::NotFound,
                "mounts[0].image.image",
            ),
        ];
        for (i, (m, code, field)) in cases.into_iter().enumerate() {
            let mut spec = ContainerSpec::new(&format!("bad{i}"), &busybox, &["sleep", "3600"]);
            spec.mounts = vec![m];
            let e = c
                .create_container(&pod_id, &spec.config(&p), &p.config())
                .await
                .expect_err("refused");
            ensure!(e.code() == code, "case {i}: {e:?}");
            ensure!(e.message().contains(field), "case {i} names {field}: {e:?}");
        }
        ensure!(
            !berth.root.join("images/views").exists()
                || std::fs::read_dir(berth.root.join("images/views"))?.count() == 0,
            "a refused create left a view"
        );

        // The whole image by tag, and its data/ dir by ID as a sub path.
        let mut spec = ContainerSpec::new("app", &busybox, &["sleep", "3600"]);
        spec.mounts = vec![
            image_mount("/vol", &data, ""),
            image_mount("/sub", &id, "data"),
        ];
        let cid = c
            .create_container(&pod_id, &spec.config(&p), &p.config())
            .await
            .context("CreateContainer with image volumes")?;
        c.start_container(&cid).await?;
        let (code, out) = sh(&mut c, &cid, "cat /vol/data/keep /sub/keep /sub/dir/a").await?;
        ensure!(code == 0 && out == "v2\nv2\na\n", "{code}: {out}");
        let (code, out) = sh(&mut c, &cid, "test ! -e /vol/data/gone && ls /vol/opq").await?;
        ensure!(
            code == 0 && out == "new\n",
            "the layers merged as an image: {out}"
        );
        let (code, out) = sh(&mut c, &cid, "echo x > /vol/written; echo x > /sub/w2").await?;
        ensure!(code != 0 && out.contains("Read-only"), "writable: {out}");
        let (_, mounts) = sh(&mut c, &cid, "grep -E ' /(vol|sub) ' /proc/mounts").await?;
        for line in mounts.lines() {
            let opts = line.split(' ').nth(3).unwrap_or("");
            ensure!(
                opts.split(',').any(|o| o == "ro")
                    && ["nosuid", "nodev", "noexec"]
                        .iter()
                        .all(|f| opts.contains(f)),
                "{line}"
            );
        }
        ensure!(mounts.lines().count() == 2, "{mounts}");

        // ContainerStatus reports each volume's image as asked and the image it resolved to.
        let st = c
            .container_status(&cid, false)
            .await?
            .status
            .context("status")?;
        let images: Vec<_> = st
            .mounts
            .iter()
            .map(|m| {
                let s = m.image.clone().unwrap_or_default();
                (m.container_path.clone(), s.image, s.image_ref)
            })
            .collect();
        ensure!(
            images
                == vec![
                    ("/vol".to_string(), data.clone(), id.clone()),
                    ("/sub".to_string(), id.clone(), id.clone()),
                ],
            "{images:?}"
        );
        ensure!(st.mounts[1].image_sub_path == "data", "{:?}", st.mounts[1]);

        // The image is in use as a volume: RemoveImage is refused as for a rootfs.
        let e = c.remove_image(&data).await.expect_err("in use");
        ensure!(e.code() == Code::FailedPrecondition, "{e:?}");
        ensure!(e.message().contains("image volume"), "{e:?}");
        ensure!(views_of(&berth, &cid).len() == 2);
        ensure!(view_mounts(&berth).len() == 2, "{:?}", view_mounts(&berth));
        Ok::<_, anyhow::Error>((pod_id, cid, id))
    });
    let (pod_id, cid, id) = result.unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", berth.log()));

    // kill -9 and restart: the views stay for the container, which still reads them.
    berth.restart().expect("restart");
    let endpoint = berth.endpoint.clone();
    let result = block_on(async {
        let mut c = CriClient::connect(&endpoint).await?;
        ensure!(views_of(&berth, &cid).len() == 2);
        let (code, out) = sh(&mut c, &cid, "cat /vol/data/keep").await?;
        ensure!(code == 0 && out == "v2\n", "after restart: {out}");
        // RemoveContainer unmounts and removes them.
        c.stop_container(&cid, 0).await?;
        c.remove_container(&cid).await?;
        ensure!(
            views_of(&berth, &cid).is_empty(),
            "views left after RemoveContainer"
        );
        ensure!(view_mounts(&berth).is_empty(), "{:?}", view_mounts(&berth));

        // One more, orphaned: its record goes while berth is down (as if removed by hand).
        let p = pod(&env, "vol");
        let bb = berth_busybox(&mut c).await?;
        let mut spec = ContainerSpec::new("orphan", &bb, &["sleep", "3600"]);
        spec.mounts = vec![image_mount("/vol", &id, "")];
        let oid = c
            .create_container(&pod_id, &spec.config(&p), &p.config())
            .await?;
        ensure!(views_of(&berth, &oid).len() == 1);
        Ok::<_, anyhow::Error>(oid)
    });
    let oid = result.unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", berth.log()));
    berth.kill9();
    std::fs::remove_file(berth.root.join("containers").join(format!("{oid}.json")))
        .expect("remove the record");
    berth.restart().expect("restart");
    let result = block_on(async {
        let mut c = CriClient::connect(&endpoint).await?;
        // Served only once recovery is done.
        c.version().await?;
        ensure!(
            views_of(&berth, &oid).is_empty(),
            "recovery left an orphaned view"
        );
        ensure!(view_mounts(&berth).is_empty(), "{:?}", view_mounts(&berth));
        // No user left: the image goes.
        c.remove_image(&id).await?;
        ensure!(c.image_status(&id, false).await?.image.is_none());
        c.stop_pod_sandbox(&pod_id).await?;
        c.remove_pod_sandbox(&pod_id).await?;
        Ok::<_, anyhow::Error>(())
    });
    result.unwrap_or_else(|e| panic!("{e:#}\nlog:\n{}", berth.log()));
}

async fn berth_busybox(c: &mut CriClient) -> anyhow::Result<String> {
    let list = c.list_images(None).await?;
    list.iter()
        .flat_map(|i| &i.repo_tags)
        .find(|t| t.contains("busybox"))
        .cloned()
        .context("busybox imported")
}

/// containerd 1.6 predates the `image` and `image_sub_path` fields of Mount (its CRI API
/// has neither, so it drops them): it reads an image volume as a bind mount with an
/// empty host path, fails to make that path and answers UNKNOWN. A peer difference:
/// berth mounts the image ([`image_volumes_on_berth`]); containerd has image volumes
/// from 2.1 on.
#[test]
fn containerd_1_6_has_no_image_volumes() {
    berth_integration_tests::require_root!();
    let env = TestEnv::new().expect("env");
    let dir = env.subdir("containerd").expect("dir");
    let ipam = env.subdir("ipam").expect("ipam");
    let net = CriNetwork::reference("10.244.32.0/24", &ipam);
    let peer = CriPeer::start(&env, &dir, &net).expect("containerd with CRI");
    let busybox = peer.import(&Image::Busybox).expect("busybox");
    let data = peer.import(&Image::MultiLayer).expect("multilayer");
    let endpoint = peer.endpoint.clone();
    let outcome = block_on(async {
        let mut c = CriClient::connect(&endpoint).await?;
        let p = pod(&env, "vol");
        let pod_id = c.run_pod_sandbox(&p.config()).await?;
        let mut spec = ContainerSpec::new("app", &busybox, &["sleep", "3600"]);
        spec.mounts = vec![image_mount("/vol", &data, "")];
        let r = c
            .create_container(&pod_id, &spec.config(&p), &p.config())
            .await;
        c.stop_pod_sandbox(&pod_id).await?;
        c.remove_pod_sandbox(&pod_id).await?;
        let e = r
            .err()
            .context("containerd 1.6 created a container with an image volume")?;
        ensure!(e.code() == Code::Unknown, "{e:?}");
        ensure!(e.message().contains(r#"failed to mkdir """#), "{e:?}");
        Ok::<_, anyhow::Error>(())
    });
    outcome.unwrap_or_else(|e| panic!("{e:#}\n{}", peer.containerd().log()));
}
