//! Kubelet cases about what a container is allowed and what it is denied: the node's
//! namespaces (hostPID, hostIPC), capabilities, seccomp and no_new_privs read back from
//! inside; a container the kernel kills for memory; and a kubelet killed while a pod is
//! still starting.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use berth_integration_tests::kubelet::{Kubelet, Pod};
use serde_json::{Value, json};

use super::{IDLE, apply, host_path, lines, pod, sh, shared_dir};

/// The capabilities a container gets when it asks for none: containerd's and Docker's
/// 14 (CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
const DEFAULT_CAPS: u64 = 0xa804_25fb;
const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_ADMIN: u64 = 1 << 12;

/// A container `name` that writes what it is (its capabilities, seccomp mode,
/// no_new_privs, pid and ipc namespaces, and the command name of the node's process
/// `node_pid` if it can see it) to /out/<name>, then idles.
fn prober(k: &Kubelet, name: &str, node_pid: u32) -> Value {
    let script = format!(
        r#"
f=/out/.{name}
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status > $f
echo "pidns: $(readlink /proc/self/ns/pid)" >> $f
echo "ipcns: $(readlink /proc/self/ns/ipc)" >> $f
echo "node: $(cat /proc/{node_pid}/comm 2>/dev/null)" >> $f
mv $f /out/{name}
{IDLE}"#
    );
    let mut c = sh(k, name, &script);
    c["volumeMounts"] = json!([{"name": "out", "mountPath": "/out"}]);
    c
}

/// What [`prober`] wrote: field -> value.
fn findings(out: &Path, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let path = out.join(name);
    berth_integration_tests::util::wait_for(Duration::from_secs(30), || {
        path.exists().then_some(())
    })
    .with_context(|| format!("container {name} never wrote {}", path.display()))?;
    Ok(lines(&path)
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// A capability set as /proc/<pid>/status prints it.
fn caps(mask: u64) -> String {
    format!("{mask:016x}")
}

/// Field `field` of /proc/<pid>/status.
fn proc_status(pid: u32, field: &str) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("/proc/{pid}/status has no {field}"))
}

