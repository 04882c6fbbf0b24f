//! A CRI (runtime.v1) client for tests and benchmarks, over a unix socket.
//!
//! The same calls drive berth's CRI server and containerd's CRI plugin, so one test body
//! holds both to the same standard. Requests are built the way kubelet's kuberuntime
//! builds them ([`PodSpec::config`], [`ContainerSpec::config`]); each RPC is a thin
//! method that returns the reply or the [`tonic::Status`] unchanged, so a test can assert
//! on the gRPC code a runtime chose. This module owns no runtime state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
pub use cri_proto::v1 as api;
use cri_proto::{ImageServiceClient, RuntimeServiceClient};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

pub use api::{
    ContainerEventResponse, ContainerEventType, ContainerState, ContainerStatus,
    ContainerStatusResponse, ExecSyncResponse, PodSandboxState, PodSandboxStatusResponse,
};

/// What every RPC returns: the reply, or the status the runtime answered with.
pub type CriResult<T> = Result<T, tonic::Status>;

/// kubelet's labels on sandboxes and containers (pkg/kubelet/types/labels.go).
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// A connected CRI client: both services over one channel.
#[derive(Debug, Clone)]
pub struct CriClient {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    socket: PathBuf,
}

/// The socket path of an endpoint given as `unix:///path` or as a plain path.
pub fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

