//! Node cases about what the kubelet reads from and writes to the API beyond pods: the
//! ConfigMaps and Secrets pods use, admission refusals, Events, the Node and its Lease, and
//! the service-account token every pod made through the API mounts.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_integration_tests::apiserver::str_at;
use berth_integration_tests::kubelet::{NODE, NODE_IP, Pod, RuntimeKind};
use serde_json::{Value, json};

use super::{IDLE, Node, bound, running, sh, wait};

/// Where upstream's ServiceAccount admission mounts the kube-api-access volume.
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A readiness probe running `script` every second.
fn probe(script: &str) -> Value {
    json!({"exec": {"command": ["sh", "-c", script]}, "periodSeconds": 1})
}

/// The container is up (not necessarily ready).
fn started(p: &Pod) -> bool {
    p.phase() == "Running" && p.running("c")
}

/// Creates `obj` (a ConfigMap or Secret as JSON) through the API as an admin would.
fn create_object(n: &Node, obj: Value) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::api::Api;
    let what = format!("create {} {}", obj["kind"], obj["metadata"]["name"]);
    match obj["kind"].as_str() {
        Some("ConfigMap") => {
            let cm: ConfigMap = serde_json::from_value(obj)?;
            n.c.run(|c| async move {
                Api::<ConfigMap>::namespaced(c, "default")
                    .create(&Default::default(), &cm)
                    .await
            })
            .map(|_| ())
        }
        Some("Secret") => {
            let s: Secret = serde_json::from_value(obj)?;
            n.c.run(|c| async move {
                Api::<Secret>::namespaced(c, "default")
                    .create(&Default::default(), &s)
                    .await
            })
            .map(|_| ())
        }
        other => bail!("not a ConfigMap or Secret: {other:?}"),
    }
    .context(what)
}

/// Merge-patches ConfigMap or Secret (`plural`) `name` through the API.
fn patch_object(n: &Node, plural: &str, name: &str, patch: Value) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use kube::api::{Api, Patch, PatchParams};
    let (plural, name) = (plural.to_string(), name.to_string());
    let what = format!("patch {plural} {name}");
    n.c.run(|c| async move {
        let pp = PatchParams::default();
        let p = Patch::Merge(&patch);
        if plural == "secrets" {
            let api = Api::<Secret>::namespaced(c, "default");
            api.patch(&name, &pp, &p).await.map(|_| ())
        } else {
            let api = Api::<ConfigMap>::namespaced(c, "default");
            api.patch(&name, &pp, &p).await.map(|_| ())
        }
    })
    .context(what)
}

/// Polls `f` until it returns Ok; fails with `what` and the last error it gave.
fn poll<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => {
                bail!("{what}: not within {secs} s; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

pub fn config_map_and_secret_volumes_follow_the_api(n: &mut Node) -> anyhow::Result<()> {
    create_object(
        n,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "app-config", "namespace": "default"},
               "data": {"key": "v1"}}),
    )?;
    create_object(
        n,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "app-secret", "namespace": "default"},
               "data": {"password": "czNjcmV0"}}), // "s3cret"
    )?;
    // The first contents are checked at start: a wrong one would restart the container.
    let script = format!("grep -qx v1 /cm/key && grep -qx s3cret /sec/password || exit 3; {IDLE}");
    let mut c = sh(n, "c", &script);
    c["volumeMounts"] = json!([
        {"name": "cm", "mountPath": "/cm"},
        {"name": "sec", "mountPath": "/sec"},
    ]);
    c["readinessProbe"] = probe("grep -qx v2 /cm/key && grep -qx rotated /sec/password");
    let pod = bound(
        "mounts",
        json!({"containers": [c], "terminationGracePeriodSeconds": 5, "volumes": [
            {"name": "cm", "configMap": {"name": "app-config"}},
            {"name": "sec", "secret": {"secretName": "app-secret"}},
        ]}),
    );
    n.c.create_pod("default", pod)?;
    let first = wait(n, "mounts", started, 90)?;
    // The probe has run a few times on the old contents and failed.
    std::thread::sleep(Duration::from_secs(2));
    let p = wait(n, "mounts", started, 5)?;
    ensure!(
        !p.ready() && p.condition("ContainersReady") == "False",
        "ready before the objects changed: {}",
        p.0["status"]
    );
    patch_object(
        n,
        "configmaps",
        "app-config",
        json!({"data": {"key": "v2"}}),
    )?;
    patch_object(
        n,
        "secrets",
        "app-secret",
        json!({"data": {"password": "cm90YXRlZA=="}}), // "rotated"
    )?;
    let p = wait(n, "mounts", running, 60)?;
    ensure!(
        p.container_id("c") == first.container_id("c") && p.restarts("c") == 0,
        "the container was restarted to see the change: {}",
        p.0["status"]["containerStatuses"]
    );
    Ok(())
}

