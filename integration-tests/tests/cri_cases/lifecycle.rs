//! Pod deletion and garbage collection in kubelet's own call orders, a pod's per-pod
//! process killed under running containers, and stops of unknown ids: cases for
//! `cri_cases!` (run against containerd and berth).

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_integration_tests::cri::{self, ContainerState, CriClient};
use tonic::Code;

use super::{Target, code_of, run_container, run_pod, sandbox_pid, sleeper, wait_exited};

/// The pid of a container's process, from the verbose ContainerStatus (both runtimes put
/// it in info["info"].pid).
async fn container_pid(c: &mut CriClient, id: &str) -> anyhow::Result<i32> {
    let st = c.container_status(id, true).await?;
    let info: serde_json::Value =
        serde_json::from_str(st.info.get("info").context("no verbose info")?)?;
    info["pid"]
        .as_i64()
        .filter(|p| *p > 0)
        .map(|p| p as i32)
        .context("no pid in the verbose info")
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

fn parent_of(pid: i32) -> anyhow::Result<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, rest) = s.rsplit_once(')').context("stat")?;
    rest.split_whitespace()
        .nth(1)
        .context("ppid")?
        .parse()
        .context("ppid")
}

async fn wait_gone(pid: i32) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > deadline {
            bail!("process {pid} still runs");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// What kubelet's pod cgroup manager does to a terminated pod (its Destroy): SIGKILL
/// to every process left in the pod's cgroup, in every hierarchy. berth's holder is in
/// there (containerd's pause container too; its shim is not).
fn kill_pod_cgroup(parent: &str) -> usize {
    let rel = parent.trim_start_matches('/');
    let mut killed = 0;
    for h in berth_integration_tests::cgroup::hierarchies() {
        let mut dirs = vec![h.mount.join(rel)];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            dirs.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    killed += 1;
                }
            }
        }
    }
    killed
}

async fn containers_of(
    c: &mut CriClient,
    pod_id: &str,
) -> anyhow::Result<Vec<cri::api::Container>> {
    Ok(
        c.list_containers(Some(cri::container_filter(None, Some(pod_id), None, &[])))
            .await?,
    )
}

/// kubelet's killPod order: StopPodSandbox (which kills the containers), then
/// StopContainer again on each of its containers; both succeed and the containers read
/// as exited by SIGKILL.
pub async fn stop_sandbox_then_stop_containers(
    c: &mut CriClient,
    t: &Target,
) -> anyhow::Result<()> {
    let pod = t.pod("stop-order");
    let id = run_pod(c, &pod).await?;
    let a = run_container(c, &id, &pod, &sleeper("a", t)).await?;
    let b = run_container(c, &id, &pod, &sleeper("b", t)).await?;
    let pid = container_pid(c, &a).await?;
    c.stop_pod_sandbox(&id).await.context("StopPodSandbox")?;
    wait_gone(pid).await?;
    for cid in [&a, &b] {
        c.stop_container(cid, 10)
            .await
            .with_context(|| format!("StopContainer {cid} after StopPodSandbox"))?;
        let st = wait_exited(c, cid, Duration::from_secs(10)).await?;
        assert_eq!((st.exit_code, st.reason.as_str()), (137, "Error"), "{st:?}");
        assert!(st.finished_at >= st.started_at, "{st:?}");
    }
    c.remove_pod_sandbox(&id)
        .await
        .context("RemovePodSandbox")?;
    ensure!(containers_of(c, &id).await?.is_empty(), "containers left");
    Ok(())
}

