use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::json;

use super::*;

fn objects() -> Objects {
    let mut o = Objects::default();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg", "namespace": "ns"},
        "data": {"MODE": "fast", "LEVEL": "3"}
    }))
    .unwrap();
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sec", "namespace": "ns"},
        "data": {"PASSWORD": "aHVudGVyMg=="},
        "stringData": {"TOKEN": "t0k"}
    }))
    .unwrap();
    o.config_maps.insert(("ns".into(), "cfg".into()), cm);
    o.secrets.insert(("ns".into(), "sec".into()), s);
    o
}

fn pod(container: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1",
                     "labels": {"app": "web"}, "annotations": {"a": "b"}},
        "spec": {"nodeName": "node-1", "serviceAccountName": "sa",
                 "containers": [container]}
    }))
    .unwrap()
}

fn env_of(p: &Pod) -> Result<Vec<(String, String)>, EnvError> {
    let objects = objects();
    let ips = vec!["10.0.0.5".to_string(), "fd00::5".to_string()];
    let ctx = EnvContext {
        pod_ips: &ips,
        host_ip: Some("192.168.1.2"),
        node_name: "node-1",
        objects: &objects,
        node_allocatable_cpu_millis: 4000,
        node_allocatable_memory: 8 << 30,
    };
    let c = &p.spec.as_ref().unwrap().containers[0];
    make_environment(p, c, &ctx).map(|v| v.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

fn get(env: &[(String, String)], k: &str) -> Option<String> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

#[test]
fn values_and_expansion() {
    let p = pod(json!({"name": "c", "env": [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-$(C)-$$(A)"},
        {"name": "C", "value": "c"},
        {"name": "D", "value": "$(C)"},
        {"name": "E"},
        {"name": "A", "value": "again-$(A)"},
    ]}));
    let env = env_of(&p).unwrap();
    // Only earlier variables expand; `$$` escapes; a redefinition keeps its place.
    assert_eq!(
        env,
        vec![
            ("A".into(), "again-a".into()),
            ("B".into(), "a-$(C)-$(A)".into()),
            ("C".into(), "c".into()),
            ("D".into(), "c".into()),
            ("E".into(), "".into()),
        ]
    );
}

#[test]
fn field_refs() {
    let f = |path: &str| json!({"name": path.replace(['.', '[', ']', '\''], "_"), "valueFrom": {"fieldRef": {"fieldPath": path}}});
    let paths = [
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "metadata.labels['app']",
        "metadata.annotations['a']",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
    ];
    let p = pod(json!({"name": "c", "env": paths.iter().map(|p| f(p)).collect::<Vec<_>>()}));
    let env = env_of(&p).unwrap();
    let values: Vec<String> = env.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        [
            "web",
            "ns",
            "uid-1",
            "web",
            "b",
            "node-1",
            "sa",
            "192.168.1.2",
            "192.168.1.2",
            "10.0.0.5",
            "10.0.0.5,fd00::5"
        ]
    );
    let bad = pod(
        json!({"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
    );
    let e = env_of(&bad).unwrap_err().to_string();
    assert!(
        e.contains("ns/web")
            && e.contains("container c")
            && e.contains("X")
            && e.contains("spec.bogus"),
        "{e}"
    );
}

#[test]
fn resource_refs_with_divisor_and_allocatable() {
    let r = |name: &str, res: &str, div: Option<&str>| {
        let mut sel = json!({"resource": res});
        if let Some(d) = div {
            sel["divisor"] = json!(d);
        }
        json!({"name": name, "valueFrom": {"resourceFieldRef": sel}})
    };
    let p = pod(json!({"name": "c",
    "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}},
    "env": [
        r("LCPU", "limits.cpu", None),
        r("LCPU_M", "limits.cpu", Some("1m")),
        r("LMEM", "limits.memory", None),
        r("LMEM_MI", "limits.memory", Some("1Mi")),
        r("RCPU", "requests.cpu", None),
        r("RCPU_M", "requests.cpu", Some("1m")),
        r("RMEM_KI", "requests.memory", Some("1Ki")),
        r("LEPH", "limits.ephemeral-storage", None),
        r("REPH", "requests.ephemeral-storage", None),
    ]}));
    let env = env_of(&p).unwrap();
    // cpu limit unset: the node's allocatable 4 cores; requests.cpu 250m rounds up to 1.
    assert_eq!(get(&env, "LCPU").unwrap(), "4");
    assert_eq!(get(&env, "LCPU_M").unwrap(), "4000");
    assert_eq!(get(&env, "LMEM").unwrap(), (128u64 << 20).to_string());
    assert_eq!(get(&env, "LMEM_MI").unwrap(), "128");
    assert_eq!(get(&env, "RCPU").unwrap(), "1");
    assert_eq!(get(&env, "RCPU_M").unwrap(), "250");
    assert_eq!(get(&env, "RMEM_KI").unwrap(), "65536");
    assert_eq!(get(&env, "LEPH").unwrap(), "0");
    assert_eq!(get(&env, "REPH").unwrap(), "0");

    let unset = pod(json!({"name": "c", "env": [r("M", "limits.memory", None)]}));
    assert_eq!(
        get(&env_of(&unset).unwrap(), "M").unwrap(),
        (8u64 << 30).to_string()
    );
    let bad = pod(json!({"name": "c", "env": [r("M", "limits.gpu", None)]}));
    assert!(env_of(&bad).unwrap_err().to_string().contains("limits.gpu"));
}

#[test]
fn config_map_and_secret_keys() {
    let p = pod(json!({"name": "c", "env": [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASSWORD"}}},
        {"name": "TOK", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "TOKEN"}}},
        {"name": "OPT1", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE", "optional": true}}},
        {"name": "OPT2", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "K", "optional": true}}},
        {"name": "OPT3", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "K", "optional": true}}},
    ]}));
    let env = env_of(&p).unwrap();
    assert_eq!(get(&env, "MODE").unwrap(), "fast");
    assert_eq!(get(&env, "PW").unwrap(), "hunter2");
    assert_eq!(get(&env, "TOK").unwrap(), "t0k");
    assert_eq!(get(&env, "OPT1"), None);
    assert_eq!(get(&env, "OPT2"), None);
    assert_eq!(get(&env, "OPT3"), None);

    let missing_key = pod(json!({"name": "c", "env": [
        {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}]}));
    assert_eq!(
        env_of(&missing_key).unwrap_err().to_string(),
        "pod ns/web container c: K: couldn't find key NOPE in ConfigMap ns/cfg"
    );
    let missing_secret = pod(json!({"name": "c", "env": [
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "x"}}}]}));
    assert_eq!(
        env_of(&missing_secret).unwrap_err().to_string(),
        "pod ns/web container c: K: secret ns/gone not found"
    );
    let missing_secret_key = pod(json!({"name": "c", "env": [
        {"name": "K", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "x"}}}]}));
    assert!(matches!(
        env_of(&missing_secret_key),
        Err(EnvError::MissingKey { object, .. }) if object == "Secret ns/sec"
    ));
}

