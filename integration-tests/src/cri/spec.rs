//! The requests kubelet's kuberuntime builds (generatePodSandboxConfig,
//! generateContainerConfig, the list filters), as plain data for the tests to adjust.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL, api, strings,
};

/// An ImageSpec naming `image`, as kubelet sends it (user_specified_image set too).
pub fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.into(),
        user_specified_image: image.into(),
        ..Default::default()
    }
}

/// A pod as kubelet describes it to RunPodSandbox.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    /// The pod's log directory (kubelet: /var/log/pods/<ns>_<name>_<uid>).
    pub log_directory: PathBuf,
    /// A cgroupfs-driver parent path, e.g. `/berth-test-1234/pod<uid>`.
    pub cgroup_parent: String,
    /// (host port, container port, protocol).
    pub port_mappings: Vec<(i32, i32, api::Protocol)>,
    pub dns: Option<api::DnsConfig>,
    /// Namespace modes for network, pid, ipc (kubelet: POD unless hostNetwork/PID/IPC;
    /// pid CONTAINER unless shareProcessNamespace).
    pub host_network: bool,
    pub share_pid: bool,
    pub sysctls: HashMap<String, String>,
}

impl PodSpec {
    /// A pod named `name` in namespace `default` with a fresh-looking uid, its logs in
    /// `log_directory` and its cgroup under `cgroup_parent`.
    pub fn new(name: &str, log_directory: &Path, cgroup_parent: &str) -> Self {
        Self {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("{name}-uid-{}", crate::util::random_hex(8)),
            log_directory: log_directory.into(),
            cgroup_parent: cgroup_parent.into(),
            ..Default::default()
        }
    }

    /// The PodSandboxConfig kubelet's generatePodSandboxConfig would send.
    pub fn config(&self) -> api::PodSandboxConfig {
        let labels = HashMap::from([
            (POD_NAME_LABEL.to_string(), self.name.clone()),
            (POD_NAMESPACE_LABEL.to_string(), self.namespace.clone()),
            (POD_UID_LABEL.to_string(), self.uid.clone()),
        ]);
        let mode = |host: bool, pod: bool| {
            if host {
                api::NamespaceMode::Node
            } else if pod {
                api::NamespaceMode::Pod
            } else {
                api::NamespaceMode::Container
            }
        };
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: self.attempt,
            }),
            hostname: if self.host_network {
                String::new()
            } else {
                self.name.clone()
            },
            log_directory: self.log_directory.display().to_string(),
            dns_config: self.dns.clone(),
            port_mappings: self
                .port_mappings
                .iter()
                .map(|&(host, container, proto)| api::PortMapping {
                    protocol: proto as i32,
                    container_port: container,
                    host_port: host,
                    host_ip: String::new(),
                })
                .collect(),
            labels,
            annotations: HashMap::from([(
                "kubernetes.io/config.source".to_string(),
                "api".to_string(),
            )]),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: mode(self.host_network, true) as i32,
                        pid: mode(false, self.share_pid) as i32,
                        ipc: api::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    seccomp: Some(api::SecurityProfile {
                        profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
                sysctls: self.sysctls.clone(),
                ..Default::default()
            }),
            windows: None,
        }
    }
}

/// A container as kubelet describes it to CreateContainer.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    /// Relative to the pod's log directory (kubelet: `<name>/<restart count>.log`).
    pub log_path: String,
    pub attempt: u32,
    pub stdin: bool,
    /// The first attach's stdin EOF closes the container's stdin.
    pub stdin_once: bool,
    pub tty: bool,
    /// cgroup memory limit in bytes (0: none).
    pub memory_limit: i64,
    /// CFS quota and period in microseconds (0: none), and cpu shares.
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub cpu_shares: i64,
    pub security: Option<api::LinuxContainerSecurityContext>,
    pub mounts: Vec<api::Mount>,
}