/// RemovePodSandbox of a stopped pod whose containers were never removed: they go with
/// it, and kubelet's later StopContainer/RemoveContainer of them do not fail.
pub async fn remove_sandbox_with_containers_left(
    c: &mut CriClient,
    t: &Target,
) -> anyhow::Result<()> {
    let pod = t.pod("remove-left");
    let id = run_pod(c, &pod).await?;
    let running = run_container(c, &id, &pod, &sleeper("running", t)).await?;
    let exited = run_container(
        c,
        &id,
        &pod,
        &cri::ContainerSpec::new("exited", &t.busybox, &["true"]),
    )
    .await?;
    wait_exited(c, &exited, Duration::from_secs(10)).await?;
    let created = c
        .create_container(&id, &sleeper("created", t).config(&pod), &pod.config())
        .await?;
    let pid = container_pid(c, &running).await?;
    c.stop_pod_sandbox(&id).await.context("StopPodSandbox")?;
    c.remove_pod_sandbox(&id)
        .await
        .context("RemovePodSandbox")?;
    wait_gone(pid).await?;
    let all = c.list_containers(None).await?;
    for cid in [&running, &exited, &created] {
        ensure!(
            all.iter().all(|x| &x.id != cid),
            "container {cid} listed after RemovePodSandbox"
        );
        assert_eq!(
            code_of(c.container_status(cid, false).await),
            Code::NotFound
        );
        assert_eq!(
            c.remove_container(cid).await.map_err(|s| s.code()),
            Ok(()),
            "RemoveContainer of a removed container"
        );
    }
    // containerd 1.6 answers NOT_FOUND for a stop of an id it does not know (its
    // StopContainer looks the container up first); the CRI calls StopContainer
    // idempotent, and berth answers OK (docs/cri.md).
    let want = t.code(Code::NotFound, Code::Ok);
    let got = match c.stop_container(&running, 0).await {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    };
    assert_eq!(got, want, "StopContainer of a removed container");
    Ok(())
}

/// kubelet's garbage collection after a pod was stopped: the pod's cgroup destroyed
/// (every process in it killed), then StopContainer and RemoveContainer on every
/// container left (exited or killed), then RemovePodSandbox.
pub async fn gc_exited_containers(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    let pod = t.pod("gc");
    let id = run_pod(c, &pod).await?;
    let done = run_container(
        c,
        &id,
        &pod,
        &cri::ContainerSpec::new("done", &t.busybox, &["sh", "-c", "exit 3"]),
    )
    .await?;
    let sleeping = run_container(c, &id, &pod, &sleeper("sleeping", t)).await?;
    wait_exited(c, &done, Duration::from_secs(10)).await?;
    c.stop_pod_sandbox(&id).await.context("StopPodSandbox")?;
    let left = containers_of(c, &id).await?;
    assert_eq!(left.len(), 2, "{left:?}");
    for x in &left {
        assert_eq!(x.state, ContainerState::ContainerExited as i32, "{x:?}");
    }
    let st = wait_exited(c, &done, Duration::from_secs(1)).await?;
    assert_eq!(
        st.exit_code, 3,
        "the exit code from before the stop stays: {st:?}"
    );
    let killed = kill_pod_cgroup(&pod.cgroup_parent);
    // containerd's StopPodSandbox already stopped its pause container; berth's holder
    // lives on until RemovePodSandbox, so kubelet kills it here.
    ensure!(
        killed > 0 || t.name == "containerd",
        "nothing in the pod cgroup {}",
        pod.cgroup_parent
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = wait_exited(c, &done, Duration::from_secs(1)).await?;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (3, "Error"),
        "the exit code stays once the pod's cgroup is emptied: {st:?}"
    );
    let st = wait_exited(c, &sleeping, Duration::from_secs(1)).await?;
    assert_eq!(st.exit_code, 137, "killed by StopPodSandbox: {st:?}");
    for cid in [&done, &sleeping] {
        c.stop_container(cid, 0).await.context("GC StopContainer")?;
        c.remove_container(cid)
            .await
            .context("GC RemoveContainer")?;
    }
    ensure!(containers_of(c, &id).await?.is_empty(), "containers left");
    c.remove_pod_sandbox(&id)
        .await
        .context("RemovePodSandbox")?;
    Ok(())
}

