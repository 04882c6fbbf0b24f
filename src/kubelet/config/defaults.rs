//! The API server's defaulting of a v1 Pod (SetDefaults_* of pkg/apis/core/v1/defaults.go
//! and the generated SetObjectDefaults_Pod that walks it), so that a pod read from a file
//! looks exactly as one read from the API server.
//!
//! Pure: owns no state and touches nothing but the object it is given. Not done here:
//! the volume plugins berth does not run (iscsi, rbd, azureDisk, scaleIO), the rounding of
//! quantities to milli scale, and the pod-level request defaults that need the aggregate
//! of the containers' requests (only "pod request = pod limit" when no container asks).

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, EnvVar, HTTPGetAction, Lifecycle, Pod,
    PodSecurityContext, PodSpec, Probe, ResourceRequirements, Secret, Volume,
};

/// Resource names the kubelet can hold at pod level (IsSupportedPodLevelResource).
const POD_LEVEL_RESOURCES: &[&str] = &["cpu", "memory"];

/// Mode of the files of configMap, secret, downwardAPI and projected volumes (0644).
pub const DEFAULT_VOLUME_MODE: i32 = 0o644;

pub(crate) fn pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    pod_spec(spec);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container(c);
        requests_from_limits(c.resources.as_mut());
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        // SetDefaults_EphemeralContainer is SetDefaults_Container on the common part.
        set_default(
            &mut c.image_pull_policy,
            pull_policy(c.image.as_deref().unwrap_or("")),
        );
        set_default(&mut c.termination_message_path, "/dev/termination-log");
        set_default(&mut c.termination_message_policy, "File");
        for p in c.ports.iter_mut().flatten() {
            set_default(&mut p.protocol, "TCP");
        }
        env(c.env.as_mut());
    }
    pod_level_requests(spec);
    spec.enable_service_links.get_or_insert(true);
    if spec.host_network == Some(true) {
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            for p in c.ports.iter_mut().flatten() {
                if p.host_port.unwrap_or(0) == 0 {
                    p.host_port = Some(p.container_port);
                }
            }
        }
    }
}

fn pod_spec(spec: &mut PodSpec) {
    set_default(&mut spec.dns_policy, "ClusterFirst");
    set_default(&mut spec.restart_policy, "Always");
    spec.security_context
        .get_or_insert_with(PodSecurityContext::default);
    spec.termination_grace_period_seconds.get_or_insert(30);
    set_default(&mut spec.scheduler_name, "default-scheduler");
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
}

fn container(c: &mut Container) {
    set_default(
        &mut c.image_pull_policy,
        pull_policy(c.image.as_deref().unwrap_or("")),
    );
    set_default(&mut c.termination_message_path, "/dev/termination-log");
    set_default(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set_default(&mut p.protocol, "TCP");
    }
    for probe_ in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe(probe_);
    }
    if let Some(l) = c.lifecycle.as_mut() {
        lifecycle(l);
    }
    env(c.env.as_mut());
}

fn env(env: Option<&mut Vec<EnvVar>>) {
    for e in env.into_iter().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_default(&mut f.api_version, "v1");
        }
    }
}

fn probe(p: &mut Probe) {
    set_nonzero(&mut p.timeout_seconds, 1);
    set_nonzero(&mut p.period_seconds, 10);
    set_nonzero(&mut p.success_threshold, 1);
    set_nonzero(&mut p.failure_threshold, 3);
    if let Some(h) = p.http_get.as_mut() {
        http_get(h);
    }
}

fn lifecycle(l: &mut Lifecycle) {
    for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
        if let Some(g) = h.http_get.as_mut() {
            http_get(g);
        }
    }
}

fn http_get(h: &mut HTTPGetAction) {
    set_default(&mut h.path, "/");
    set_default(&mut h.scheme, "HTTP");
}

