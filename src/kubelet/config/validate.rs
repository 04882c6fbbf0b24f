//! Validation of a defaulted pod as the API server's ValidatePodCreate
//! (pkg/apis/core/validation/validation.go) words it: each error is `field.path: reason`,
//! with the reasons of apimachinery's field errors (Required value, Invalid value,
//! Unsupported value, Duplicate value, Not found, Forbidden).
//!
//! Pure: reads the pod, returns the list of errors, changes nothing. Covers the fields the
//! kubelet acts on; admission-level rules (quotas, security policies) are not here.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, Probe, ResourceRequirements, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::defaults::volume_sources;
use super::quantity::{QUANTITY_ERROR, parse_nanos};

const DNS_LABEL_ERROR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS_SUBDOMAIN_ERROR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const ENV_NAME_ERROR: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";
const PORT_RANGE_ERROR: &str = "must be between 1 and 65535, inclusive";

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
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
        container(c, &path, is_init, host_network, &volume_names, &mut errs);
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
        resources(r, "spec.resources", &mut errs);
    }
    errs
}

/// The quantities of every resource list of the pod that do not parse.
pub(crate) fn quantities(pod: &Pod) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return errs;
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    let containers = containers.chain(
        spec.containers
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("spec.containers[{i}]"), c)),
    );
    let mut lists: Vec<(String, &ResourceRequirements)> = containers
        .filter_map(|(p, c)| Some((format!("{p}.resources"), c.resources.as_ref()?)))
        .collect();
    lists.extend(
        spec.resources
            .as_ref()
            .map(|r| ("spec.resources".to_string(), r)),
    );
    for (path, r) in lists {
        for (field, list) in [
            ("limits", r.limits.as_ref()),
            ("requests", r.requests.as_ref()),
        ] {
            for (name, q) in list.into_iter().flatten() {
                if parse_nanos(&q.0).is_none() {
                    errs.push(invalid(
                        &format!("{path}.{field}[{name}]"),
                        &q.0,
                        QUANTITY_ERROR,
                    ));
                }
            }
        }
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

fn container(
    c: &Container,
    path: &str,
    is_init: bool,
    host_network: bool,
    volumes: &BTreeSet<&str>,
    errs: &mut Vec<String>,
) {
    if c.name.is_empty() {
        errs.push(required(&format!("{path}.name")));
    } else {
        dns_label(&format!("{path}.name"), &c.name, errs);
    }
    match c.image.as_deref() {
        None | Some("") => errs.push(required(&format!("{path}.image"))),
        Some(image) if image.trim() != image => errs.push(invalid(
            &format!("{path}.image"),
            image,
            "must not have leading or trailing whitespace",
        )),
        Some(_) => {}
    }
    let pull = c.image_pull_policy.as_deref().unwrap_or("");
    if !PULL_POLICIES.contains(&pull) {
        errs.push(unsupported(
            &format!("{path}.imagePullPolicy"),
            pull,
            PULL_POLICIES,
        ));
    }
    let policy = c.termination_message_policy.as_deref().unwrap_or("");
    if !MESSAGE_POLICIES.contains(&policy) {
        errs.push(unsupported(
            &format!("{path}.terminationMessagePolicy"),
            policy,
            MESSAGE_POLICIES,
        ));
    }
    let sidecar = match (is_init, c.restart_policy.as_deref()) {
        (_, None) => false,
        (true, Some("Always")) => true,
        (true, Some(other)) => {
            errs.push(unsupported(
                &format!("{path}.restartPolicy"),
                other,
                &["Always"],
            ));
            false
        }
        (false, Some(_)) => {
            errs.push(forbidden(
                &format!("{path}.restartPolicy"),
                "may not be set for non-init containers",
            ));
            false
        }
    };
    let mut port_names = BTreeSet::new();
    for (j, p) in c.ports.iter().flatten().enumerate() {
        let pp = format!("{path}.ports[{j}]");
        if !(1..=65535).contains(&p.container_port) {
            errs.push(invalid_int(
                &format!("{pp}.containerPort"),
                i64::from(p.container_port),
                PORT_RANGE_ERROR,
            ));
        }
        let host_port = p.host_port.unwrap_or(0);
        if host_port != 0 && !(1..=65535).contains(&host_port) {
            errs.push(invalid_int(
                &format!("{pp}.hostPort"),
                i64::from(host_port),
                PORT_RANGE_ERROR,
            ));
        }
        if host_network && host_port != p.container_port {
            errs.push(invalid_int(
                &format!("{pp}.hostPort"),
                i64::from(host_port),
                "must match `containerPort` when `hostNetwork` is true",
            ));
        }
        let protocol = p.protocol.as_deref().unwrap_or("");
        if !PROTOCOLS.contains(&protocol) {
            errs.push(unsupported(&format!("{pp}.protocol"), protocol, PROTOCOLS));
        }
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            for msg in port_name_errors(name) {
                errs.push(invalid(&format!("{pp}.name"), name, msg));
            }
            if !port_names.insert(name) {
                errs.push(duplicate(&format!("{pp}.name"), name));
            }
        }
    }
    for (j, e) in c.env.iter().flatten().enumerate() {
        let ep = format!("{path}.env[{j}]");
        if e.name.is_empty() {
            errs.push(required(&format!("{ep}.name")));
        } else if !e
            .name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
        {
            errs.push(invalid(&format!("{ep}.name"), &e.name, ENV_NAME_ERROR));
        }
        if e.value.as_deref().is_some_and(|v| !v.is_empty()) && e.value_from.is_some() {
            errs.push(invalid(
                &format!("{ep}.valueFrom"),
                "",
                "may not be specified when `value` is not empty",
            ));
        }
    }
    let mut mount_paths = BTreeSet::new();
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{path}.volumeMounts[{j}]");
        if m.name.is_empty() {
            errs.push(required(&format!("{mp}.name")));
        } else if !volumes.contains(m.name.as_str()) {
            errs.push(not_found(&format!("{mp}.name"), &m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(required(&format!("{mp}.mountPath")));
        } else if !mount_paths.insert(m.mount_path.as_str()) {
            errs.push(invalid(
                &format!("{mp}.mountPath"),
                &m.mount_path,
                "must be unique",
            ));
        }
    }
    if let Some(r) = c.resources.as_ref() {
        resources(r, &format!("{path}.resources"), errs);
    }
    let probes = [
        (c.liveness_probe.as_ref(), "livenessProbe", true),
        (c.readiness_probe.as_ref(), "readinessProbe", false),
        (c.startup_probe.as_ref(), "startupProbe", true),
    ];
    for (p, field, success_one) in probes {
        let Some(p) = p else { continue };
        let pp = format!("{path}.{field}");
        if is_init && !sidecar {
            errs.push(forbidden(
                &pp,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        probe(p, &pp, success_one, &port_names, errs);
    }
}

fn probe(
    p: &Probe,
    path: &str,
    success_one: bool,
    port_names: &BTreeSet<&str>,
    errs: &mut Vec<String>,
) {
    let handlers: Vec<&str> = [
        p.exec.is_some().then_some("exec"),
        p.http_get.is_some().then_some("httpGet"),
        p.tcp_socket.is_some().then_some("tcpSocket"),
        p.grpc.is_some().then_some("grpc"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if handlers.is_empty() {
        errs.push(required_because(path, "must specify a handler type"));
    }
    for extra in handlers.iter().skip(1) {
        errs.push(forbidden(
            &format!("{path}.{extra}"),
            "may not specify more than 1 handler type",
        ));
    }
    if p.exec
        .as_ref()
        .is_some_and(|e| e.command.as_ref().is_none_or(Vec::is_empty))
    {
        errs.push(required(&format!("{path}.exec.command")));
    }
    if let Some(h) = p.http_get.as_ref() {
        port_ref(&h.port, &format!("{path}.httpGet.port"), port_names, errs);
        let scheme = h.scheme.as_deref().unwrap_or("");
        if !["HTTP", "HTTPS"].contains(&scheme) {
            errs.push(unsupported(
                &format!("{path}.httpGet.scheme"),
                scheme,
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if let Some(t) = p.tcp_socket.as_ref() {
        port_ref(&t.port, &format!("{path}.tcpSocket.port"), port_names, errs);
    }
    if let Some(g) = p.grpc.as_ref().filter(|g| !(1..=65535).contains(&g.port)) {
        errs.push(invalid_int(
            &format!("{path}.grpc.port"),
            i64::from(g.port),
            PORT_RANGE_ERROR,
        ));
    }
    let numbers = [
        (p.initial_delay_seconds, "initialDelaySeconds"),
        (p.timeout_seconds, "timeoutSeconds"),
        (p.period_seconds, "periodSeconds"),
        (p.success_threshold, "successThreshold"),
        (p.failure_threshold, "failureThreshold"),
    ];
    for (value, field) in numbers {
        if let Some(v) = value.filter(|v| *v < 0) {
            errs.push(invalid_int(
                &format!("{path}.{field}"),
                i64::from(v),
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(s) = p.success_threshold.filter(|s| success_one && *s != 1) {
        errs.push(invalid_int(
            &format!("{path}.successThreshold"),
            i64::from(s),
            "must be 1",
        ));
    }
    if let Some(g) = p.termination_grace_period_seconds.filter(|g| *g <= 0) {
        errs.push(invalid_int(
            &format!("{path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than 0",
        ));
    }
}

/// A probe's port: a number 1-65535, or the name of one of the container's ports.
fn port_ref(port: &IntOrString, path: &str, port_names: &BTreeSet<&str>, errs: &mut Vec<String>) {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            errs.push(invalid_int(path, i64::from(*n), PORT_RANGE_ERROR))
        }
        IntOrString::Int(_) => {}
        IntOrString::String(name) => {
            let msgs = port_name_errors(name);
            for msg in &msgs {
                errs.push(invalid(path, name, msg));
            }
            if msgs.is_empty() && !port_names.contains(name.as_str()) {
                errs.push(not_found(path, name));
            }
        }
    }
}

fn resources(r: &ResourceRequirements, path: &str, errs: &mut Vec<String>) {
    let mut parsed = |list: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
                      field: &str| {
        let mut out = std::collections::BTreeMap::new();
        for (name, q) in list.into_iter().flatten() {
            let fp = format!("{path}.{field}[{name}]");
            match parse_nanos(&q.0) {
                None => errs.push(invalid(&fp, &q.0, QUANTITY_ERROR)),
                Some(v) if v < 0 => {
                    errs.push(invalid(&fp, &q.0, "must be greater than or equal to 0"))
                }
                Some(v) => {
                    out.insert(name.clone(), (v, q.0.clone()));
                }
            }
        }
        out
    };
    let limits = parsed(r.limits.as_ref(), "limits");
    let requests = parsed(r.requests.as_ref(), "requests");
    for (name, (req, req_text)) in &requests {
        let Some((limit, limit_text)) = limits.get(name) else {
            continue;
        };
        let fp = format!("{path}.requests[{name}]");
        if !overcommit_allowed(name) && req != limit {
            errs.push(invalid(
                &fp,
                req_text,
                &format!("must be equal to {name} limit of {limit_text}"),
            ));
        } else if req > limit {
            errs.push(invalid(
                &fp,
                req_text,
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            ));
        }
    }
}

/// Native resources may be requested below their limit; extended resources and huge
/// pages may not (IsOvercommitAllowed).
fn overcommit_allowed(name: &str) -> bool {
    let native = !name.contains('/') || name.starts_with("kubernetes.io/");
    native && !name.starts_with("hugepages-")
}

fn dns_label(path: &str, value: &str, errs: &mut Vec<String>) {
    if value.len() > 63 {
        errs.push(invalid(path, value, "must be no more than 63 characters"));
    }
    if !is_dns_label(value) {
        errs.push(invalid(path, value, DNS_LABEL_ERROR));
    }
}

fn dns_subdomain(path: &str, value: &str, errs: &mut Vec<String>) {
    if value.len() > 253 {
        errs.push(invalid(path, value, "must be no more than 253 characters"));
    }
    if !value.split('.').all(is_dns_label) {
        errs.push(invalid(path, value, DNS_SUBDOMAIN_ERROR));
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// IsValidPortName: an IANA_SVC_NAME.
fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut msgs = Vec::new();
    if name.len() > 15 {
        msgs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        msgs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        msgs.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        msgs.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        msgs.push("must not begin or end with a hyphen");
    }
    msgs
}
