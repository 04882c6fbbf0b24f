//! A container's config (kubelet's generateContainerConfig) from its spec and what the
//! sync already resolved: the environment, the mounts and the resources. Pure.

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::{labels, security};

/// What the container config needs besides the spec.
#[derive(Debug, Clone, Default)]
pub struct ContainerInputs {
    pub restart_count: i32,
    /// The image as the runtime knows it (the pulled image's reference).
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub envs: Vec<cri::KeyValue>,
    pub mounts: Vec<cri::Mount>,
    pub resources: Option<cri::LinuxContainerResources>,
    pub seccomp_default: bool,
}

/// `<container name>/<restart count>.log`, relative to the pod's log directory.
pub fn log_path(c: &Container, restart_count: i32) -> String {
    format!("{}/{restart_count}.log", c.name)
}

/// The container config of one start.
pub fn config(pod: &Pod, c: &Container, inp: ContainerInputs) -> cri::ContainerConfig {
    let devices = vec![];
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: u32::try_from(inp.restart_count).unwrap_or(0),
        }),
        image: Some(cri::ImageSpec {
            image: inp.image,
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: inp.command,
        args: inp.args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inp.envs,
        mounts: inp.mounts,
        devices,
        labels: labels::container_labels(pod, c),
        annotations: labels::container_annotations(pod, c, inp.restart_count),
        log_path: log_path(c, inp.restart_count),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: inp.resources,
            security_context: Some(security::container_context(pod, c, inp.seccomp_default)),
        }),
        ..Default::default()
    }
}
