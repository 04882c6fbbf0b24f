//! Node cases about pods: bound pods run and are reported, graceful deletion, many pods
//! at once, mirror pods, kill -9 of berth, a restart of the API server, bad pods.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_integration_tests::kubelet::{NODE, NODE_IP, RuntimeKind};
use serde_json::{Value, json};

use super::{IDLE, Node, bound, delete, running, sh, wait, wait_gone};

/// The container ID scheme of the runtime.
fn scheme(n: &Node) -> &'static str {
    match n.k.runtime {
        RuntimeKind::Berth => "berth://",
        RuntimeKind::Containerd => "containerd://",
    }
}

/// A pod with one idle busybox container that is ready at once.
fn idle_pod(n: &Node, name: &str) -> Value {
    let mut c = sh(n, "c", IDLE);
    c["readinessProbe"] = json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
    bound(
        name,
        json!({"containers": [c], "terminationGracePeriodSeconds": 30}),
    )
}

/// The bodies of the PATCHes of pod `name`'s status, with who sent them and how.
fn status_patches(n: &Node, name: &str) -> Vec<(String, String, Value)> {
    let path = format!("/api/v1/namespaces/default/pods/{name}/status");
    n.c.api
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.split('?').next() == Some(path.as_str()))
        .map(|r| {
            let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
            (r.user.unwrap_or_default(), r.content_type, body)
        })
        .collect()
}

