//! A container's environment as kubelet builds it (upstream pkg/kubelet/kubelet_pods.go
//! makeEnvironmentVariables): `envFrom` first (ConfigMaps and Secrets, with a prefix),
//! then `env` in order, each value either literal with `$(VAR)` references to the
//! variables before it expanded, or taken from the pod's fields, the container's
//! resources, a ConfigMap key or a Secret key. Also the `$(VAR)` expansion of command
//! and args.
//!
//! Owns no state and touches no file: plain data in, plain data out. The ConfigMaps and
//! Secrets come from [`Objects`]; the node's facts from [`EnvContext`]. Service links are
//! not made: the standalone kubelet knows no Services (upstream makes none without an API
//! server either).

mod expansion;
pub(crate) mod fieldpath;
pub(crate) mod resource;

use std::collections::BTreeMap;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::kubelet::Objects;

pub use expansion::expand;
pub use resource::Allocatable;

/// What the environment needs beyond the pod: its IPs, the node, the API objects.
#[derive(Debug, Clone, Copy)]
pub struct EnvContext<'a> {
    pub pod_ips: &'a [String],
    pub host_ip: Option<&'a str>,
    pub node_name: &'a str,
    pub objects: &'a Objects,
    pub node_allocatable_cpu_millis: i64,
    pub node_allocatable_memory: i64,
}

/// Why a container's environment cannot be made; each names the pod, the container and
/// the variable (or `envFrom[i]`).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("pod {pod} container {container}: {var}: configmap {namespace}/{name} not found")]
    ConfigMapNotFound {
        pod: String,
        container: String,
        var: String,
        namespace: String,
        name: String,
    },
    #[error("pod {pod} container {container}: {var}: secret {namespace}/{name} not found")]
    SecretNotFound {
        pod: String,
        container: String,
        var: String,
        namespace: String,
        name: String,
    },
    /// `object` is `ConfigMap <namespace>/<name>` or `Secret <namespace>/<name>`.
    #[error("pod {pod} container {container}: {var}: couldn't find key {key} in {object}")]
    MissingKey {
        pod: String,
        container: String,
        var: String,
        object: String,
        key: String,
    },
    #[error("pod {pod} container {container}: {var}: {reason}")]
    Field {
        pod: String,
        container: String,
        var: String,
        reason: String,
    },
}

/// Variables in the order they were first set; a later value replaces an earlier one in
/// place (upstream keeps them in a map, so its order is random; this one is stable).
#[derive(Default)]
struct Env {
    order: Vec<String>,
    values: BTreeMap<String, String>,
}

impl Env {
    fn set(&mut self, k: String, v: String) {
        if !self.values.contains_key(&k) {
            self.order.push(k.clone());
        }
        self.values.insert(k, v);
    }
}

