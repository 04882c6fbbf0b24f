//! Hostile or unusual requests, each sent as a client would send it, against both
//! targets: where berth refuses what containerd 1.6 takes, the containerd case records
//! what containerd does instead (a named peer difference, docs/cri.md). Every berth
//! refusal is INVALID_ARGUMENT naming the field and leaves nothing behind; the berth-only
//! tests at the end look at berth's state files for that.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use berth_integration_tests::TestEnv;
use berth_integration_tests::berth_cri::BerthCri;
use berth_integration_tests::containerd::CriNetwork;
use berth_integration_tests::cri::{self, ContainerSpec, CriClient};
use berth_integration_tests::fixtures::Image;
use tonic::Code;

use super::{Target, code_of, remove_pod, run_container, run_pod, sh, sleeper};

cri_cases!(
    containerd,
    super::super::on_containerd,
    unsupported {
        nul_in_pod_metadata: "containerd 1.6 answers UNKNOWN (its CNI call fails: exec: environment \
                              variable contains NUL) and keeps a NOTREADY sandbox it cannot remove \
                              (its CNI DEL fails the same way), which no test can clean up",
    },
    cases {
        log_path_outside_the_log_directory,
        relative_log_directory,
        nul_in_env_value,
        seccomp_localhost_path_must_be_absolute,
        message_size_limits,
        container_user,
        any_authority_from_grpcio,
    }
);

cri_cases!(
    berth,
    super::super::on_berth,
    unsupported {},
    cases {
        log_path_outside_the_log_directory,
        relative_log_directory,
        nul_in_pod_metadata,
        nul_in_env_value,
        seccomp_localhost_path_must_be_absolute,
        message_size_limits,
        container_user,
        any_authority_from_grpcio,
    }
);

/// An INVALID_ARGUMENT whose message names `field`.
fn assert_refused<T: std::fmt::Debug>(r: Result<T, tonic::Status>, field: &str) {
    match r {
        Ok(v) => panic!("expected INVALID_ARGUMENT naming {field}, got {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
            assert!(s.message().contains(field), "{field} not named: {s:?}");
        }
    }
}

/// The containers of sandbox `pod_id`.
async fn containers_of(c: &mut CriClient, pod_id: &str) -> anyhow::Result<usize> {
    Ok(
        c.list_containers(Some(cri::container_filter(None, Some(pod_id), None, &[])))
            .await?
            .len(),
    )
}

/// A log_path that is absolute or climbs with `..`. berth refuses both; containerd 1.6
/// joins them to the log directory (filepath.Join): an absolute path lands inside it,
/// `..` climbs out of it (here only into the test's own directory).
async fn log_path_outside_the_log_directory(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    let pod = t.pod("logpath");
    let id = run_pod(c, &pod).await?;
    let victim = t.logs.join("victim");
    std::fs::write(&victim, "keep\n")?;
    let mut abs = ContainerSpec::new("abs", &t.busybox, &["echo", "written"]);
    abs.log_path = victim.to_string_lossy().into_owned();
    let mut climb = ContainerSpec::new("climb", &t.busybox, &["echo", "written"]);
    climb.log_path = "../climbed.log".into();
    for spec in [&abs, &climb] {
        let r = c
            .create_container(&id, &spec.config(&pod), &pod.config())
            .await;
        if t.name == "berth" {
            assert_refused(r, "log_path");
        } else {
            let cid =
                r.with_context(|| format!("containerd takes log_path {:?}", spec.log_path))?;
            let st = c
                .container_status(&cid, false)
                .await?
                .status
                .context("status")?;
            let want = if spec.name == "abs" {
                pod.log_directory.join(victim.strip_prefix("/")?)
            } else {
                t.logs.join("climbed.log")
            };
            assert_eq!(
                Path::new(&st.log_path),
                want,
                "containerd's joined log path"
            );
            c.remove_container(&cid).await?;
        }
    }
    assert_eq!(containers_of(c, &id).await?, 0);
    assert_eq!(std::fs::read_to_string(&victim)?, "keep\n");
    remove_pod(c, &id).await
}

/// A relative log_directory: berth refuses it at RunPodSandbox; containerd 1.6 takes it.
async fn relative_log_directory(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    let mut pod = t.pod("rellogs");
    pod.log_directory = "var/log/pods/rellogs".into();
    let r = c.run_pod_sandbox(&pod.config()).await;
    if t.name == "berth" {
        assert_refused(r, "log_directory");
        assert!(c.list_pod_sandbox(None).await?.is_empty());
    } else {
        let id = r.context("containerd takes a relative log_directory")?;
        remove_pod(c, &id).await?;
    }
    Ok(())
}