impl CriClient {
    /// Connects to the CRI socket at `endpoint` (`unix:///path` or `/path`).
    pub async fn connect(endpoint: &str) -> anyhow::Result<Self> {
        let socket = socket_path(endpoint);
        let path = socket.clone();
        // The URI is only a placeholder: the connector below ignores it.
        let channel = Endpoint::from_static("http://cri.local")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(&path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }))
            .await
            .with_context(|| format!("connect to CRI socket {}", socket.display()))?;
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            image: ImageServiceClient::new(channel),
            socket,
        })
    }

    /// Connects, retrying until `timeout` passes and Version answers: for a runtime that
    /// is still starting.
    pub async fn wait_ready(endpoint: &str, timeout: Duration) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let err = match Self::connect(endpoint).await {
                Ok(mut c) => match c.version().await {
                    Ok(_) => return Ok(c),
                    Err(s) => anyhow::anyhow!("Version: {s}"),
                },
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(err.context(format!("CRI at {endpoint} not ready after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    // --- runtime: identity and health

    pub async fn version(&mut self) -> CriResult<api::VersionResponse> {
        let req = api::VersionRequest {
            version: "v1".into(),
        };
        Ok(self.runtime.version(req).await?.into_inner())
    }

    pub async fn status(&mut self, verbose: bool) -> CriResult<api::StatusResponse> {
        let req = api::StatusRequest { verbose };
        Ok(self.runtime.status(req).await?.into_inner())
    }

    pub async fn runtime_config(&mut self) -> CriResult<api::RuntimeConfigResponse> {
        let req = api::RuntimeConfigRequest {};
        Ok(self.runtime.runtime_config(req).await?.into_inner())
    }

    // --- sandboxes

    /// RunPodSandbox; returns the sandbox id.
    pub async fn run_pod_sandbox(&mut self, config: &api::PodSandboxConfig) -> CriResult<String> {
        let req = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        Ok(self
            .runtime
            .run_pod_sandbox(req)
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&mut self, id: &str) -> CriResult<()> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime.stop_pod_sandbox(req).await?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&mut self, id: &str) -> CriResult<()> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime.remove_pod_sandbox(req).await?;
        Ok(())
    }

    pub async fn pod_sandbox_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> CriResult<api::PodSandboxStatusResponse> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        };
        Ok(self.runtime.pod_sandbox_status(req).await?.into_inner())
    }

    pub async fn list_pod_sandbox(
        &mut self,
        filter: Option<api::PodSandboxFilter>,
    ) -> CriResult<Vec<api::PodSandbox>> {
        let req = api::ListPodSandboxRequest { filter };
        Ok(self.runtime.list_pod_sandbox(req).await?.into_inner().items)
    }

    pub async fn pod_sandbox_stats(&mut self, id: &str) -> CriResult<api::PodSandboxStats> {
        let req = api::PodSandboxStatsRequest {
            pod_sandbox_id: id.into(),
        };
        let reply = self.runtime.pod_sandbox_stats(req).await?.into_inner();
        reply
            .stats
            .ok_or_else(|| tonic::Status::internal("PodSandboxStats: reply without stats"))
    }

    // --- containers

    /// CreateContainer in sandbox `pod_id` (made from `sandbox`); returns the container id.
    pub async fn create_container(
        &mut self,
        pod_id: &str,
        config: &api::ContainerConfig,
        sandbox: &api::PodSandboxConfig,
    ) -> CriResult<String> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox.clone()),
        };
        Ok(self
            .runtime
            .create_container(req)
            .await?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&mut self, id: &str) -> CriResult<()> {
        let req = api::StartContainerRequest {
            container_id: id.into(),
        };
        self.runtime.start_container(req).await?;
        Ok(())
    }

    /// StopContainer with a grace period of `timeout_secs` (0: kill at once).
    pub async fn stop_container(&mut self, id: &str, timeout_secs: i64) -> CriResult<()> {
        let req = api::StopContainerRequest {
            container_id: id.into(),
            timeout: timeout_secs,
        };
        self.runtime.stop_container(req).await?;
        Ok(())
    }

    pub async fn remove_container(&mut self, id: &str) -> CriResult<()> {
        let req = api::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.runtime.remove_container(req).await?;
        Ok(())
    }

    pub async fn container_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> CriResult<api::ContainerStatusResponse> {
        let req = api::ContainerStatusRequest {
            container_id: id.into(),
            verbose,
        };
        Ok(self.runtime.container_status(req).await?.into_inner())
    }

    pub async fn list_containers(
        &mut self,
        filter: Option<api::ContainerFilter>,
    ) -> CriResult<Vec<api::Container>> {
        let req = api::ListContainersRequest { filter };
        Ok(self
            .runtime
            .list_containers(req)
            .await?
            .into_inner()
            .containers)
    }

    pub async fn update_container_resources(
        &mut self,
        id: &str,
        linux: api::LinuxContainerResources,
    ) -> CriResult<()> {
        let req = api::UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..Default::default()
        };
        self.runtime.update_container_resources(req).await?;
        Ok(())
    }

    pub async fn reopen_container_log(&mut self, id: &str) -> CriResult<()> {
        let req = api::ReopenContainerLogRequest {
            container_id: id.into(),
        };
        self.runtime.reopen_container_log(req).await?;
        Ok(())
    }

    pub async fn container_stats(&mut self, id: &str) -> CriResult<api::ContainerStats> {
        let req = api::ContainerStatsRequest {
            container_id: id.into(),
        };
        let reply = self.runtime.container_stats(req).await?.into_inner();
        reply
            .stats
            .ok_or_else(|| tonic::Status::internal("ContainerStats: reply without stats"))
    }

    pub async fn list_container_stats(
        &mut self,
        filter: Option<api::ContainerStatsFilter>,
    ) -> CriResult<Vec<api::ContainerStats>> {
        let req = api::ListContainerStatsRequest { filter };
        Ok(self
            .runtime
            .list_container_stats(req)
            .await?
            .into_inner()
            .stats)
    }

    // --- exec and streaming

    /// ExecSync with a timeout in seconds (0: none).
    pub async fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout_secs: i64,
    ) -> CriResult<api::ExecSyncResponse> {
        let req = api::ExecSyncRequest {
            container_id: id.into(),
            cmd: strings(cmd),
            timeout: timeout_secs,
        };
        Ok(self.runtime.exec_sync(req).await?.into_inner())
    }

    /// Exec; returns the streaming URL the runtime serves the session on.
    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        tty: bool,
        stdin: bool,
    ) -> CriResult<String> {
        let req = api::ExecRequest {
            container_id: id.into(),
            cmd: strings(cmd),
            tty,
            stdin,
            stdout: true,
            // With a tty, stderr is merged into stdout (kubelet sends false).
            stderr: !tty,
            audit_request_id: String::new(),
        };
        Ok(self.runtime.exec(req).await?.into_inner().url)
    }

    /// Attach; returns the streaming URL.
    pub async fn attach(&mut self, id: &str, tty: bool, stdin: bool) -> CriResult<String> {
        let req = api::AttachRequest {
            container_id: id.into(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
            audit_request_id: String::new(),
        };
        Ok(self.runtime.attach(req).await?.into_inner().url)
    }

    /// PortForward; returns the streaming URL.
    pub async fn port_forward(&mut self, pod_id: &str, ports: &[i32]) -> CriResult<String> {
        let req = api::PortForwardRequest {
            pod_sandbox_id: pod_id.into(),
            port: ports.to_vec(),
        };
        Ok(self.runtime.port_forward(req).await?.into_inner().url)
    }

    /// GetContainerEvents: the stream of container lifecycle events.
    pub async fn container_events(
        &mut self,
    ) -> CriResult<tonic::Streaming<api::ContainerEventResponse>> {
        let req = api::GetEventsRequest {};
        Ok(self.runtime.get_container_events(req).await?.into_inner())
    }

    // --- images

    /// PullImage; returns the image reference the runtime resolved it to.
    pub async fn pull_image(
        &mut self,
        image: &str,
        auth: Option<api::AuthConfig>,
        sandbox: Option<&api::PodSandboxConfig>,
    ) -> CriResult<String> {
        let req = api::PullImageRequest {
            image: Some(image_spec(image)),
            auth,
            sandbox_config: sandbox.cloned(),
        };
        Ok(self.image.pull_image(req).await?.into_inner().image_ref)
    }

    pub async fn list_images(&mut self, filter: Option<&str>) -> CriResult<Vec<api::Image>> {
        let req = api::ListImagesRequest {
            filter: filter.map(|f| api::ImageFilter {
                image: Some(image_spec(f)),
            }),
        };
        Ok(self.image.list_images(req).await?.into_inner().images)
    }

    /// ImageStatus; `image` is `None` in the reply when the runtime does not have it.
    pub async fn image_status(
        &mut self,
        image: &str,
        verbose: bool,
    ) -> CriResult<api::ImageStatusResponse> {
        let req = api::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose,
        };
        Ok(self.image.image_status(req).await?.into_inner())
    }

    pub async fn remove_image(&mut self, image: &str) -> CriResult<()> {
        let req = api::RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        self.image.remove_image(req).await?;
        Ok(())
    }

    pub async fn image_fs_info(&mut self) -> CriResult<api::ImageFsInfoResponse> {
        Ok(self
            .image
            .image_fs_info(api::ImageFsInfoRequest {})
            .await?
            .into_inner())
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

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
            stdin_once: false,
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

/// One line of a CRI-format container log: `<RFC3339Nano> <stream> <P|F> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    /// true for `F` (a full line), false for `P` (part of a longer line).
    pub full: bool,
    pub text: String,
}