/// hostPID, hostIPC, capabilities add and drop, seccomp (the pod's profile, a container's
/// own over it, and kubelet's seccompDefault when neither asks), allowPrivilegeEscalation
/// false and privileged, each read back from /proc inside the containers.
pub fn security_context_reaches_the_container(k: &mut Kubelet) -> anyhow::Result<()> {
    let node_pid = k.pid().context("kubelet pid")?;
    let node_ns = |ns: &str| -> anyhow::Result<String> {
        Ok(std::fs::read_link(format!("/proc/{node_pid}/ns/{ns}"))?
            .to_string_lossy()
            .into_owned())
    };
    let (node_pidns, node_ipcns) = (node_ns("pid")?, node_ns("ipc")?);
    // What a privileged container gets: every capability the runtime itself holds (on this
    // machine CAP_SYS_RESOURCE is missing from every bounding set).
    let runtime_pid = k.runtime_pid().unwrap_or(node_pid);
    let all_caps = proc_status(runtime_pid, "CapEff")?;

    let out = shared_dir(k, "security")?;
    let mut tight = prober(k, "tight", node_pid);
    tight["securityContext"] = json!({
        "capabilities": {"add": ["NET_ADMIN"], "drop": ["CHOWN"]},
        "allowPrivilegeEscalation": false,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let plain = prober(k, "plain", node_pid);
    let mut privileged = prober(k, "privileged", node_pid);
    privileged["securityContext"] = json!({"privileged": true});
    apply(
        k,
        "hostns",
        &[pod(
            "hostns",
            json!({
                "hostPID": true,
                "hostIPC": true,
                "securityContext": {"seccompProfile": {"type": "Unconfined"}},
                "containers": [tight, plain, privileged],
                "volumes": [host_path("out", &out)],
                "terminationGracePeriodSeconds": 1,
            }),
        )],
    )?;
    // A pod that asks for nothing.
    apply(
        k,
        "isolated",
        &[pod(
            "isolated",
            json!({
                "containers": [prober(k, "isolated", node_pid)],
                "volumes": [host_path("out", &out)],
                "terminationGracePeriodSeconds": 1,
            }),
        )],
    )?;
    let t = Duration::from_secs(60);
    k.wait_for("hostns", Pod::ready, t)?;
    k.wait_for("isolated", Pod::ready, t)?;

    let mut failed = Vec::new();
    let mut want = |name: &str, field: &str, value: &str| -> anyhow::Result<()> {
        let got = findings(&out, name)?;
        let got = got.get(field).map(String::as_str).unwrap_or("(absent)");
        if got != value {
            failed.push(format!("{name}: {field} is {got:?}, want {value:?}"));
        }
        Ok(())
    };
    // hostPID: the node's pid namespace, where the kubelet's own process is seen.
    for name in ["tight", "plain", "privileged"] {
        want(name, "pidns", &node_pidns)?;
        want(name, "ipcns", &node_ipcns)?;
        want(name, "node", "berth")?;
    }
    // The default capabilities, less CHOWN, plus NET_ADMIN; the bounding set the same.
    let tight_caps = caps(DEFAULT_CAPS & !CAP_CHOWN | CAP_NET_ADMIN);
    want("tight", "CapEff", &tight_caps)?;
    want("tight", "CapBnd", &tight_caps)?;
    want("tight", "NoNewPrivs", "1")?;
    // The container's RuntimeDefault over the pod's Unconfined: filter mode (2).
    want("tight", "Seccomp", "2")?;
    want("plain", "CapEff", &caps(DEFAULT_CAPS))?;
    want("plain", "CapBnd", &caps(DEFAULT_CAPS))?;
    want("plain", "NoNewPrivs", "0")?;
    // The pod's Unconfined.
    want("plain", "Seccomp", "0")?;
    want("privileged", "CapEff", &all_caps)?;
    want("privileged", "CapBnd", &all_caps)?;
    want("privileged", "Seccomp", "0")?;
    want("privileged", "NoNewPrivs", "0")?;
    // No host namespaces; no profile asked for: RuntimeDefault, as kubelet with
    // seccompDefault (berth's default, `--seccomp-default`) sends it.
    let isolated = findings(&out, "isolated")?;
    for (field, node) in [("pidns", &node_pidns), ("ipcns", &node_ipcns)] {
        if isolated.get(field) == Some(node) || !isolated.contains_key(field) {
            failed.push(format!(
                "isolated: {field} is {:?}, the node's is {node:?}",
                isolated.get(field)
            ));
        }
    }
    let mut want = |field: &str, value: &str| {
        let got = isolated
            .get(field)
            .map(String::as_str)
            .unwrap_or("(absent)");
        if got != value {
            failed.push(format!("isolated: {field} is {got:?}, want {value:?}"));
        }
    };
    want("node", "");
    want("Seccomp", "2");
    want("NoNewPrivs", "0");
    want("CapEff", &caps(DEFAULT_CAPS));
    ensure!(failed.is_empty(), "{failed:#?}");
    Ok(())
}

/// A container that allocates past its memory limit is killed by the kernel: terminated
/// with reason OOMKilled and exit code 137; with restartPolicy Never the pod fails, with
/// Always the OOM kill is the restarted container's lastState.
pub fn oom_killed_is_reported(k: &mut Kubelet) -> anyhow::Result<()> {
    let hog = |k: &Kubelet| {
        // dd reads 64 MiB of zeroes into one buffer: anonymous memory four times the
        // limit, which nothing can reclaim (the test machines have no swap).
        let mut c = sh(k, "hog", "exec dd if=/dev/zero of=/dev/null bs=64M count=1");
        c["resources"] = json!({"limits": {"memory": "16Mi", "cpu": "100m"},
                                "requests": {"memory": "16Mi", "cpu": "100m"}});
        c
    };
    apply(
        k,
        "oom",
        &[pod(
            "oom",
            json!({"restartPolicy": "Never", "containers": [hog(k)]}),
        )],
    )?;
    apply(
        k,
        "oom-again",
        &[pod("oom-again", json!({"containers": [hog(k)]}))],
    )?;
    let t = Duration::from_secs(60);
    let p = k.wait_for("oom", |p| p.phase() == "Failed", t)?;
    ensure!(
        p.0["status"]["qosClass"] == "Guaranteed",
        "qosClass {}",
        p.0["status"]["qosClass"]
    );
    let term = p.terminated("hog").context("hog's terminated state")?;
    ensure!(
        term["reason"] == "OOMKilled" && term["exitCode"] == 137,
        "terminated: {term}"
    );
    ensure!(p.restarts("hog") == 0, "restarts {}", p.restarts("hog"));
    ensure!(p.condition("Ready") == "False");

    let p = k.wait_for(
        "oom-again",
        |p| {
            p.restarts("hog") >= 1
                && p.container("hog")
                    .is_some_and(|c| c["lastState"]["terminated"].is_object())
        },
        t,
    )?;
    let last = &p.container("hog").context("hog's status")?["lastState"]["terminated"];
    ensure!(
        last["reason"] == "OOMKilled" && last["exitCode"] == 137,
        "lastState: {last}"
    );
    ensure!(p.phase() == "Running", "phase {}", p.phase());
    Ok(())
}

/// kill -9 of the kubelet while pods are starting: one inside its second init container,
/// one inside its container's postStart hook. The next kubelet completes them: nothing
/// that ran or finished runs again, container ids and restart counts are as before.
pub fn kill9_while_pod_starts_then_completes(k: &mut Kubelet) -> anyhow::Result<()> {
    let dir = shared_dir(k, "midstart")?;
    let with_log = |mut c: Value| {
        c["volumeMounts"] = json!([{"name": "log", "mountPath": "/log"}]);
        c
    };
    let init = json!({
        "initContainers": [
            with_log(sh(k, "first", "echo first >> /log/init")),
            with_log(sh(k, "slow", "echo slow >> /log/init; sleep 8; echo slow done >> /log/init")),
        ],
        "containers": [with_log(sh(k, "app", &format!("echo app >> /log/init-app; {IDLE}")))],
        "volumes": [host_path("log", &dir)],
        "terminationGracePeriodSeconds": 1,
    });
    let mut app = with_log(sh(k, "app", &format!("echo app >> /log/hook-app; {IDLE}")));
    app["lifecycle"] = json!({"postStart": {"exec": {"command": [
        "sh", "-c", "echo hook >> /log/hook; sleep 8; echo hook done >> /log/hook"]}}});
    let hook = json!({
        "containers": [app],
        "volumes": [host_path("log", &dir)],
        "terminationGracePeriodSeconds": 1,
    });
    let (init_log, hook_log) = (dir.join("init"), dir.join("hook"));
    let t = Duration::from_secs(60);
    // The hook pod first, inside its hook; then the other pod, which must get inside its
    // slow init container (shown running) while the hook still runs: one pod's exec holds
    // up no other pod.
    apply(k, "hook", &[pod("hook", hook)])?;
    berth_integration_tests::util::wait_for(t, || (lines(&hook_log).len() == 1).then_some(()))
        .context("the postStart hook never began")?;
    apply(k, "init", &[pod("init", init)])?;
    let before = k.wait_for(
        "init",
        |p| p.running("slow") && lines(&init_log).len() == 2,
        t,
    )?;
    ensure!(
        lines(&hook_log) == ["hook"],
        "the other pod waited for the hook: hook {:?}",
        lines(&hook_log)
    );
    k.kill9();
    // Neither the slow init container nor the hook had finished.
    ensure!(
        lines(&init_log) == ["first", "slow"] && lines(&hook_log) == ["hook"],
        "the kill did not land mid-start: init {:?}, hook {:?}",
        lines(&init_log),
        lines(&hook_log)
    );
    k.restart()?;

    let init = k.wait_for("init", Pod::ready, t)?;
    let hook = k.wait_for("hook", Pod::ready, t)?;
    // Wait a few syncs: a re-run would show up in the files or the counts.
    std::thread::sleep(Duration::from_secs(3));
    let (init, hook) = (k.pod("init").unwrap_or(init), k.pod("hook").unwrap_or(hook));
    // The slow init container ran to its end, once; the pod's container started after it.
    ensure!(
        lines(&init_log) == ["first", "slow", "slow done"],
        "init containers: {:?}",
        lines(&init_log)
    );
    ensure!(
        lines(&dir.join("init-app")) == ["app"],
        "app of init: {:?}",
        lines(&dir.join("init-app"))
    );
    // The hook ran once (whether it ran to its end is the runtime's: containerd ends an
    // ExecSync whose caller went away).
    ensure!(
        lines(&hook_log).iter().filter(|l| *l == "hook").count() == 1,
        "postStart ran again: {:?}",
        lines(&hook_log)
    );
    ensure!(
        lines(&dir.join("hook-app")) == ["app"],
        "app of hook started again: {:?}",
        lines(&dir.join("hook-app"))
    );
    for (p, name) in [
        (&init, "first"),
        (&init, "slow"),
        (&init, "app"),
        (&hook, "app"),
    ] {
        ensure!(
            p.restarts(name) == 0,
            "{} {name}: restartCount {}",
            p.uid(),
            p.restarts(name)
        );
    }
    for name in ["first", "slow"] {
        let term = init.terminated(name).context("init container status")?;
        ensure!(
            term["reason"] == "Completed" && term["exitCode"] == 0,
            "{name}: {term}"
        );
    }
    ensure!(init.running("app") && hook.running("app"));
    ensure!(init.condition("Initialized") == "True" && hook.phase() == "Running");
    // The init containers the first kubelet created are the ones the second one shows.
    for name in ["first", "slow"] {
        let id = before.container_id(name);
        ensure!(
            !id.is_empty() && id == init.container_id(name),
            "{name}: container {id:?} replaced by {:?}",
            init.container_id(name)
        );
    }
    Ok(())
}