pub fn missing_config_map_is_create_container_config_error(n: &mut Node) -> anyhow::Result<()> {
    let mut c = sh(
        n,
        "c",
        &format!("[ \"$GREETING\" = hello ] || exit 3; {IDLE}"),
    );
    c["env"] = json!([{"name": "GREETING", "valueFrom": {"configMapKeyRef":
        {"name": "late-config", "key": "greeting"}}}]);
    c["readinessProbe"] = probe("true");
    n.c.create_pod(
        "default",
        bound(
            "late",
            json!({"containers": [c], "terminationGracePeriodSeconds": 5}),
        ),
    )?;
    let p = wait(
        n,
        "late",
        |p| p.waiting_reason("c") == "CreateContainerConfigError",
        60,
    )?;
    let st = &p.0["status"];
    ensure!(p.phase() == "Pending", "phase: {st}");
    let message = p
        .container("c")
        .map(|c| str_at(c, "/state/waiting/message"))
        .unwrap_or("");
    ensure!(
        message.contains("late-config") && message.contains("not found"),
        "waiting message: {st}"
    );
    create_object(
        n,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "late-config", "namespace": "default"},
               "data": {"greeting": "hello"}}),
    )?;
    let p = wait(n, "late", running, 60)?;
    ensure!(
        p.restarts("c") == 0,
        "the container did not see its variable: {}",
        p.0["status"]["containerStatuses"]
    );
    Ok(())
}

pub fn admission_rejects_with_upstream_reasons(n: &mut Node) -> anyhow::Result<()> {
    let ready = || {
        let mut c = sh(n, "c", IDLE);
        c["readinessProbe"] = probe("true");
        c
    };
    let mut greedy = ready();
    greedy["resources"] = json!({"requests": {"cpu": "1000"}});
    n.c.create_pod(
        "default",
        bound(
            "greedy",
            json!({"containers": [greedy], "terminationGracePeriodSeconds": 5}),
        ),
    )?;
    n.c.create_pod(
        "default",
        bound(
            "picky",
            json!({"containers": [ready()], "nodeSelector": {"disk": "ssd"},
                   "terminationGracePeriodSeconds": 5}),
        ),
    )?;
    n.c.create_pod(
        "default",
        bound(
            "plain",
            json!({"containers": [ready()], "terminationGracePeriodSeconds": 5}),
        ),
    )?;
    for (name, reason, says) in [
        (
            "greedy",
            "OutOfcpu",
            "Node didn't have enough resource: cpu",
        ),
        ("picky", "NodeAffinity", "NodeAffinity"),
    ] {
        let p = wait(n, name, |p| p.phase() == "Failed", 60)?;
        let st = &p.0["status"];
        ensure!(st["reason"] == reason, "{name}: {st}");
        let message = str_at(st, "/message");
        ensure!(
            message.starts_with("Pod was rejected: ") && message.contains(says),
            "{name}: {st}"
        );
        // Upstream records the refusal as a Warning event on the pod too.
        poll(&format!("a {reason} event for {name}"), 15, || {
            let evs = pod_events(n, name);
            evs.iter()
                .any(|e| e["reason"] == reason && e["type"] == "Warning")
                .then_some(())
                .ok_or_else(|| format!("{evs:?}"))
        })?;
    }
    wait(n, "plain", running, 90)?;
    // Refused pods stay refused: no container was ever started for them.
    for name in ["greedy", "picky"] {
        let p = n.c.pod("default", name).context(name.to_string())?;
        ensure!(
            p.phase() == "Failed" && p.container_id("c").is_empty(),
            "{name}: {}",
            p.0["status"]
        );
    }
    Ok(())
}