fn volume(v: &mut Volume) {
    if source_count(v) == 0 {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = v.config_map.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.secret.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
    }
    if let Some(s) = v.downward_api.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        downward_items(s.items.as_mut());
    }
    if let Some(s) = v.projected.as_mut() {
        s.default_mode.get_or_insert(DEFAULT_VOLUME_MODE);
        for p in s.sources.iter_mut().flatten() {
            if let Some(t) = p.service_account_token.as_mut() {
                t.expiration_seconds.get_or_insert(3600);
            }
            if let Some(d) = p.downward_api.as_mut() {
                downward_items(d.items.as_mut());
            }
        }
    }
    if let Some(s) = v.host_path.as_mut() {
        s.type_.get_or_insert_with(String::new);
    }
    if let Some(s) = v.image.as_mut() {
        set_default(
            &mut s.pull_policy,
            pull_policy(s.reference.as_deref().unwrap_or("")),
        );
    }
}

fn downward_items(items: Option<&mut Vec<DownwardAPIVolumeFile>>) {
    for f in items.into_iter().flatten() {
        if let Some(r) = f.field_ref.as_mut() {
            set_default(&mut r.api_version, "v1");
        }
    }
}

/// How many volume sources `v` sets: the fields of its JSON form other than `name`.
pub(crate) fn source_count(v: &Volume) -> usize {
    volume_sources(v).len()
}

/// The JSON names of the sources `v` sets (`hostPath`, `emptyDir`, ...), in field order.
pub(crate) fn volume_sources(v: &Volume) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter(|(k, v)| k != "name" && !v.is_null())
            .map(|(k, _)| k)
            .collect(),
        _ => Vec::new(),
    }
}

/// SetDefaults_Pod: a container's request defaults to its limit.
fn requests_from_limits(r: Option<&mut ResourceRequirements>) {
    let Some(r) = r else { return };
    let Some(limits) = r.limits.as_ref() else {
        return;
    };
    let requests = r.requests.get_or_insert_with(Default::default);
    for (k, v) in limits {
        requests.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// defaultPodRequests, the part that needs no arithmetic: a pod-level limit with no pod
/// request and no container request for that resource becomes the pod request.
fn pod_level_requests(spec: &mut PodSpec) {
    let containers_asking = |name: &str| {
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .any(|c| {
                c.resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .is_some_and(|r| r.contains_key(name))
            })
    };
    let Some(limits) = spec.resources.as_ref().and_then(|r| r.limits.clone()) else {
        return;
    };
    let mut added = Vec::new();
    for (k, v) in limits {
        let has_request = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some_and(|r| r.contains_key(&k));
        if !has_request && POD_LEVEL_RESOURCES.contains(&k.as_str()) && !containers_asking(&k) {
            added.push((k, v));
        }
    }
    if let Some(r) = spec.resources.as_mut().filter(|_| !added.is_empty()) {
        r.requests
            .get_or_insert_with(Default::default)
            .extend(added);
    }
}

/// SetDefaults_Container: Always for `:latest` or no tag (and no digest), else IfNotPresent.
pub(crate) fn pull_policy(image: &str) -> &'static str {
    if image_tag(image) == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference as the docker reference parser reads it: the text after
/// the last `:` of the last path component; "latest" when there is neither tag nor digest.
pub(crate) fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if digest.is_some() => "",
        None => "latest",
    }
}

fn set_default(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(value.to_string());
    }
}

fn set_nonzero(field: &mut Option<i32>, value: i32) {
    if field.unwrap_or(0) == 0 {
        *field = Some(value);
    }
}

/// SetDefaults_ConfigMap: data is an empty map rather than absent.
pub(crate) fn config_map(cm: &mut ConfigMap) {
    cm.data.get_or_insert_with(Default::default);
}

/// SetDefaults_Secret: type Opaque.
pub(crate) fn secret(s: &mut Secret) {
    set_default(&mut s.type_, "Opaque");
}