/// The process that holds a pod's containers dies with SIGKILL under running containers
/// (berth: the pod's holder; containerd: the pod's shim, the parent of its pause
/// container). Its containers read as exited with 255, reason Error (containerd 1.6's
/// CRI plugin records that when its wait on a task fails), their processes are gone, and
/// kubelet's stop/remove sequence cleans up without an error.
pub async fn holder_killed_under_running_containers(
    c: &mut CriClient,
    t: &Target,
) -> anyhow::Result<()> {
    let pod = t.pod("holder-killed");
    let id = run_pod(c, &pod).await?;
    let a = run_container(c, &id, &pod, &sleeper("a", t)).await?;
    let b = run_container(c, &id, &pod, &sleeper("b", t)).await?;
    let pids = [container_pid(c, &a).await?, container_pid(c, &b).await?];
    let sandbox = sandbox_pid(c, &id).await? as i32;
    let victim = if t.name == "containerd" {
        parent_of(sandbox)?
    } else {
        sandbox
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    for cid in [&a, &b] {
        let st = wait_exited(c, cid, Duration::from_secs(20)).await?;
        assert_eq!((st.exit_code, st.reason.as_str()), (255, "Error"), "{st:?}");
        assert!(st.finished_at > st.started_at, "{st:?}");
        // The same on a second read: the exit was recorded, not made up per call.
        let again = wait_exited(c, cid, Duration::from_secs(1)).await?;
        assert_eq!(
            (again.exit_code, again.finished_at),
            (st.exit_code, st.finished_at)
        );
    }
    for pid in pids {
        wait_gone(pid).await?;
    }
    let listed = containers_of(c, &id).await?;
    assert_eq!(listed.len(), 2);
    for x in &listed {
        assert_eq!(x.state, ContainerState::ContainerExited as i32, "{x:?}");
    }
    let sb = c
        .pod_sandbox_status(&id, false)
        .await?
        .status
        .context("status")?;
    assert_eq!(sb.state, cri::PodSandboxState::SandboxNotready as i32);
    // kubelet: killPod, then GC.
    for cid in [&a, &b] {
        c.stop_container(cid, 10).await.context("StopContainer")?;
    }
    c.stop_pod_sandbox(&id).await.context("StopPodSandbox")?;
    for cid in [&a, &b] {
        c.stop_container(cid, 0).await.context("GC StopContainer")?;
        c.remove_container(cid)
            .await
            .context("GC RemoveContainer")?;
    }
    c.remove_pod_sandbox(&id)
        .await
        .context("RemovePodSandbox")?;
    ensure!(containers_of(c, &id).await?.is_empty(), "containers left");
    ensure!(
        c.list_pod_sandbox(None).await?.iter().all(|s| s.id != id),
        "sandbox left"
    );
    Ok(())
}

/// StopPodSandbox and StopContainer of ids the runtime never had. The CRI calls both
/// idempotent and berth answers OK; containerd 1.6 answers NOT_FOUND (it looks the id
/// up before anything else), a peer difference docs/cri.md names.
pub async fn stop_unknown_ids(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    let unknown = "4f1c1dd0a7b2e0c45d7f1e3b9a8c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c";
    let want = t.code(Code::NotFound, Code::Ok);
    let sb = match c.stop_pod_sandbox(unknown).await {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    };
    let ct = match c.stop_container(unknown, 0).await {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    };
    assert_eq!((sb, ct), (want, want), "StopPodSandbox, StopContainer");
    // Removal of unknown ids is OK on both.
    c.remove_pod_sandbox(unknown).await?;
    c.remove_container(unknown).await?;
    Ok(())
}

// ---------------------------------------------------------------- berth's log

/// The spans of one line of `berth cri`'s log (tracing's text format,
/// `<time> <LEVEL> span{k=v ..}:span{..}: target: message k=v ..`), outermost first,
/// each with its fields; and the fields of the event itself.
type Fields = Vec<(String, String)>;

fn parse_line(line: &str) -> (Vec<(String, Fields)>, Fields) {
    let mut words = line.split_whitespace();
    let _time = words.next();
    let Some(level) = words.next() else {
        return (vec![], vec![]);
    };
    let Some(at) = line.find(level) else {
        return (vec![], vec![]);
    };
    let mut rest = line[at + level.len()..].trim_start();
    let mut spans = vec![];
    while let Some(open) = rest.find('{') {
        let name = &rest[..open];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            break;
        }
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        spans.push((name.to_string(), fields(&rest[open + 1..open + close])));
        rest = rest[open + close + 1..]
            .trim_start_matches(':')
            .trim_start();
    }
    (spans, fields(rest))
}

