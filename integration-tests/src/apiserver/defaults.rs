//! Server-side defaults and the admission plugins of a stock cluster that change the
//! objects a node agent reads: pod defaulting (SetDefaults_Pod and friends), the
//! ServiceAccount admission's projected token volume, DefaultTolerationSeconds, the QoS
//! class, and service ClusterIP allocation. Pure: JSON in, JSON out.

use serde_json::{Value, json};

/// Where the ServiceAccount admission mounts the token, CA and namespace.
pub const SA_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if let Value::Object(m) = obj
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.to_string(), v);
    }
}

/// Defaults applied on every write of a pod (as decoding does on the real server).
pub fn default_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols {
            for (kind, mode) in [
                ("configMap", 0o644),
                ("secret", 0o644),
                ("projected", 0o644),
                ("downwardAPI", 0o644),
            ] {
                if let Some(src) = v.get_mut(kind).filter(|s| s.is_object()) {
                    set_default(src, "defaultMode", json!(mode));
                }
            }
        }
    }
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    set_default(&mut pod["status"], "phase", json!("Pending"));
    let qos = qos_class(&pod["spec"]);
    set_default(&mut pod["status"], "qosClass", json!(qos));
}

fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    set_default(c, "imagePullPolicy", json!(pull_policy(image)));
    set_default(c, "resources", json!({}));
    // Requests default to limits where only limits are given.
    if let Some(limits) = c
        .pointer("/resources/limits")
        .cloned()
        .and_then(|l| l.as_object().cloned())
    {
        let res = &mut c["resources"];
        if !res.get("requests").is_some_and(Value::is_object) {
            res["requests"] = json!({});
        }
        for (k, v) in limits {
            set_default(&mut res["requests"], &k, v);
        }
    }
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        ports
            .iter_mut()
            .for_each(|p| set_default(p, "protocol", json!("TCP")));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").filter(|h| h.is_object()) {
                set_default(h, "scheme", json!("HTTP"));
                set_default(h, "path", json!("/"));
            }
        }
    }
}

/// Always for `:latest` or an untagged image (a digest counts as a tag), else IfNotPresent.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// v1.PodQOSClass from the (defaulted) containers' requests and limits.
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let relevant = |m: Option<&serde_json::Map<String, Value>>| {
            m.map(|m| m.keys().filter(|k| *k == "cpu" || *k == "memory").count())
                .unwrap_or(0)
        };
        if relevant(req) > 0 || relevant(lim) > 0 {
            any = true;
        }
        let full = ["cpu", "memory"].iter().all(|r| {
            let l = lim.and_then(|m| m.get(*r));
            l.is_some() && req.and_then(|m| m.get(*r)) == l
        });
        guaranteed &= full;
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Admission on pod create: ServiceAccount (serviceAccountName and the projected
/// kube-api-access-<suffix> volume mounted into every container) and
/// DefaultTolerationSeconds. Mirror pods get neither service account nor token, as upstream.
pub fn admit_pod_create(pod: &mut Value, suffix: &str) {
    let mirror = pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some();
    let Some(spec) = pod.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    add_default_tolerations(spec);
    if mirror {
        return;
    }
    set_default(spec, "serviceAccountName", json!("default"));
    if spec.get("automountServiceAccountToken") == Some(&json!(false)) {
        return;
    }
    let vol_name = format!("kube-api-access-{suffix}");
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(cs)) = spec.get_mut(list) else {
            continue;
        };
        for c in cs.iter_mut().filter(|c| c.is_object()) {
            set_default(c, "volumeMounts", json!([]));
            let Some(Value::Array(mounts)) = c.get_mut("volumeMounts") else {
                continue;
            };
            if mounts
                .iter()
                .any(|m| m.get("mountPath") == Some(&json!(SA_MOUNT_PATH)))
            {
                continue;
            }
            mounts.push(json!({"name": vol_name, "readOnly": true, "mountPath": SA_MOUNT_PATH}));
            mounted = true;
        }
    }
    if !mounted {
        return;
    }
    set_default(spec, "volumes", json!([]));
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        vols.push(json!({"name": vol_name, "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]}}));
    }
}

fn add_default_tolerations(spec: &mut Value) {
    set_default(spec, "tolerations", json!([]));
    let Some(Value::Array(tols)) = spec.get_mut("tolerations") else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let present = tols.iter().any(|t| {
            t.get("key").and_then(Value::as_str) == Some(key)
                || (t.get("key").is_none() && t.get("operator") == Some(&json!("Exists")))
        });
        if !present {
            tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Service defaults; `next_ip` allocates a ClusterIP when the service asks for one.
pub fn default_service(svc: &mut Value, next_ip: impl FnOnce() -> String) {
    let Some(spec) = svc.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter(|p| p.is_object()) {
            set_default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            set_default(p, "targetPort", port);
        }
    }
    let external = spec.get("type") == Some(&json!("ExternalName"));
    if !external {
        let ip = match spec.get("clusterIP").and_then(Value::as_str) {
            Some(ip) if !ip.is_empty() => ip.to_string(),
            _ => next_ip(),
        };
        spec["clusterIP"] = json!(ip);
        set_default(spec, "clusterIPs", json!([ip]));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if !svc.get("status").is_some_and(Value::is_object) {
        svc["status"] = json!({"loadBalancer": {}});
    }
}

/// Namespace defaults: the kubernetes finalizer, phase Active, the name label.
pub fn default_namespace(ns: &mut Value) {
    let name = ns.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let meta = super::meta::meta_mut(ns);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    set_default(labels, "kubernetes.io/metadata.name", name);
    set_default(ns, "spec", json!({"finalizers": ["kubernetes"]}));
    set_default(ns, "status", json!({"phase": "Active"}));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pod_defaults_and_token_volume() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "busybox", "ports": [{"containerPort": 80}],
             "readinessProbe": {"httpGet": {"port": 80}},
             "resources": {"limits": {"cpu": "1", "memory": "1Mi"}}}]}});
        default_pod(&mut pod);
        admit_pod_create(&mut pod, "abcde");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(c["volumeMounts"][0]["mountPath"], SA_MOUNT_PATH);
        assert_eq!(pod["spec"]["volumes"][0]["name"], "kube-api-access-abcde");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "Guaranteed");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn pull_policies() {
        assert_eq!(pull_policy("reg:5000/busybox"), "Always");
        assert_eq!(pull_policy("busybox:latest"), "Always");
        assert_eq!(pull_policy("reg:5000/busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy("busybox@sha256:00"), "IfNotPresent");
    }

    #[test]
    fn mirror_pods_get_no_token() {
        let mut pod = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        admit_pod_create(&mut pod, "abcde");
        assert!(pod["spec"].get("volumes").is_none());
        assert!(pod["spec"].get("serviceAccountName").is_none());
    }
}
