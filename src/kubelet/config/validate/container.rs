//! A container of the pod: name, image, policies, ports, env, mounts, resources, probes.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{PORT_RANGE_ERROR, dns_label, port_name_errors};
use super::resources::resources;
use super::{
    duplicate, forbidden, invalid, invalid_int, not_found, required, required_because, unsupported,
};

const ENV_NAME_ERROR: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];

pub(super) fn container(
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
        probe(p, &pp, success_one, errs);
    }
}

fn probe(p: &Probe, path: &str, success_one: bool, errs: &mut Vec<String>) {
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
        port_ref(&h.port, &format!("{path}.httpGet.port"), errs);
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
        port_ref(&t.port, &format!("{path}.tcpSocket.port"), errs);
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

/// A probe's port: a number 1-65535, or a well-formed port name (upstream's
/// ValidatePortNumOrName). Whether the container declares the name is not checked here,
/// as the API server does not: the prober finds out when it probes.
fn port_ref(port: &IntOrString, path: &str, errs: &mut Vec<String>) {
    match port {
        IntOrString::Int(n) if !(1..=65535).contains(n) => {
            errs.push(invalid_int(path, i64::from(*n), PORT_RANGE_ERROR))
        }
        IntOrString::Int(_) => {}
        IntOrString::String(name) => {
            for msg in port_name_errors(name) {
                errs.push(invalid(path, name, msg));
            }
        }
    }
}