/// The core/v1 Events in namespace default about pod `name`.
fn pod_events(n: &Node, name: &str) -> Vec<Value> {
    n.c.api
        .list("events", Some("default"))
        .into_iter()
        .filter(|e| e["involvedObject"]["kind"] == "Pod" && e["involvedObject"]["name"] == name)
        .collect()
}

pub fn events_reach_the_api(n: &mut Node) -> anyhow::Result<()> {
    let mut c = sh(n, "c", IDLE);
    c["readinessProbe"] = probe("true");
    let made = n.c.create_pod(
        "default",
        bound(
            "noisy",
            json!({"containers": [c], "terminationGracePeriodSeconds": 5}),
        ),
    )?;
    wait(n, "noisy", running, 90)?;
    let evs = poll("Pulled or Created, and Started events", 20, || {
        let evs = pod_events(n, "noisy");
        let has = |r: &str| evs.iter().any(|e| e["reason"] == r);
        if (has("Pulled") || has("Created")) && has("Started") {
            Ok(evs)
        } else {
            Err(format!("{evs:#?}"))
        }
    })?;
    for e in &evs {
        ensure!(
            e["source"]["component"] == "kubelet" && e["source"]["host"] == NODE,
            "source: {e}"
        );
        ensure!(
            e["involvedObject"]["uid"] == made.uid()
                && e["involvedObject"]["namespace"] == "default",
            "involvedObject: {e}"
        );
    }
    let started = evs.iter().find(|e| e["reason"] == "Started");
    let started = started.context("Started")?;
    ensure!(
        started["type"] == "Normal"
            && started["involvedObject"]["fieldPath"] == "spec.containers{c}",
        "Started: {started}"
    );

    // The Node it registered.
    let scheme = match n.k.runtime {
        RuntimeKind::Berth => "berth://",
        RuntimeKind::Containerd => "containerd://",
    };
    let node = poll("node1 Ready", 30, || {
        let node = n.c.api.get("nodes", "", NODE).ok_or("no Node")?;
        let ready = node["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready {
            Ok(node)
        } else {
            Err(node["status"]["conditions"].to_string())
        }
    })?;
    ensure!(
        node["metadata"]["labels"]["kubernetes.io/hostname"] == NODE,
        "labels: {}",
        node["metadata"]["labels"]
    );
    ensure!(
        node["status"]["addresses"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["type"] == "Hostname" && a["address"] == NODE)),
        "addresses: {}",
        node["status"]["addresses"]
    );
    let version = str_at(&node, "/status/nodeInfo/containerRuntimeVersion");
    ensure!(version.starts_with(scheme), "runtime version {version:?}");
    let addrs = &node["status"]["addresses"];
    ensure!(
        addrs.as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == NODE_IP)),
        "addresses: {addrs}"
    );

    // Its Lease, renewed by the node.
    let lease = || {
        n.c.api
            .get("leases.coordination.k8s.io", "kube-node-lease", NODE)
    };
    let first = poll("the node's Lease", 20, || {
        lease().ok_or("no Lease".to_string())
    })?;
    let spec = &first["spec"];
    ensure!(spec["holderIdentity"] == NODE, "lease: {first}");
    ensure!(spec["leaseDurationSeconds"] == 40, "lease: {first}");
    let owner = &first["metadata"]["ownerReferences"][0];
    ensure!(
        owner["kind"] == "Node" && owner["name"] == NODE && owner["uid"] == node["metadata"]["uid"],
        "lease owner: {first}"
    );
    let renewed = str_at(&first, "/spec/renewTime").to_string();
    ensure!(!renewed.is_empty(), "lease: {first}");
    // Renewed every quarter of its duration (10 s), with a little jitter.
    poll("the Lease renewed", 15, || {
        let now = lease().ok_or("no Lease")?;
        let t = str_at(&now, "/spec/renewTime");
        if t != renewed && now["spec"]["holderIdentity"] == NODE {
            Ok(())
        } else {
            Err(now.to_string())
        }
    })
}

