//! A CRI (runtime.v1) client for tests and benchmarks, over a unix socket.
//!
//! The same calls drive berth's CRI server and containerd's CRI plugin, so one test body
//! holds both to the same standard. Requests are built the way kubelet's kuberuntime
//! builds them ([`PodSpec::config`], [`ContainerSpec::config`]); each RPC is a thin
//! method that returns the reply or the [`tonic::Status`] unchanged, so a test can assert
//! on the gRPC code a runtime chose. This module owns no runtime state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
pub use cri_proto::v1 as api;
use cri_proto::{ImageServiceClient, RuntimeServiceClient};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

mod log;
mod spec;

pub use log::{LogLine, parse_log};
pub use spec::{
    ContainerSpec, PodSpec, container_filter, default_masked_paths, default_readonly_paths,
    image_spec, sandbox_filter,
};

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

pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
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
}
