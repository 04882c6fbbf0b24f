//! Kubelet cases about what a container is given: its environment, its volumes' contents
//! and modes, its cgroup limits; and the examples in examples/ as a user runs them.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use berth_integration_tests::TestEnv;
use berth_integration_tests::kubelet::{Kubelet, NODE, Pod, RuntimeKind};
use serde_json::json;

use super::{IDLE, apply, host_path, http_get, lines, pod, running, sh, shared_dir};

pub fn env_and_volume_contents(k: &mut Kubelet) -> anyhow::Result<()> {
    let out = shared_dir(k, "env")?;
    let script = r#"
env > /out/env
echo "$0" > /out/arg
for f in /cm/greet.txt /cmall/color /sec/password /dapi/name /dapi/mem; do
  echo "$f $(stat -L -c %a $f) $(cat $f)" >> /out/files
done
cat /dapi/labels > /out/labels
ls /cm > /out/cm-ls
grep ' /mem ' /proc/mounts > /out/mem
touch /out/done
"#;
    let mut c = sh(k, "c", &format!("{script}\n{IDLE}"));
    c["command"]
        .as_array_mut()
        .context("command")?
        .push(json!("$(B)"));
    c["env"] = json!([
        {"name": "A", "value": "alpha"},
        {"name": "B", "value": "$(A)-beta"},
        {"name": "C", "value": "$$(A)"},
        {"name": "D", "value": "$(MISSING)"},
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
    ]);
    c["envFrom"] = json!([{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]);
    c["resources"] = json!({"limits": {"memory": "64Mi"}});
    c["volumeMounts"] = json!([
        {"name": "out", "mountPath": "/out"},
        {"name": "cm", "mountPath": "/cm"},
        {"name": "cmall", "mountPath": "/cmall"},
        {"name": "sec", "mountPath": "/sec"},
        {"name": "dapi", "mountPath": "/dapi"},
        {"name": "mem", "mountPath": "/mem"},
    ]);
    let mut p = pod(
        "env",
        json!({"containers": [c], "volumes": [
            host_path("out", &out),
            {"name": "cm", "configMap": {"name": "cfg", "items": [{"key": "greeting", "path": "greet.txt", "mode": 0o400}]}},
            {"name": "cmall", "configMap": {"name": "cfg", "defaultMode": 0o640}},
            {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o440}},
            {"name": "dapi", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
            ]}},
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
        ]}),
    );
    p["metadata"]["labels"] = json!({"app": "envtest", "tier": "x"});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                    "data": {"greeting": "hello", "color": "blue"}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
                        "data": {"password": "c2VjcmV0LXZhbHVl"}});
    apply(k, "env", &[cm, secret, p])?;
    let p = k.wait_for("env", running("c"), Duration::from_secs(60))?;
    berth_integration_tests::util::wait_for(Duration::from_secs(10), || {
        out.join("done").exists().then_some(())
    })
    .context("the container never wrote /out/done")?;

    let env: Vec<String> = lines(&out.join("env"));
    let full = Kubelet::full_name("env");
    for want in [
        "A=alpha".to_string(),
        "B=alpha-beta".into(),
        "C=$(A)".into(),
        "D=$(MISSING)".into(),
        "GREETING=hello".into(),
        "PASSWORD=secret-value".into(),
        format!("POD_NAME={full}"),
        "POD_NS=default".into(),
        format!("NODE={NODE}"),
        format!("POD_IP={}", p.ip()),
        "MEM=64".into(),
        "CFG_greeting=hello".into(),
        "CFG_color=blue".into(),
    ] {
        ensure!(env.contains(&want), "env lacks {want:?}: {env:?}");
    }
    ensure!(
        lines(&out.join("arg")) == ["alpha-beta"],
        "args not expanded"
    );
    let files = lines(&out.join("files"));
    let want_files = [
        "/cm/greet.txt 400 hello".to_string(),
        "/cmall/color 640 blue".into(),
        "/sec/password 440 secret-value".into(),
        format!("/dapi/name 644 {full}"),
        "/dapi/mem 644 64".into(),
    ];
    ensure!(files == want_files, "volume files {files:?}");
    ensure!(
        lines(&out.join("labels")) == ["app=\"envtest\"", "tier=\"x\""],
        "downward API labels {:?}",
        lines(&out.join("labels"))
    );
    ensure!(
        lines(&out.join("cm-ls")) == ["greet.txt"],
        "configMap items"
    );
    let mem = lines(&out.join("mem"));
    ensure!(
        mem.len() == 1 && mem[0].split(' ').nth(2) == Some("tmpfs"),
        "emptyDir medium Memory: {mem:?}"
    );
    Ok(())
}