/// `k=v` words.
fn fields(s: &str) -> Fields {
    s.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Two pods created and deleted at once, three times, in kubelet's order (their pod cgroups
/// destroyed after StopPodSandbox, which kills the holders): every line of `berth cri`'s
/// log names objects of one pod only (its sandbox id, its pod name, its containers' ids
/// and names, in spans and fields alike), no span is nested in itself, and a normal
/// deletion logs no warning.
#[test]
fn berth_log_lines_name_their_own_pod() {
    berth_integration_tests::require_root!();
    use berth_integration_tests::TestEnv;
    use berth_integration_tests::berth_cri::BerthCri;
    use berth_integration_tests::containerd::CriNetwork;
    use berth_integration_tests::fixtures::Image;
    use std::collections::{BTreeSet, HashMap};

    let env = TestEnv::new().expect("env");
    let dir = env.subdir("berth").expect("dir");
    let ipam = env.subdir("ipam").expect("ipam");
    let net = CriNetwork::berth_built(&dir.join("cni-bin"), "10.244.30.0/24", &ipam)
        .expect("berth plugins");
    let berth = BerthCri::start(&env, &dir, &net).expect("berth cri");
    let t = Target {
        name: "berth",
        runtime_name: "berth",
        busybox: berth.import(&Image::Busybox).expect("import busybox"),
        httpd: String::new(),
        logs: env.subdir("pod-logs").expect("logs"),
        cgroup_parent: format!("/{}", env.cgroups().name()),
    };
    // Which pod each id and name belongs to.
    let mut owner: HashMap<String, String> = HashMap::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result: anyhow::Result<()> =
        rt.block_on(async {
            for round in 0..3 {
                let pods = [
                    t.pod(&format!("left{round}")),
                    t.pod(&format!("right{round}")),
                ];
                let one = |pod: cri::PodSpec| {
                    let endpoint = berth.endpoint.clone();
                    let image = t.busybox.clone();
                    async move {
                        let mut c = CriClient::connect(&endpoint).await?;
                        let id = run_pod(&mut c, &pod).await?;
                        let spec = cri::ContainerSpec::new("app", &image, &["sleep", "3600"]);
                        let cid = run_container(&mut c, &id, &pod, &spec).await?;
                        let side = cri::ContainerSpec::new("side", &image, &["sleep", "3600"]);
                        let side = run_container(&mut c, &id, &pod, &side).await?;
                        anyhow::Ok((c, pod, id, vec![cid, side]))
                    }
                };
                let (a, b) = tokio::join!(one(pods[0].clone()), one(pods[1].clone()));
                let mut made = vec![a?, b?];
                for (_, pod, id, cids) in &made {
                    let pod_name = format!("{}_{}_{}_0", pod.name, pod.namespace, pod.uid);
                    owner.insert(id.clone(), pod.name.clone());
                    owner.insert(pod_name, pod.name.clone());
                    for cid in cids {
                        owner.insert(cid.clone(), pod.name.clone());
                    }
                    for n in ["app", "side"] {
                        owner.insert(
                            format!("{n}_{}_{}_{}_0", pod.name, pod.namespace, pod.uid),
                            pod.name.clone(),
                        );
                    }
                }
                // Deleted at once, in kubelet's order.
                let del = |(mut c, pod, id, cids): (
                    CriClient,
                    cri::PodSpec,
                    String,
                    Vec<String>,
                )| async move {
                    for cid in &cids {
                        c.stop_container(cid, 2).await?;
                    }
                    c.stop_pod_sandbox(&id).await?;
                    kill_pod_cgroup(&pod.cgroup_parent);
                    for cid in &cids {
                        c.stop_container(cid, 0).await?;
                        c.remove_container(cid).await?;
                    }
                    c.remove_pod_sandbox(&id).await?;
                    anyhow::Ok(())
                };
                let b = made.pop().context("two pods")?;
                let a = made.pop().context("two pods")?;
                let (ra, rb) = tokio::join!(del(a), del(b));
                ra?;
                rb?;
            }
            Ok(())
        });
    let log = berth.log();
    if let Err(e) = result {
        panic!("{e:#}\nlog:\n{log}");
    }
    let mut checked = 0;
    for line in log.lines() {
        let (spans, event) = parse_line(line);
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR "),
            "a warning on normal pods:\n{line}\nlog:\n{log}"
        );
        let names: Vec<&str> = spans.iter().map(|(n, _)| n.as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "a span nested in itself:\n{line}"
        );
        let pods: BTreeSet<&String> = spans
            .iter()
            .flat_map(|(_, f)| f.iter())
            .chain(event.iter())
            .filter(|(k, _)| matches!(k.as_str(), "sandbox" | "pod" | "container" | "name"))
            .filter_map(|(_, v)| owner.get(v))
            .collect();
        assert!(
            pods.len() <= 1,
            "a line naming objects of two pods ({pods:?}):\n{line}"
        );
        checked += usize::from(!pods.is_empty());
    }
    assert!(checked >= 8, "only {checked} lines name a pod:\n{log}");
}