pub fn bound_pod_runs_reports_and_is_deleted_gracefully(n: &mut Node) -> anyhow::Result<()> {
    let created = n.c.create_pod("default", idle_pod(n, "web"))?;
    let uid = created.uid().to_string();
    let p = wait(n, "web", running, 90)?;
    ensure!(p.ip().starts_with("10.244.50."), "pod IP {:?}", p.ip());
    let st = &p.0["status"];
    ensure!(st["hostIP"] == NODE_IP, "hostIP: {st}");
    ensure!(st["qosClass"] == "BestEffort", "qosClass: {st}");
    ensure!(st["startTime"].is_string(), "startTime: {st}");
    ensure!(
        p.container_id("c").starts_with(scheme(n)),
        "container ID {:?}",
        p.container_id("c")
    );
    for t in ["Initialized", "ContainersReady", "Ready", "PodScheduled"] {
        ensure!(p.condition(t) == "True", "condition {t}: {st}");
    }
    let patches = status_patches(n, "web");
    ensure!(!patches.is_empty(), "no PATCH of pods/status");
    for (user, ct, body) in &patches {
        ensure!(user == &format!("system:node:{NODE}"), "patched by {user}");
        ensure!(ct.starts_with("application/merge-patch+json"), "{ct}");
        ensure!(
            body["metadata"]["uid"] == uid.as_str(),
            "no UID precondition: {body}"
        );
    }
    // The phases the patches carried never went back.
    let phases: Vec<&str> = patches
        .iter()
        .filter_map(|(_, _, b)| b["status"]["phase"].as_str())
        .collect();
    ensure!(
        phases.last() == Some(&"Running"),
        "phases patched: {phases:?}"
    );
    let ready_patched = patches.iter().any(|(_, _, b)| {
        b["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });
    ensure!(ready_patched, "Ready=True never patched: {patches:?}");

    // Graceful deletion: the container exits at SIGTERM, the kubelet deletes the object.
    let t0 = Instant::now();
    delete(n, "web", 20)?;
    wait_gone(n, "web", 30)?;
    ensure!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    let final_delete = n.c.api.requests().into_iter().find(|r| {
        r.method == "DELETE"
            && r.path.starts_with("/api/v1/namespaces/default/pods/web")
            && r.user.as_deref() == Some(&format!("system:node:{NODE}"))
    });
    let d = final_delete.context("the kubelet sent no DELETE")?;
    let body: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
    ensure!(body["gracePeriodSeconds"] == 0, "DELETE body: {body}");
    ensure!(
        body["preconditions"]["uid"] == uid.as_str(),
        "DELETE body: {body}"
    );
    // The last status before the delete showed the container terminated.
    let last = status_patches(n, "web").pop().context("patches")?;
    let terminated = last.2["status"]["containerStatuses"][0]["state"]["terminated"].clone();
    ensure!(terminated.is_object(), "last status patched: {}", last.2);
    Ok(())
}

pub fn fifty_pods_become_ready(n: &mut Node) -> anyhow::Result<()> {
    let names: Vec<String> = (0..50).map(|i| format!("many-{i}")).collect();
    for name in &names {
        n.c.create_pod("default", idle_pod(n, name))?;
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let waiting: Vec<&String> = names
            .iter()
            .filter(|name| !n.c.pod("default", name).is_some_and(|p| running(&p)))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{} pods not Ready, e.g. {}", waiting.len(), waiting[0]);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn static_pods_get_mirror_pods(n: &mut Node) -> anyhow::Result<()> {
    let mut pod = idle_pod(n, "static");
    pod["spec"]
        .as_object_mut()
        .context("spec")?
        .remove("nodeName");
    n.k.write_manifest("static", &pod.to_string())?;
    let name = format!("static-{NODE}");
    let m = wait(n, &name, running, 90)?;
    let ann = &m.0["metadata"]["annotations"];
    ensure!(
        ann["kubernetes.io/config.mirror"].is_string(),
        "annotations: {ann}"
    );
    ensure!(
        ann["kubernetes.io/config.mirror"] == ann["kubernetes.io/config.hash"],
        "annotations: {ann}"
    );
    let owner = &m.0["metadata"]["ownerReferences"][0];
    ensure!(
        owner["kind"] == "Node" && owner["name"] == NODE,
        "owner: {owner}"
    );
    let container = m.container_id("c").to_string();
    // Deleted by someone: it comes back (a new object), the static pod never stopped.
    let old_uid = m.uid().to_string();
    delete(n, &name, 30)?;
    let back = wait(n, &name, |p| p.uid() != old_uid && running(p), 60)?;
    ensure!(
        back.container_id("c") == container && back.restarts("c") == 0,
        "the static pod restarted: {:?}",
        back.0["status"]["containerStatuses"]
    );
    // Its manifest removed: the static pod stops and its mirror goes.
    n.k.remove_manifest("static")?;
    wait_gone(n, &name, 60)
}

pub fn kill9_while_pods_run_restarts_nothing(n: &mut Node) -> anyhow::Result<()> {
    for name in ["keep-a", "keep-b", "doomed"] {
        n.c.create_pod("default", idle_pod(n, name))?;
    }
    let mut ids = BTreeMap::new();
    for name in ["keep-a", "keep-b", "doomed"] {
        let p = wait(n, name, running, 90)?;
        ids.insert(name, p.container_id("c").to_string());
    }
    n.k.kill9();
    // While berth is down: one pod deleted, one created.
    delete(n, "doomed", 30)?;
    n.c.create_pod("default", idle_pod(n, "late"))?;
    n.k.restart()?;
    wait(n, "late", running, 90)?;
    wait_gone(n, "doomed", 60)?;
    for name in ["keep-a", "keep-b"] {
        let p = wait(n, name, running, 30)?;
        ensure!(
            p.container_id("c") == ids[name] && p.restarts("c") == 0,
            "{name} restarted: {:?}",
            p.0["status"]["containerStatuses"]
        );
    }
    Ok(())
}

pub fn watch_resumes_after_api_server_restart(n: &mut Node) -> anyhow::Result<()> {
    n.c.create_pod("default", idle_pod(n, "before"))?;
    let before = wait(n, "before", running, 90)?;
    let api = n.c.api.clone();
    n.c.run(move |_| async move { api.restart_after(Duration::from_secs(2)).await })?;
    // Objects written while the kubelet's watch is broken, and after: both are seen.
    n.c.create_pod("default", idle_pod(n, "after"))?;
    wait(n, "after", running, 90)?;
    let again = wait(n, "before", running, 10)?;
    ensure!(
        again.container_id("c") == before.container_id("c") && again.restarts("c") == 0,
        "the pod from before the restart was run again: {:?}",
        again.0["status"]["containerStatuses"]
    );
    ensure!(
        !n.k.log().contains("terminating a pod no source wants"),
        "a pod was taken as gone"
    );
    Ok(())
}

pub fn bad_pods_are_reported_and_the_others_run(n: &mut Node) -> anyhow::Result<()> {
    // Objects no real server would accept from a client but might still hold: made on
    // another node (so the server defaults them), then rewritten in its store as they
    // are and bound here.
    let bad = |name: &str, change: &dyn Fn(&mut Value)| -> anyhow::Result<()> {
        let mut p = idle_pod(n, name);
        p["spec"]["nodeName"] = json!("elsewhere");
        let mut stored = n.c.api.create("pods", "default", p)?;
        stored["spec"]["nodeName"] = json!(NODE);
        change(&mut stored);
        n.c.api.put_raw("pods", "default", name, stored);
        Ok(())
    };
    bad("undecodable", &|p| {
        p["spec"]["containers"] = json!("not a list")
    })?;
    bad("invalid", &|p| {
        p["spec"]["containers"][0]["name"] = json!("Not_A_Name")
    })?;
    bad("future", &|p| {
        p["spec"]["someFieldFromTheFuture"] = json!({"x": 1})
    })?;
    n.c.create_pod("default", idle_pod(n, "good"))?;
    wait(n, "good", running, 90)?;
    wait(n, "future", running, 90)?;
    for (name, field) in [
        ("undecodable", "could not be decoded"),
        ("invalid", "spec.containers[0].name"),
    ] {
        let p = wait(n, name, |p| p.phase() == "Failed", 30)?;
        let st = &p.0["status"];
        ensure!(st["reason"] == "FailedValidation", "{name}: {st}");
        ensure!(
            st["message"].as_str().unwrap_or("").contains(field),
            "{name}: {st}"
        );
    }
    let pid = n.k.pid().context("berth's pid")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    ensure!(!stat.is_empty() && !stat.contains(") Z "), "berth exited");
    // Deleting a pod that never ran removes it at once.
    delete(n, "invalid", 30)?;
    wait_gone(n, "invalid", 30)
}