/// Reads a cgroup file of `dir`, trimmed.
fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// (memory limit, cpu quota, cpu period, cpu shares or weight) of the cgroup at `rel`
/// (the pod cgroup's relative path), read from cgroupfs v1 or v2.
fn limits(k: &Kubelet, uid: &str) -> anyhow::Result<Vec<(String, [String; 3])>> {
    // Every cgroup of the pod (the pod's own, then its containers'), by relative path.
    if let (Some(mem), Some(cpu)) = (k.pod_cgroup("memory", uid), k.pod_cgroup("cpu", uid)) {
        let mut out = vec![(
            "pod".to_string(),
            [
                read(&mem, "memory.limit_in_bytes"),
                read(&cpu, "cpu.cfs_quota_us"),
                read(&cpu, "cpu.shares"),
            ],
        )];
        for e in std::fs::read_dir(&mem)?
            .flatten()
            .filter(|e| e.path().is_dir())
        {
            let name = e.file_name();
            let c = cpu.join(&name);
            out.push((
                name.to_string_lossy().into_owned(),
                [
                    read(&e.path(), "memory.limit_in_bytes"),
                    read(&c, "cpu.cfs_quota_us"),
                    read(&c, "cpu.shares"),
                ],
            ));
        }
        return Ok(out);
    }
    let Some(dir) = k.pod_cgroup("unified", uid) else {
        bail!("no cgroup for pod {uid} under {}", k.cgroup_root);
    };
    let v2 = |d: &Path| {
        [
            read(d, "memory.max"),
            read(d, "cpu.max")
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string(),
            read(d, "cpu.weight"),
        ]
    };
    let mut out = vec![("pod".to_string(), v2(&dir))];
    for e in std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.path().is_dir())
    {
        out.push((e.file_name().to_string_lossy().into_owned(), v2(&e.path())));
    }
    Ok(out)
}