/// A NUL byte in the pod's name, namespace or uid. berth refuses it before anything is
/// made; containerd 1.6 answers UNKNOWN from deep inside (its CNI call cannot pass the
/// NUL in CNI_ARGS) and keeps a sandbox it cannot remove.
async fn nul_in_pod_metadata(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    for field in ["name", "namespace", "uid"] {
        let mut pod = t.pod("nul");
        match field {
            "name" => pod.name = "nu\0l".into(),
            "namespace" => pod.namespace = "defa\0ult".into(),
            _ => pod.uid = format!("{}\0x", pod.uid),
        }
        let r = c.run_pod_sandbox(&pod.config()).await;
        if t.name == "berth" {
            assert_refused(r, &format!("metadata.{field}"));
        } else {
            assert_eq!(code_of(r), Code::Unknown, "containerd, NUL in {field}");
        }
        let left = c.list_pod_sandbox(None).await?;
        assert!(left.is_empty(), "NUL in {field} left {left:?}");
    }
    Ok(())
}

/// A NUL byte in an env value: berth names the value's field; containerd 1.6 takes the
/// container (the NUL fails only when its task starts).
async fn nul_in_env_value(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    let pod = t.pod("envnul");
    let id = run_pod(c, &pod).await?;
    let mut spec = sleeper("app", t);
    spec.env = vec![("A".into(), "1".into()), ("SECRET".into(), "x\0y".into())];
    let r = c
        .create_container(&id, &spec.config(&pod), &pod.config())
        .await;
    if t.name == "berth" {
        assert_refused(r, "envs[1].value");
        assert_eq!(containers_of(c, &id).await?, 0);
    } else {
        let cid = r.context("containerd takes a NUL in an env value")?;
        c.remove_container(&cid).await?;
    }
    remove_pod(c, &id).await
}