/// A container whose program cannot be executed: missing (ENOENT), not executable
/// (EACCES), or given an argument longer than the kernel takes (E2BIG). As containerd
/// with runc: CreateContainer succeeds, StartContainer fails naming why, and the
/// container reads exited with 128, reason StartError and that message.
///
/// containerd answers the failed start with UNKNOWN, berth with FAILED_PRECONDITION.
/// runc checks only that the program exists and is executable before it reports the
/// container created; an argument list too long fails its execve after the start, and
/// containerd then reports a container that started and exited 1 with no message. berth
/// checks that too before it makes the container, and reports it as the other two
/// (docs/cri.md).
pub async fn exec_failures(c: &mut CriClient, t: &Target) -> anyhow::Result<()> {
    let pod = t.pod("exec-fail");
    let id = run_pod(c, &pod).await?;
    let long = "x".repeat(200_000);
    for (name, cmd, why) in [
        (
            "missing",
            vec!["/no/such/program"],
            "no such file or directory",
        ),
        ("notexec", vec!["/etc/passwd"], "permission denied"),
        (
            "toolong",
            vec!["echo", long.as_str()],
            "argument list too long",
        ),
    ] {
        let spec = cri::ContainerSpec::new(name, &t.busybox, &cmd);
        let cid = c
            .create_container(&id, &spec.config(&pod), &pod.config())
            .await
            .with_context(|| format!("CreateContainer {name}"))?;
        let started = c.start_container(&cid).await;
        if name == "toolong" && t.name == "containerd" {
            ensure!(started.is_ok(), "{started:?}");
            let st = wait_exited(c, &cid, Duration::from_secs(10)).await?;
            assert_eq!(
                (st.exit_code, st.reason.as_str(), st.message.as_str()),
                (1, "Error", ""),
                "{st:?}"
            );
            continue;
        }
        let err = match started {
            Ok(()) => bail!("StartContainer {name} succeeded"),
            Err(s) => s,
        };
        assert_eq!(
            err.code(),
            t.code(Code::Unknown, Code::FailedPrecondition),
            "{err:?}"
        );
        let named = format!("exec: \"{}\"", cmd[0]);
        let says = |m: &str| m.contains(&named) && m.to_lowercase().contains(why);
        ensure!(says(err.message()), "StartContainer {name}: {err:?}");
        let st = wait_exited(c, &cid, Duration::from_secs(1)).await?;
        assert_eq!(
            (st.exit_code, st.reason.as_str()),
            (128, "StartError"),
            "{st:?}"
        );
        ensure!(says(&st.message), "status message of {name}: {st:?}");
        assert!(
            st.started_at == 0 && st.finished_at >= st.created_at,
            "{st:?}"
        );
        let listed = c
            .list_containers(Some(cri::container_filter(Some(&cid), None, None, &[])))
            .await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state, ContainerState::ContainerExited as i32);
        c.stop_container(&cid, 0).await.context("StopContainer")?;
        c.remove_container(&cid).await.context("RemoveContainer")?;
    }
    c.stop_pod_sandbox(&id).await?;
    c.remove_pod_sandbox(&id).await?;
    Ok(())
}