pub fn cgroup_limits_written(k: &mut Kubelet) -> anyhow::Result<()> {
    let with = |name: &str, resources: serde_json::Value| {
        let mut c = sh(k, "c", IDLE);
        c["resources"] = resources;
        pod(name, json!({"containers": [c]}))
    };
    apply(
        k,
        "guaranteed",
        &[with(
            "guaranteed",
            json!({"limits": {"cpu": "250m", "memory": "64Mi"}}),
        )],
    )?;
    apply(
        k,
        "burstable",
        &[with(
            "burstable",
            json!({"requests": {"cpu": "100m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}),
        )],
    )?;
    let t = Duration::from_secs(60);
    let g = k.wait_for("guaranteed", running("c"), t)?;
    let b = k.wait_for("burstable", running("c"), t)?;
    ensure!(
        g.0["status"]["qosClass"] == "Guaranteed",
        "{}",
        g.0["status"]["qosClass"]
    );
    ensure!(
        b.0["status"]["qosClass"] == "Burstable",
        "{}",
        b.0["status"]["qosClass"]
    );
    let v1 = k.pod_cgroup("memory", g.uid()).is_some();
    // Guaranteed: kubepods/pod<uid>; Burstable: kubepods/burstable/pod<uid>.
    let ctl = if v1 { "memory" } else { "unified" };
    ensure!(
        k.pod_cgroup(ctl, g.uid())
            .is_some_and(|d| d.parent().and_then(Path::file_name) == Some("kubepods".as_ref())),
        "guaranteed pod cgroup not directly under kubepods"
    );
    ensure!(
        k.pod_cgroup(ctl, b.uid())
            .is_some_and(|d| d.parent().and_then(Path::file_name) == Some("burstable".as_ref())),
        "burstable pod cgroup not under kubepods/burstable"
    );
    // 250m: quota 25000 of a 100000 period; shares 256 (v1) or weight 10 (v2).
    let (g_want, b_want) = if v1 {
        (["67108864", "25000", "256"], ["33554432", "-1", "102"])
    } else {
        (["67108864", "25000", "10"], ["33554432", "max", "4"])
    };
    for (p, want) in [(&g, g_want), (&b, b_want)] {
        let all = limits(k, p.uid())?;
        ensure!(
            all[0].1 == want.map(String::from),
            "pod cgroup of {}: {all:?}",
            p.uid()
        );
        // The container's own cgroup carries the container's limits.
        ensure!(
            all[1..].iter().any(|(_, v)| *v == want.map(String::from)),
            "no container cgroup with {want:?}: {all:?}"
        );
    }
    Ok(())
}

/// The examples in examples/, with their image built by scripts/example-image.sh and
/// imported as a user would.
pub fn examples_run(runtime: RuntimeKind) {
    let env = TestEnv::new().expect("env");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace");
    let layout = env.dir().join("example-image");
    berth_integration_tests::util::run(
        std::process::Command::new("bash")
            .arg(repo.join("scripts/example-image.sh"))
            .arg(&layout),
    )
    .expect("scripts/example-image.sh");
    let k = Kubelet::start_with(&env, runtime, &[], &[&layout]).expect("start berth run");
    if let Err(e) = examples(&k, repo) {
        panic!(
            "{e:#}\n{} kubelet log (tail):\n{}",
            runtime.name(),
            k.log_tail(60)
        );
    }
}

fn examples(k: &Kubelet, repo: &Path) -> anyhow::Result<()> {
    for name in ["web", "init-sidecar", "crashloop", "job"] {
        let text = std::fs::read_to_string(repo.join(format!("examples/{name}.yaml")))?;
        k.write_manifest(name, &text)?;
    }
    let t = Duration::from_secs(90);
    let web = k.wait_for("web", Pod::ready, t)?;
    let body = http_get(k, "127.0.0.1:8080")?;
    ensure!(
        body == format!("hello from {}\n", Kubelet::full_name("web")),
        "{body:?}"
    );
    ensure!(web.0["status"]["qosClass"] == "Burstable");

    let job = k.wait_for("job", |p| p.phase() == "Succeeded", t)?;
    let term = job.terminated("count").context("job's container")?;
    ensure!(
        term["reason"] == "Completed" && term["exitCode"] == 0,
        "{term}"
    );

    k.wait_for(
        "crashloop",
        |p| p.waiting_reason("crash") == "CrashLoopBackOff" && p.restarts("crash") >= 1,
        t,
    )?;

    let p = k.wait_for("init-sidecar", running("app"), t)?;
    ensure!(p.running("log-shipper"), "the sidecar is not running");
    let prep = p.terminated("prepare").context("prepare")?;
    ensure!(prep["reason"] == "Completed", "{prep}");
    Ok(())
}

/// An image that cannot be pulled (nothing listens where its registry should be) waits as
/// ErrImagePull, then ImagePullBackOff; a missing ConfigMap key is
/// CreateContainerConfigError; a pod beside them runs.
pub fn image_and_config_errors_wait_with_upstream_reasons(k: &mut Kubelet) -> anyhow::Result<()> {
    let mut bad_image = sh(k, "c", IDLE);
    bad_image["image"] = json!("127.0.0.1:1/berth-test/missing:v1");
    let mut bad_env = sh(k, "c", IDLE);
    bad_env["env"] =
        json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "absent"}}}]);
    apply(
        k,
        "errors",
        &[
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"present": "1"}}),
            pod("pull", json!({"containers": [bad_image]})),
            pod("cfg", json!({"containers": [bad_env]})),
            pod("fine", json!({"containers": [sh(k, "c", IDLE)]})),
        ],
    )?;
    let t = Duration::from_secs(60);
    k.wait_for("fine", running("c"), t)?;
    let p = k.wait_for("pull", |p| p.waiting_reason("c") == "ErrImagePull", t)?;
    ensure!(p.phase() == "Pending", "pull: {}", p.phase());
    k.wait_for("pull", |p| p.waiting_reason("c") == "ImagePullBackOff", t)?;
    let p = k.wait_for(
        "cfg",
        |p| p.waiting_reason("c") == "CreateContainerConfigError",
        t,
    )?;
    let msg = p
        .container("c")
        .map(|c| c["state"]["waiting"]["message"].to_string())
        .unwrap_or_default();
    ensure!(msg.contains("absent"), "the message names the key: {msg}");
    ensure!(p.condition("Ready") == "False");
    Ok(())
}

/// activeDeadlineSeconds: past it the pod fails with DeadlineExceeded and its containers
/// are stopped.
pub fn active_deadline_fails_the_pod(k: &mut Kubelet) -> anyhow::Result<()> {
    apply(
        k,
        "deadline",
        &[pod(
            "deadline",
            json!({"activeDeadlineSeconds": 3, "terminationGracePeriodSeconds": 2,
                   "containers": [sh(k, "c", IDLE)]}),
        )],
    )?;
    let t = Duration::from_secs(60);
    k.wait_for("deadline", running("c"), t)?;
    let p = k.wait_for("deadline", |p| p.phase() == "Failed", t)?;
    ensure!(
        p.0["status"]["reason"] == "DeadlineExceeded",
        "reason {}",
        p.0["status"]["reason"]
    );
    ensure!(
        p.0["status"]["message"] == "Pod was active on the node longer than the specified deadline",
        "message {}",
        p.0["status"]["message"]
    );
    k.wait_for("deadline", |p| p.terminated("c").is_some(), t)?;
    Ok(())
}