/// The container's environment, as the CRI receives it.
pub fn make_environment(
    pod: &Pod,
    container: &Container,
    ctx: &EnvContext,
) -> Result<Vec<cri::KeyValue>, EnvError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_name = format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or_default());
    let err_field = |var: &str, reason: String| EnvError::Field {
        pod: pod_name.clone(),
        container: container.name.clone(),
        var: var.to_string(),
        reason,
    };
    let not_found = |secret: bool, var: &str, name: &str| {
        let (pod, container, var) = (pod_name.clone(), container.name.clone(), var.to_string());
        let (namespace, name) = (ns.clone(), name.to_string());
        if secret {
            EnvError::SecretNotFound {
                pod,
                container,
                var,
                namespace,
                name,
            }
        } else {
            EnvError::ConfigMapNotFound {
                pod,
                container,
                var,
                namespace,
                name,
            }
        }
    };
    let missing_key = |secret: bool, var: &str, name: &str, key: &str| EnvError::MissingKey {
        pod: pod_name.clone(),
        container: container.name.clone(),
        var: var.to_string(),
        object: format!(
            "{} {ns}/{name}",
            if secret { "Secret" } else { "ConfigMap" }
        ),
        key: key.to_string(),
    };

    let mut env = Env::default();
    for (i, from) in container.env_from.iter().flatten().enumerate() {
        let var = format!("envFrom[{i}]");
        let prefix = from.prefix.as_deref().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match ctx.objects.config_map(&ns, &r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(not_found(false, &var, &r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match ctx.objects.secret(&ns, &r.name) {
                Some(s) => {
                    for (k, v) in secret_data(s) {
                        env.set(format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(not_found(true, &var, &r.name)),
            }
        }
    }

    for e in container.env.iter().flatten() {
        let var = e.name.as_str();
        let literal = e.value.as_deref().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand(literal, |k| env.values.get(k).cloned())
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                pod_field(pod, ctx, f.api_version.as_deref(), &f.field_path)
                    .map_err(|r| err_field(var, r))?
            } else if let Some(r) = &from.resource_field_ref {
                let alloc = Allocatable {
                    cpu_millis: ctx.node_allocatable_cpu_millis,
                    memory: ctx.node_allocatable_memory,
                };
                resource::resource_value(pod, Some(container), r, alloc)
                    .map_err(|r| err_field(var, r))?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = ctx.objects.config_map(&ns, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(not_found(false, var, &r.name));
                };
                match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    Some(v) => v.clone(),
                    None if optional => continue,
                    None => return Err(missing_key(false, var, &r.name, &r.key)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(s) = ctx.objects.secret(&ns, &r.name) else {
                    if optional {
                        continue;
                    }
                    return Err(not_found(true, var, &r.name));
                };
                match secret_data(s).remove(&r.key) {
                    Some(v) => v,
                    None if optional => continue,
                    None => return Err(missing_key(true, var, &r.name, &r.key)),
                }
            } else {
                return Err(err_field(var, "valueFrom names no source".into()));
            }
        } else {
            String::new()
        };
        env.set(e.name.clone(), value);
    }

    Ok(env
        .order
        .into_iter()
        .map(|k| {
            let value = env.values.get(&k).cloned().unwrap_or_default();
            cri::KeyValue { key: k, value }
        })
        .collect())
}

/// A Secret's data as strings. `stringData` is merged over `data`, as the API server
/// does on write, so a Secret written in a static manifest reads as the API would show it.
pub(crate) fn secret_data(s: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// A `fieldRef` for an env var (upstream podFieldSelectorRuntimeValue).
fn pod_field(
    pod: &Pod,
    ctx: &EnvContext,
    api_version: Option<&str>,
    path: &str,
) -> Result<String, String> {
    if let Some(v) = api_version.filter(|v| !v.is_empty() && *v != "v1") {
        return Err(format!("unsupported pod version: {v}"));
    }
    let spec = pod.spec.as_ref();
    match path {
        "spec.nodeName" => Ok(spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| ctx.node_name.to_string())),
        "spec.serviceAccountName" => Ok(spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default()),
        "status.hostIP" | "status.hostIPs" => ctx
            .host_ip
            .map(str::to_string)
            .ok_or_else(|| "the node's IP is not known".to_string()),
        "status.podIP" => Ok(ctx.pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => Ok(ctx.pod_ips.join(",")),
        _ => fieldpath::extract(pod, path),
    }
}

/// Command and args with `$(VAR)` references to the container's environment expanded
/// (upstream ExpandContainerCommandAndArgs).
pub fn expand_command(container: &Container, env: &[cri::KeyValue]) -> (Vec<String>, Vec<String>) {
    let map: BTreeMap<&str, &str> = env
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    let lookup = |k: &str| map.get(k).map(|v| v.to_string());
    let expand_all = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, lookup)).collect()
    };
    (expand_all(&container.command), expand_all(&container.args))
}

/// A volume mount's `subPathExpr` expanded with the container's environment; every name
/// it references must be set and non-empty (upstream ExpandContainerVolumeMounts). The
/// error lists the missing names.
pub fn expand_sub_path_expr(expr: &str, env: &[cri::KeyValue]) -> Result<String, String> {
    let map: BTreeMap<&str, &str> = env
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect();
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let out = expand(expr, |k| match map.get(k) {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => {
            missing.borrow_mut().insert(k.to_string());
            Some(String::new())
        }
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ))
    }
}

#[cfg(test)]
mod tests;
