//! A pod's sandbox config (kubelet's generatePodSandboxConfig): metadata, hostname, the
//! pod's log directory, DNS, host ports, labels, and the Linux part (cgroup parent,
//! security context, sysctls).

use std::path::Path;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

use super::{dns, labels, security};

/// What the sandbox config needs besides the pod.
#[derive(Debug, Clone)]
pub struct SandboxInputs<'a> {
    pub attempt: u32,
    pub cgroup_parent: String,
    pub pod_log_dir: &'a Path,
    pub dns: &'a dns::HostDns,
    pub seccomp_default: bool,
    pub resources: Option<cri::LinuxContainerResources>,
}

/// `/var/log/pods/<namespace>_<name>_<uid>`, as kubelet names a pod's log directory.
pub fn log_directory(root: &Path, pod: &Pod) -> std::path::PathBuf {
    root.join(format!(
        "{}_{}_{}",
        labels::namespace(pod),
        labels::name(pod),
        labels::uid(pod)
    ))
}

/// The pod's hostname and domain (kubelet's GeneratePodHostNameAndDomain): spec.hostname
/// or the pod's name, truncated to 63 characters.
pub fn hostname(pod: &Pod) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network == Some(true) {
        return String::new();
    }
    let mut h = spec
        .hostname
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| labels::name(pod).to_string());
    if h.len() > 63 {
        h.truncate(63);
        while h.ends_with(['-', '.']) {
            h.pop();
        }
    }
    h
}

/// The sandbox config of one attempt.
pub fn config(pod: &Pod, inp: &SandboxInputs<'_>) -> cri::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut port_mappings = vec![];
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            let protocol = match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            };
            port_mappings.push(cri::PortMapping {
                protocol: protocol as i32,
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let sysctls = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: labels::name(pod).into(),
            uid: labels::uid(pod).into(),
            namespace: labels::namespace(pod).into(),
            attempt: inp.attempt,
        }),
        hostname: hostname(pod),
        log_directory: log_directory(inp.pod_log_dir, pod)
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns::pod_dns(pod, inp.dns)),
        port_mappings,
        labels: labels::sandbox_labels(pod),
        annotations: labels::sandbox_annotations(pod),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: inp.cgroup_parent.clone(),
            security_context: Some(security::sandbox_context(pod, inp.seccomp_default)),
            sysctls,
            resources: inp.resources.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