/// The pod-level settings reach the containers: dnsConfig and hostAliases in
/// /etc/resolv.conf and /etc/hosts, the hostname, a shared process namespace, the
/// securityContext's user and a read-only root; a hostNetwork pod sees the node's links.
pub fn pod_settings_reach_the_containers(k: &mut Kubelet) -> anyhow::Result<()> {
    let out = shared_dir(k, "settings")?;
    let script = r#"
cat /etc/resolv.conf > /out/resolv
cat /etc/hosts > /out/hosts
hostname > /out/hostname
id -u > /out/uid
if touch /rootfs-probe 2>/dev/null; then echo writable; else echo read-only; fi > /out/root
n=0
for i in $(seq 1 50); do
  n=$(ps -o comm | grep -c '^sleep$')
  [ "$n" -gt 0 ] && break
  sleep 0.2
done
echo "$n" > /out/shared
touch /out/done
"#;
    let mut c = sh(k, "c", &format!("{script}\n{IDLE}"));
    c["volumeMounts"] = json!([{"name": "out", "mountPath": "/out"}]);
    c["securityContext"] = json!({"runAsUser": 1234, "readOnlyRootFilesystem": true});
    let mut sleeper = sh(k, "sleeper", "exec sleep 3600");
    sleeper["command"] = json!(["sleep", "3600"]);
    apply(
        k,
        "settings",
        &[pod(
            "settings",
            json!({
                "hostname": "custom-host",
                "shareProcessNamespace": true,
                "dnsPolicy": "None",
                "dnsConfig": {"nameservers": ["192.0.2.53"], "searches": ["example.test"],
                              "options": [{"name": "ndots", "value": "2"}]},
                "hostAliases": [{"ip": "192.0.2.10", "hostnames": ["alias-one", "alias-two"]}],
                "containers": [c, sleeper],
                "volumes": [host_path("out", &out)],
            }),
        )],
    )?;
    let mut hn = sh(
        k,
        "c",
        &format!("ls /sys/class/net > /out/links; touch /out/done\n{IDLE}"),
    );
    let hn_out = shared_dir(k, "hostnet")?;
    hn["volumeMounts"] = json!([{"name": "out", "mountPath": "/out"}]);
    apply(
        k,
        "hostnet",
        &[pod(
            "hostnet",
            json!({"hostNetwork": true, "containers": [hn],
                   "volumes": [host_path("out", &hn_out)]}),
        )],
    )?;
    let t = Duration::from_secs(60);
    k.wait_for("settings", running("c"), t)?;
    let p = k.wait_for("hostnet", running("c"), t)?;
    let deadline = std::time::Instant::now() + t;
    while !(out.join("done").exists() && hn_out.join("done").exists()) {
        ensure!(
            std::time::Instant::now() < deadline,
            "the containers wrote nothing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
    let resolv = read(&out, "resolv");
    ensure!(
        resolv.contains("nameserver 192.0.2.53")
            && resolv.contains("example.test")
            && resolv.contains("ndots:2"),
        "resolv.conf: {resolv}"
    );
    let hosts = read(&out, "hosts");
    ensure!(
        hosts.lines().any(|l| l.starts_with("192.0.2.10")
            && l.contains("alias-one")
            && l.contains("alias-two")),
        "hosts: {hosts}"
    );
    ensure!(
        read(&out, "hostname").trim() == "custom-host",
        "hostname {}",
        read(&out, "hostname")
    );
    ensure!(
        read(&out, "uid").trim() == "1234",
        "uid {}",
        read(&out, "uid")
    );
    ensure!(
        read(&out, "root").trim() == "read-only",
        "root {}",
        read(&out, "root")
    );
    // With the process namespace shared, the sleeper's process is visible.
    let shared: usize = read(&out, "shared").trim().parse().unwrap_or(0);
    ensure!(shared >= 1, "processes seen: {shared}");
    // A host-network pod sees the node's links (the test's host netns has more than lo)
    // and reports the node's address as its own.
    let links = read(&hn_out, "links");
    ensure!(links.lines().count() > 1, "links: {links}");
    ensure!(
        p.0["status"]["podIP"] == p.0["status"]["hostIP"],
        "podIP {} hostIP {}",
        p.0["status"]["podIP"],
        p.0["status"]["hostIP"]
    );
    Ok(())
}
