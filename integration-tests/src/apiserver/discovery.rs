//! The non-resource paths: /api, /apis, the per-group-version APIResourceLists, /version
//! and the health checks, shaped as kube-apiserver answers them.

use serde_json::{Value, json};

use super::resources::{self, RESOURCES};

const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The body served at a non-resource `path`, None when nothing is there.
pub fn serve(path: &str, server_addr: &str) -> Option<Value> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    Some(match segs.as_slice() {
        ["api"] => json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}],
        }),
        ["api", "v1"] => resource_list("", "v1"),
        ["apis"] => json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": resources::groups().into_iter().map(group).collect::<Vec<_>>(),
        }),
        ["apis", g] if resources::groups().contains(g) => {
            let mut v = group(g);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        }
        ["apis", g, "v1"] if resources::groups().contains(g) => resource_list(g, "v1"),
        ["version"] => json!({
            "major": "1", "minor": "35", "gitVersion": "v1.35.0-berth-test",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc",
            "platform": format!("linux/{}", go_arch()),
        }),
        _ => return None,
    })
}

/// /healthz, /readyz and /livez (and their `/<check>` children) answer plain "ok".
pub fn is_health(path: &str) -> bool {
    ["/healthz", "/readyz", "/livez"]
        .iter()
        .any(|h| path == *h || path.starts_with(&format!("{h}/")))
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn group(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        list.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS, "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let (kind, verbs, g, v): (&str, &[&str], &str, &str) = match *sub {
                "token" => ("TokenRequest", &["create"], "authentication.k8s.io", "v1"),
                "eviction" => ("Eviction", &["create"], "policy", "v1"),
                _ => (r.kind, &["get", "patch", "update"], r.group, r.version),
            };
            list.push(json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": kind, "verbs": verbs, "group": g, "version": v,
            }));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}