/// Parses a CRI-format log; `None` for a line that does not follow the format.
pub fn parse_log(content: &str) -> Vec<Option<LogLine>> {
    content
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let (time, stream, tag) = (f.next()?, f.next()?, f.next()?);
            let text = f.next().unwrap_or_default();
            let full = match tag {
                "F" => true,
                "P" => false,
                _ => return None,
            };
            (matches!(stream, "stdout" | "stderr") && is_rfc3339_nano(time)).then(|| LogLine {
                time: time.into(),
                stream: stream.into(),
                full,
                text: text.into(),
            })
        })
        .collect()
}

/// `2026-01-02T03:04:05.123456789Z` or with a `+hh:mm` offset; the fraction is optional
/// (RFC3339Nano drops trailing zeros).
fn is_rfc3339_nano(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_take_both_spellings() {
        assert_eq!(
            socket_path("unix:///run/x.sock"),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(socket_path("/run/x.sock"), PathBuf::from("/run/x.sock"));
    }

    #[test]
    fn cri_log_lines_parse() {
        let log = "2026-01-02T03:04:05.123456789Z stdout F hello world\n\
                   2026-01-02T03:04:05Z stderr P part\n\
                   2026-01-02T03:04:05.1+01:00 stdout F \n\
                   garbage\n\
                   2026-01-02T03:04:05Z stdin F x\n";
        let p = parse_log(log);
        assert_eq!(
            p[0],
            Some(LogLine {
                time: "2026-01-02T03:04:05.123456789Z".into(),
                stream: "stdout".into(),
                full: true,
                text: "hello world".into()
            })
        );
        assert!(
            p[1].as_ref()
                .is_some_and(|l| !l.full && l.stream == "stderr")
        );
        assert!(p[2].as_ref().is_some_and(|l| l.text.is_empty()));
        assert_eq!(p[3], None);
        assert_eq!(p[4], None);
    }

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