impl ContainerSpec {
    /// A container `name` running `image` with `command` (the image's Cmd when empty),
    /// logging to `<name>/0.log`.
    pub fn new(name: &str, image: &str, command: &[&str]) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            command: strings(command),
            log_path: format!("{name}/0.log"),
            cpu_shares: 2,
            ..Default::default()
        }
    }

    /// The ContainerConfig kubelet's generateContainerConfig would send for this
    /// container of `pod`.
    pub fn config(&self, pod: &PodSpec) -> api::ContainerConfig {
        let labels = HashMap::from([
            (POD_NAME_LABEL.to_string(), pod.name.clone()),
            (POD_NAMESPACE_LABEL.to_string(), pod.namespace.clone()),
            (POD_UID_LABEL.to_string(), pod.uid.clone()),
            (CONTAINER_NAME_LABEL.to_string(), self.name.clone()),
        ]);
        let annotations = HashMap::from([
            (
                "io.kubernetes.container.restartCount".to_string(),
                self.attempt.to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePath".to_string(),
                "/dev/termination-log".to_string(),
            ),
        ]);
        let security =
            self.security
                .clone()
                .unwrap_or_else(|| api::LinuxContainerSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: api::NamespaceMode::Pod as i32,
                        pid: if pod.share_pid {
                            api::NamespaceMode::Pod
                        } else {
                            api::NamespaceMode::Container
                        } as i32,
                        ipc: api::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    seccomp: Some(api::SecurityProfile {
                        profile_type: api::security_profile::ProfileType::RuntimeDefault as i32,
                        localhost_ref: String::new(),
                    }),
                    masked_paths: default_masked_paths(),
                    readonly_paths: default_readonly_paths(),
                    ..Default::default()
                });
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: self.name.clone(),
                attempt: self.attempt,
            }),
            image: Some(image_spec(&self.image)),
            command: self.command.clone(),
            args: self.args.clone(),
            working_dir: self.working_dir.clone(),
            envs: self
                .env
                .iter()
                .map(|(k, v)| api::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            mounts: self.mounts.clone(),
            labels,
            annotations,
            log_path: self.log_path.clone(),
            stdin: self.stdin,
            stdin_once: self.stdin_once,
            tty: self.tty,
            linux: Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    cpu_period: self.cpu_period,
                    cpu_quota: self.cpu_quota,
                    cpu_shares: self.cpu_shares,
                    memory_limit_in_bytes: self.memory_limit,
                    // kubelet gives a BestEffort container 1000 and a Burstable one
                    // between 2 and 999; both are allowed without CAP_SYS_RESOURCE.
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(security),
            }),
            ..Default::default()
        }
    }
}

/// The paths kubelet masks in a non-privileged container (the container runtime's
/// defaults as kubelet passes them since 1.19: pkg/securitycontext/util.go).
pub fn default_masked_paths() -> Vec<String> {
    [
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
    ]
    .map(String::from)
    .to_vec()
}

/// The paths kubelet makes read-only in a non-privileged container.
pub fn default_readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .map(String::from)
    .to_vec()
}

/// A sandbox filter on id, state and labels, as kubelet's getKubeletSandboxes and
/// getSandboxIDByPodUID build them.
pub fn sandbox_filter(
    id: Option<&str>,
    state: Option<api::PodSandboxState>,
    labels: &[(&str, &str)],
) -> api::PodSandboxFilter {
    api::PodSandboxFilter {
        id: id.unwrap_or_default().into(),
        state: state.map(|s| api::PodSandboxStateValue { state: s as i32 }),
        label_selector: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A container filter on id, sandbox, state and labels.
pub fn container_filter(
    id: Option<&str>,
    pod_id: Option<&str>,
    state: Option<api::ContainerState>,
    labels: &[(&str, &str)],
) -> api::ContainerFilter {
    api::ContainerFilter {
        id: id.unwrap_or_default().into(),
        pod_sandbox_id: pod_id.unwrap_or_default().into(),
        state: state.map(|s| api::ContainerStateValue { state: s as i32 }),
        label_selector: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_config_carries_what_kubelet_sets() {
        let mut pod = PodSpec::new("web", Path::new("/logs/web"), "/parent/podx");
        pod.port_mappings.push((8080, 80, api::Protocol::Tcp));
        let c = pod.config();
        let meta = c.metadata.as_ref().expect("metadata");
        assert_eq!(
            (meta.name.as_str(), meta.namespace.as_str()),
            ("web", "default")
        );
        assert_eq!(c.labels[POD_UID_LABEL], pod.uid);
        assert_eq!(c.hostname, "web");
        assert_eq!(c.log_directory, "/logs/web");
        assert_eq!(c.port_mappings[0].host_port, 8080);
        let linux = c.linux.expect("linux");
        assert_eq!(linux.cgroup_parent, "/parent/podx");
        let ns = linux
            .security_context
            .and_then(|s| s.namespace_options)
            .expect("namespace options");
        assert_eq!(ns.pid, api::NamespaceMode::Container as i32);
        let ctr = ContainerSpec::new("app", "busybox", &["sleep", "1"]).config(&pod);
        assert_eq!(ctr.log_path, "app/0.log");
        assert_eq!(ctr.labels[CONTAINER_NAME_LABEL], "app");
        assert_eq!(ctr.image.expect("image").image, "busybox");
    }
}