pub fn service_account_token_is_projected(n: &mut Node) -> anyhow::Result<()> {
    let mut c = sh(n, "c", IDLE);
    c["readinessProbe"] = probe(&format!(
        "test -s {SA_DIR}/token && grep -qx default {SA_DIR}/namespace \
         && grep -q BEGIN {SA_DIR}/ca.crt"
    ));
    let made = n.c.create_pod(
        "default",
        bound(
            "sa",
            json!({"containers": [c], "terminationGracePeriodSeconds": 5}),
        ),
    )?;
    let volumes = made.0["spec"]["volumes"].to_string();
    ensure!(
        volumes.contains("kube-api-access-"),
        "no projected token volume: {volumes}"
    );
    wait(n, "sa", running, 90)?;
    let path = "/api/v1/namespaces/default/serviceaccounts/default/token";
    let node_user = format!("system:node:{NODE}");
    let requests: Vec<Value> =
        n.c.api
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.split('?').next() == Some(path))
            .map(|r| {
                let body = serde_json::from_str(&r.body).unwrap_or(Value::Null);
                json!({"user": r.user, "body": body})
            })
            .collect();
    let bound_to_pod = requests.iter().any(|r| {
        let b = &r["body"]["spec"]["boundObjectRef"];
        r["user"] == node_user.as_str()
            && b["kind"] == "Pod"
            && b["name"] == "sa"
            && b["uid"] == made.uid()
    });
    ensure!(
        bound_to_pod,
        "no TokenRequest by {node_user} bound to the pod: {requests:?}"
    );
    // The token in the volume is one this server issued for the pod, valid now.
    let projected = n.k.kubelet_root.join(format!(
        "pods/{}/volumes/kubernetes.io~projected",
        made.uid()
    ));
    let vol = std::fs::read_dir(&projected)
        .with_context(|| format!("read {}", projected.display()))?
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("kube-api-access-")
        })
        .context("no kube-api-access volume on the node")?;
    let token = std::fs::read_to_string(vol.path().join("token")).context("read the token")?;
    let claims =
        n.c.api
            .verify_token(&token)
            .context("the token does not verify")?;
    let pod = &claims["kubernetes.io"]["pod"];
    ensure!(
        claims["sub"] == "system:serviceaccount:default:default"
            && pod["name"] == "sa"
            && pod["uid"] == made.uid(),
        "claims: {claims}"
    );
    Ok(())
}

/// A projected serviceAccountToken is renewed while the pod runs, and the running
/// container reads the new token from the same path: it keeps a copy of the first one and
/// turns Ready once the file holds another. The token lives 20 s (the server of this case
/// allows that); kubelet renews past 80% of its life, less up to 20 s of jitter, at the
/// pod's next sync (within the 60 s resync).
pub fn projected_token_rotates_in_the_running_container(n: &mut Node) -> anyhow::Result<()> {
    let tok = "/var/run/secrets/tokens/t";
    let mut c = sh(n, "c", &format!("cp {tok} /tmp/first; {IDLE}"));
    c["readinessProbe"] = probe(&format!("test -s /tmp/first && ! cmp -s {tok} /tmp/first"));
    c["volumeMounts"] = json!([{"name": "t", "mountPath": "/var/run/secrets/tokens"}]);
    let made = n.c.create_pod(
        "default",
        bound(
            "rot",
            json!({"containers": [c], "terminationGracePeriodSeconds": 5,
                   "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {
                       "path": "t", "expirationSeconds": 20, "audience": "berth-test"}}]}}]}),
        ),
    )?;
    wait(n, "rot", started, 60)?;
    wait(n, "rot", running, 150).context("the container never saw a new token")?;
    let vol = n.k.kubelet_root.join(format!(
        "pods/{}/volumes/kubernetes.io~projected/t/t",
        made.uid()
    ));
    let token = std::fs::read_to_string(&vol).with_context(|| format!("read {}", vol.display()))?;
    let claims =
        n.c.api
            .verify_token(&token)
            .context("the renewed token does not verify")?;
    ensure!(
        claims["aud"].to_string().contains("berth-test")
            && claims["kubernetes.io"]["pod"]["uid"] == made.uid(),
        "claims: {claims}"
    );
    Ok(())
}