/// A Localhost seccomp profile named by a relative path, or by an absolute one that
/// climbs with `..` (to a file that exists). berth refuses both, naming localhost_ref;
/// containerd 1.6 reads the path as given: the relative one is not found (UNKNOWN), the
/// climbing one is used.
async fn seccomp_localhost_path_must_be_absolute(
    c: &mut CriClient,
    t: &Target,
) -> anyhow::Result<()> {
    let profiles = t.logs.join("seccomp");
    std::fs::create_dir_all(profiles.join("sub"))?;
    std::fs::write(
        profiles.join("allow.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#,
    )?;
    let climbing = format!("{}/sub/../allow.json", profiles.display());
    let pod = t.pod("seccomp");
    let id = run_pod(c, &pod).await?;
    for (path, containerd_takes) in [("allow.json", false), (climbing.as_str(), true)] {
        let mut spec = sleeper("app", t);
        let mut sc = spec
            .config(&pod)
            .linux
            .and_then(|l| l.security_context)
            .context("sc")?;
        sc.seccomp = Some(cri::api::SecurityProfile {
            profile_type: cri::api::security_profile::ProfileType::Localhost as i32,
            localhost_ref: path.into(),
        });
        spec.security = Some(sc);
        let r = c
            .create_container(&id, &spec.config(&pod), &pod.config())
            .await;
        match (t.name, containerd_takes) {
            ("berth", _) => assert_refused(r, "seccomp.localhost_ref"),
            (_, true) => {
                let cid = r.with_context(|| format!("containerd takes {path}"))?;
                c.remove_container(&cid).await?;
            }
            (_, false) => assert_eq!(code_of(r), Code::Unknown, "containerd, {path}"),
        }
    }
    assert_eq!(containers_of(c, &id).await?, 0);
    remove_pod(c, &id).await
}

/// kubelet's and containerd's 16 MiB limit: a request just over gRPC's 4 MiB default
/// is served; one over 16 MiB is refused with RESOURCE_EXHAUSTED, and the connection
/// still serves.
async fn message_size_limits(c: &mut CriClient, _t: &Target) -> anyhow::Result<()> {
    let call = |len: usize| cri::api::VersionRequest {
        version: "v".repeat(len),
    };
    c.runtime
        .version(call((4 << 20) + 4096))
        .await
        .context("Version with a 4 MiB + 4 KiB request")?;
    let e = c
        .runtime
        .version(call((16 << 20) + 4096))
        .await
        .expect_err("a request over 16 MiB");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    c.version().await.context("Version after the refusal")?;
    Ok(())
}

/// python's grpcio (scripts/setup.sh installs it), with its default options, as a CRI
/// client in python would dial the socket: `unix:///path` makes grpc-core send the
/// percent-encoded socket path as `:authority`, `unix:path` the same, and a channel
/// option any string. Each Version call is answered.
async fn any_authority_from_grpcio(c: &mut CriClient, _t: &Target) -> anyhow::Result<()> {
    const PYTHON: &str = "/usr/local/lib/berth-test/grpcio-1.85.4/bin/python";
    const SCRIPT: &str = r#"
import sys, grpc
target, authority = sys.argv[1], sys.argv[2]
opts = [("grpc.default_authority", authority)] if authority else []
with grpc.insecure_channel(target, options=opts) as ch:
    version = ch.unary_unary("/runtime.v1.RuntimeService/Version",
                             request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
    try:
        print("OK", version(b"", timeout=10).hex())
    except grpc.RpcError as e:
        print("ERR", e.code(), e.details())
"#;
    let sock = c.socket().display().to_string();
    for (target, authority) in [
        (format!("unix://{sock}"), ""),
        (format!("unix:{sock}"), ""),
        (format!("unix://{sock}"), "a b/c%"),
        (format!("unix://{sock}"), "localhost"),
    ] {
        let out = tokio::process::Command::new(PYTHON)
            .args(["-c", SCRIPT, &target, authority])
            .output()
            .await
            .with_context(|| format!("run {PYTHON} (scripts/setup.sh installs it)"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success() && stdout.starts_with("OK "),
            "grpcio {target} authority {authority:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// ContainerStatus.user: the process's uid, gid and supplementary groups, as the kernel
/// has them (`id` in the container). containerd 1.6 predates the field and answers none.
async fn container_user(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    let pod = t.pod("user");
    let id = run_pod(c, &pod).await?;
    let mut spec = sleeper("app", t);
    let mut sc = spec
        .config(&pod)
        .linux
        .and_then(|l| l.security_context)
        .context("sc")?;
    sc.run_as_user = Some(cri::api::Int64Value { value: 1000 });
    sc.run_as_group = Some(cri::api::Int64Value { value: 3000 });
    sc.supplemental_groups = vec![4000, 5000];
    spec.security = Some(sc);
    let cid = run_container(c, &id, &pod, &spec).await?;
    let st = c
        .container_status(&cid, false)
        .await?
        .status
        .context("status")?;
    if t.name == "berth" {
        let user = st
            .user
            .and_then(|u| u.linux)
            .context("no ContainerStatus.user")?;
        assert_eq!((user.uid, user.gid), (1000, 3000), "{user:?}");
        let mut groups = user.supplemental_groups.clone();
        groups.sort_unstable();
        let mut seen: Vec<i64> = sh(c, &cid, "id -G")
            .await?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        seen.sort_unstable();
        assert_eq!(groups, seen, "reported groups against id -G");
        assert!(
            groups.contains(&4000) && groups.contains(&5000),
            "{groups:?}"
        );
    } else {
        assert_eq!(st.user, None, "containerd 1.6 has no ContainerStatus.user");
    }
    remove_pod(c, &id).await
}

// ---------------------------------------------------------------- berth only

/// A `berth cri` of its own, for tests that look at its state or restart it.
fn with_berth(body: impl FnOnce(&mut BerthCri<'_>, &Target, &TestEnv) -> anyhow::Result<()>) {
    let env = TestEnv::new().expect("env");
    let dir = env.subdir("berth").expect("dir");
    let ipam = env.subdir("ipam").expect("ipam");
    let net = CriNetwork::berth_built(&dir.join("cni-bin"), "10.244.30.0/24", &ipam)
        .expect("berth plugins");
    let mut berth = BerthCri::start(&env, &dir, &net).expect("berth cri");
    let target = Target {
        name: "berth",
        runtime_name: "berth",
        busybox: berth.import(&Image::Busybox).expect("import busybox"),
        httpd: String::new(),
        logs: env.subdir("pod-logs").expect("logs"),
        cgroup_parent: format!("/{}", env.cgroups().name()),
    };
    if let Err(e) = body(&mut berth, &target, &env) {
        panic!(
            "{e:#}\nberth log (tail):\n{}",
            super::tail(&berth.log(), 40)
        );
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// After every refusal above, berth's state holds what it held before: no sandbox or
/// container record, no CNI cache or result file, no pod state (holder socket, netns).
#[test]
fn berth_refusals_leave_nothing_behind() {
    berth_integration_tests::require_root!();
    with_berth(|berth, t, env| {
        let state = |b: &BerthCri<'_>| {
            let mut v = files_under(&b.root.join("sandboxes"));
            v.extend(files_under(&b.root.join("containers")));
            v.extend(files_under(&b.root.join("cni")));
            v.extend(files_under(&env.subdir("berth").expect("dir").join("run")));
            v.sort();
            v
        };
        let before = state(berth);
        block_on(async {
            let mut c = CriClient::connect(&berth.endpoint).await?;
            nul_in_pod_metadata(&mut c, t).await?;
            relative_log_directory(&mut c, t).await
        })?;
        assert_eq!(state(berth), before, "sandbox refusals left files");

        let pod = t.pod("kept");
        let id = block_on(async {
            let mut c = CriClient::connect(&berth.endpoint).await?;
            run_pod(&mut c, &pod).await
        })?;
        let with_pod = state(berth);
        block_on(async {
            let mut c = CriClient::connect(&berth.endpoint).await?;
            for (field, spec) in refused_containers(t) {
                let r = c
                    .create_container(&id, &spec.config(&pod), &pod.config())
                    .await;
                assert_refused(r, field);
            }
            anyhow::Ok(())
        })?;
        assert_eq!(state(berth), with_pod, "container refusals left files");
        block_on(async {
            let mut c = CriClient::connect(&berth.endpoint).await?;
            remove_pod(&mut c, &id).await
        })
    });
}

fn refused_containers(t: &Target) -> Vec<(&'static str, ContainerSpec)> {
    let mut abs = sleeper("abs", t);
    abs.log_path = "/etc/hostname".into();
    let mut climb = sleeper("climb", t);
    climb.log_path = "../../x.log".into();
    let mut env = sleeper("env", t);
    env.env = vec![("K".into(), "v\0".into())];
    let mut seccomp = sleeper("seccomp", t);
    seccomp.security = Some(cri::api::LinuxContainerSecurityContext {
        seccomp: Some(cri::api::SecurityProfile {
            profile_type: cri::api::security_profile::ProfileType::Localhost as i32,
            localhost_ref: "profile.json".into(),
        }),
        ..Default::default()
    });
    vec![
        ("log_path", abs),
        ("log_path", climb),
        ("envs[0].value", env),
        ("seccomp.localhost_ref", seccomp),
    ]
}

/// ContainerStatus.user is kept with the container's record: a restarted daemon still
/// reports it.
#[test]
fn berth_container_user_survives_restart() {
    berth_integration_tests::require_root!();
    with_berth(|berth, t, _| {
        let pod = t.pod("restart");
        let mut spec = sleeper("app", t);
        let mut sc = spec
            .config(&pod)
            .linux
            .and_then(|l| l.security_context)
            .context("sc")?;
        sc.run_as_user = Some(cri::api::Int64Value { value: 1234 });
        sc.run_as_group = Some(cri::api::Int64Value { value: 2345 });
        sc.supplemental_groups = vec![3456];
        spec.security = Some(sc);
        let (id, cid, before) = block_on(async {
            let mut c = CriClient::connect(&berth.endpoint).await?;
            let id = run_pod(&mut c, &pod).await?;
            let cid = run_container(&mut c, &id, &pod, &spec).await?;
            let st = c
                .container_status(&cid, false)
                .await?
                .status
                .context("status")?;
            anyhow::Ok((id, cid, st.user))
        })?;
        let linux = before.clone().and_then(|u| u.linux).context("no user")?;
        assert_eq!((linux.uid, linux.gid), (1234, 2345), "{linux:?}");
        assert!(linux.supplemental_groups.contains(&3456), "{linux:?}");
        berth.restart()?;
        block_on(async {
            let mut c = CriClient::wait_ready(&berth.endpoint, Duration::from_secs(30)).await?;
            let st = c
                .container_status(&cid, false)
                .await?
                .status
                .context("status")?;
            assert_eq!(st.user, before, "after a restart");
            remove_pod(&mut c, &id).await
        })
    });
}
