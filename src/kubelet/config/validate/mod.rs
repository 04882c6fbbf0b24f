//! Validation of a defaulted pod as the API server's ValidatePodCreate
//! (pkg/apis/core/validation/validation.go) words it: each error is `field.path: reason`,
//! with the reasons of apimachinery's field errors (Required value, Invalid value,
//! Unsupported value, Duplicate value, Not found, Forbidden).
//!
//! Pure: reads the pod, returns the list of errors, changes nothing. Covers the fields the
//! kubelet acts on; admission-level rules (quotas, security policies) are not here.

mod container;
mod names;
mod resources;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::defaults::volume_sources;
use names::{dns_label, dns_subdomain};
pub(crate) use resources::quantities;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

fn required(path: &str) -> String {
    format!("{path}: Required value")
}
fn required_because(path: &str, detail: &str) -> String {
    format!("{path}: Required value: {detail}")
}
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value:?}: {detail}")
}
fn invalid_int(path: &str, value: i64, detail: &str) -> String {
    format!("{path}: Invalid value: {value}: {detail}")
}
fn unsupported(path: &str, value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "{path}: Unsupported value: {value:?}: supported values: {}",
        list.join(", ")
    )
}
fn duplicate(path: &str, value: &str) -> String {
    format!("{path}: Duplicate value: {value:?}")
}
fn not_found(path: &str, value: &str) -> String {
    format!("{path}: Not found: {value:?}")
}
fn forbidden(path: &str, detail: &str) -> String {
    format!("{path}: Forbidden: {detail}")
}

/// Every validation error of `pod`, worded as the API server words them.
pub(crate) fn pod(pod: &Pod) -> Vec<String> {
    let mut errs = Vec::new();
    metadata(&pod.metadata, &mut errs);
    let Some(spec) = pod.spec.as_ref() else {
        errs.push(required("spec"));
        return errs;
    };
    let mut volume_names = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let path = format!("spec.volumes[{i}]");
        volume(v, &path, &mut errs);
        if !v.name.is_empty() && !volume_names.insert(v.name.as_str()) {
            errs.push(duplicate(&format!("{path}.name"), &v.name));
        }
    }
    if spec.containers.is_empty() {
        errs.push(required("spec.containers"));
    }
    let host_network = spec.host_network == Some(true);
    let mut names = BTreeSet::new();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("spec.initContainers", c, true));
    let regular = spec
        .containers
        .iter()
        .map(|c| ("spec.containers", c, false));
    let mut index = std::collections::HashMap::new();
    for (list, c, is_init) in init.chain(regular) {
        let i = index.entry(list).or_insert(0usize);
        let path = format!("{list}[{i}]");
        *i += 1;
        if !c.name.is_empty() && !names.insert(c.name.as_str()) {
            errs.push(duplicate(&format!("{path}.name"), &c.name));
        }
        container::container(c, &path, is_init, host_network, &volume_names, &mut errs);
    }
    let restart = spec.restart_policy.as_deref().unwrap_or("");
    if !RESTART_POLICIES.contains(&restart) {
        errs.push(unsupported("spec.restartPolicy", restart, RESTART_POLICIES));
    }
    let dns = spec.dns_policy.as_deref().unwrap_or("");
    if !DNS_POLICIES.contains(&dns) {
        errs.push(unsupported("spec.dnsPolicy", dns, DNS_POLICIES));
    } else if dns == "None" && spec.dns_config.is_none() {
        errs.push(required_because(
            "spec.dnsConfig",
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    if let Some(d) = spec
        .active_deadline_seconds
        .filter(|d| *d <= 0 || *d > i64::from(i32::MAX))
    {
        errs.push(invalid_int(
            "spec.activeDeadlineSeconds",
            d,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(r) = spec.resources.as_ref() {
        resources::resources(r, "spec.resources", &mut errs);
    }
    errs
}

/// A ConfigMap or Secret: its name and namespace.
pub(crate) fn config_map(cm: &ConfigMap) -> Vec<String> {
    let mut errs = Vec::new();
    metadata(&cm.metadata, &mut errs);
    errs
}

pub(crate) fn secret(s: &Secret) -> Vec<String> {
    let mut errs = Vec::new();
    metadata(&s.metadata, &mut errs);
    errs
}

fn metadata(meta: &ObjectMeta, errs: &mut Vec<String>) {
    match meta.name.as_deref() {
        None | Some("") => errs.push(required_because(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => dns_subdomain("metadata.name", name, errs),
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        dns_label("metadata.namespace", ns, errs);
    }
}

fn volume(v: &Volume, path: &str, errs: &mut Vec<String>) {
    if v.name.is_empty() {
        errs.push(required(&format!("{path}.name")));
    } else {
        dns_label(&format!("{path}.name"), &v.name, errs);
    }
    let sources = volume_sources(v);
    if sources.is_empty() {
        errs.push(required_because(path, "must specify a volume type"));
    }
    for extra in sources.iter().skip(1) {
        errs.push(forbidden(
            &format!("{path}.{extra}"),
            "may not specify more than 1 volume type",
        ));
    }
    if let Some(h) = v.host_path.as_ref() {
        if h.path.is_empty() {
            errs.push(required(&format!("{path}.hostPath.path")));
        }
        let t = h.type_.as_deref().unwrap_or("");
        if !HOST_PATH_TYPES.contains(&t) {
            errs.push(unsupported(
                &format!("{path}.hostPath.type"),
                t,
                HOST_PATH_TYPES,
            ));
        }
    }
    let modes = [
        (
            v.config_map.as_ref().and_then(|s| s.default_mode),
            "configMap",
        ),
        (v.secret.as_ref().and_then(|s| s.default_mode), "secret"),
        (
            v.downward_api.as_ref().and_then(|s| s.default_mode),
            "downwardAPI",
        ),
        (
            v.projected.as_ref().and_then(|s| s.default_mode),
            "projected",
        ),
    ];
    for (mode, source) in modes {
        if let Some(m) = mode.filter(|m| !(0..=0o777).contains(m)) {
            errs.push(invalid_int(
                &format!("{path}.{source}.defaultMode"),
                i64::from(m),
                "must be a number between 0 and 0777 (octal), both inclusive",
            ));
        }
    }
    if v.secret
        .as_ref()
        .is_some_and(|s| s.secret_name.as_deref().unwrap_or("").is_empty())
    {
        errs.push(required(&format!("{path}.secret.secretName")));
    }
    if v.config_map.as_ref().is_some_and(|s| s.name.is_empty()) {
        errs.push(required(&format!("{path}.configMap.name")));
    }
}
