//! Pod and container securityContext into the CRI's Linux security contexts, as
//! kubelet's securitycontext and kuberuntime_sandbox_linux / container_linux do it:
//! container fields override the pod's; RuntimeDefault seccomp unless asked otherwise
//! (kubelet's seccompDefault, on by default in berth); the default masked and read-only
//! paths unless privileged or procMount Unmasked.

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, SeccompProfile};

/// kubelet's DefaultMaskedPaths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// kubelet's DefaultReadonlyPaths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The pod's namespaces: network on the node or the pod's, pid shared, node or per
/// container, ipc on the node or the pod's.
pub fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    let node = cri::NamespaceMode::Node as i32;
    let pod_ns = cri::NamespaceMode::Pod as i32;
    cri::NamespaceOption {
        network: if spec.host_network == Some(true) {
            node
        } else {
            pod_ns
        },
        pid: if spec.host_pid == Some(true) {
            node
        } else if spec.share_process_namespace == Some(true) {
            pod_ns
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: if spec.host_ipc == Some(true) {
            node
        } else {
            pod_ns
        },
        ..Default::default()
    }
}

fn seccomp(
    profile: Option<&SeccompProfile>,
    seccomp_default: bool,
) -> Option<cri::SecurityProfile> {
    use cri::security_profile::ProfileType;
    let (t, localhost) = match profile {
        Some(p) => match p.type_.as_str() {
            "Unconfined" => (ProfileType::Unconfined, String::new()),
            "Localhost" => (
                ProfileType::Localhost,
                p.localhost_profile.clone().unwrap_or_default(),
            ),
            _ => (ProfileType::RuntimeDefault, String::new()),
        },
        None if seccomp_default => (ProfileType::RuntimeDefault, String::new()),
        None => (ProfileType::Unconfined, String::new()),
    };
    Some(cri::SecurityProfile {
        profile_type: t as i32,
        localhost_ref: localhost,
    })
}

/// The sandbox's security context.
pub fn sandbox_context(pod: &Pod, seccomp_default: bool) -> cri::LinuxSandboxSecurityContext {
    let spec = pod.spec.clone().unwrap_or_default();
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec.containers.iter().any(|c| {
        c.security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false)
    });
    cri::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(pod)),
        run_as_user: psc.run_as_user.map(|v| cri::Int64Value { value: v }),
        run_as_group: psc.run_as_group.map(|v| cri::Int64Value { value: v }),
        supplemental_groups: supplemental_groups(pod),
        privileged,
        seccomp: seccomp(psc.seccomp_profile.as_ref(), seccomp_default),
        ..Default::default()
    }
}

fn supplemental_groups(pod: &Pod) -> Vec<i64> {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let mut g: Vec<i64> = psc.fs_group.into_iter().collect();
    for x in psc.supplemental_groups.unwrap_or_default() {
        if !g.contains(&x) {
            g.push(x);
        }
    }
    g
}

/// A container's security context: the container's fields over the pod's.
pub fn container_context(
    pod: &Pod,
    c: &Container,
    seccomp_default: bool,
) -> cri::LinuxContainerSecurityContext {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let csc = c.security_context.clone().unwrap_or_default();
    let privileged = csc.privileged.unwrap_or(false);
    let unmasked = csc.proc_mount.as_deref() == Some("Unmasked");
    cri::LinuxContainerSecurityContext {
        // The names as the pod writes them (`NET_ADMIN`), as kubelet's
        // convertToRuntimeCapabilities passes them: the runtime adds the `CAP_` prefix
        // (containerd would make `CAP_CAP_NET_ADMIN` of a prefixed name, which runc ignores).
        capabilities: csc.capabilities.clone().map(|c| cri::Capability {
            add_capabilities: c.add.unwrap_or_default(),
            drop_capabilities: c.drop.unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: csc
            .run_as_user
            .or(psc.run_as_user)
            .map(|v| cri::Int64Value { value: v }),
        run_as_group: csc
            .run_as_group
            .or(psc.run_as_group)
            .map(|v| cri::Int64Value { value: v }),
        readonly_rootfs: csc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(pod),
        no_new_privs: csc.allow_privilege_escalation == Some(false),
        masked_paths: if privileged || unmasked {
            vec![]
        } else {
            MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        },
        readonly_paths: if privileged || unmasked {
            vec![]
        } else {
            READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        },
        seccomp: if privileged {
            seccomp(
                Some(&SeccompProfile {
                    type_: "Unconfined".into(),
                    localhost_profile: None,
                }),
                false,
            )
        } else {
            seccomp(
                csc.seccomp_profile
                    .as_ref()
                    .or(psc.seccomp_profile.as_ref()),
                seccomp_default,
            )
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSpec, SecurityContext};

    fn with(sc: Option<SecurityContext>) -> (Pod, Container) {
        let c = Container {
            name: "c".into(),
            security_context: sc,
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c.clone()],
                ..Default::default()
            }),
            ..Default::default()
        };
        (pod, c)
    }

    #[test]
    fn capability_names_pass_as_the_pod_writes_them() {
        let (pod, c) = with(Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into(), "ALL".into()]),
                drop: Some(vec!["CHOWN".into(), "CAP_KILL".into()]),
            }),
            ..Default::default()
        }));
        let caps = container_context(&pod, &c, true)
            .capabilities
            .expect("caps");
        assert_eq!(caps.add_capabilities, ["NET_ADMIN", "ALL"]);
        assert_eq!(caps.drop_capabilities, ["CHOWN", "CAP_KILL"]);
        let (pod, c) = with(None);
        assert_eq!(container_context(&pod, &c, true).capabilities, None);
    }
}