#[test]
fn env_from_with_prefix_and_override() {
    let p = pod(json!({"name": "c",
        "envFrom": [
            {"configMapRef": {"name": "cfg"}},
            {"prefix": "S_", "secretRef": {"name": "sec"}},
            {"configMapRef": {"name": "gone", "optional": true}},
        ],
        "env": [{"name": "MODE", "value": "slow-$(LEVEL)"}]}));
    let env = env_of(&p).unwrap();
    assert_eq!(
        env,
        vec![
            ("LEVEL".into(), "3".into()),
            ("MODE".into(), "slow-3".into()),
            ("S_PASSWORD".into(), "hunter2".into()),
            ("S_TOKEN".into(), "t0k".into()),
        ]
    );
    let missing = pod(json!({"name": "c", "envFrom": [{"configMapRef": {"name": "gone"}}]}));
    assert_eq!(
        env_of(&missing).unwrap_err().to_string(),
        "pod ns/web container c: envFrom[0]: configmap ns/gone not found"
    );
}

#[test]
fn command_and_args() {
    let c: Container = serde_json::from_value(json!({"name": "c",
        "command": ["/bin/$(PROG)", "$$(PROG)"],
        "args": ["--level=$(LEVEL)", "$(UNSET)", "$(LEVEL"]}))
    .unwrap();
    let env = vec![
        cri::KeyValue {
            key: "PROG".into(),
            value: "sh".into(),
        },
        cri::KeyValue {
            key: "LEVEL".into(),
            value: "3".into(),
        },
    ];
    let (cmd, args) = expand_command(&c, &env);
    assert_eq!(cmd, ["/bin/sh", "$(PROG)"]);
    assert_eq!(args, ["--level=3", "$(UNSET)", "$(LEVEL"]);
    let none: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
    assert_eq!(expand_command(&none, &env), (vec![], vec![]));
}

#[test]
fn sub_path_expr() {
    let env = vec![
        cri::KeyValue {
            key: "POD".into(),
            value: "web".into(),
        },
        cri::KeyValue {
            key: "EMPTY".into(),
            value: "".into(),
        },
    ];
    assert_eq!(
        expand_sub_path_expr("logs/$(POD)", &env).unwrap(),
        "logs/web"
    );
    assert_eq!(
        expand_sub_path_expr("$(EMPTY)/$(NONE)", &env).unwrap_err(),
        "missing value for EMPTY, NONE"
    );
}
