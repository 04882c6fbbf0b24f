//! berth's own CRI service traits: the CRI v1 calls as async Rust methods taking and
//! returning the `runtime.v1` messages. The kubelet calls them in-process (no gRPC hop);
//! the gRPC server ([`super::grpc`]) is a thin adapter over the same traits; a remote CRI
//! runtime (containerd, CRI-O) can stand behind them too.
//!
//! The futures are boxed so that both traits can be used as `dyn` objects: the kubelet
//! picks the in-process runtime or a remote one at startup.

use std::future::Future;
use std::pin::Pin;

use cri_proto::v1 as cri;

use super::error::CriError;

/// A stream of container events (GetContainerEvents).
pub type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = cri::ContainerEventResponse> + Send>>;

/// The future every CRI method returns.
pub type CriFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CriError>> + Send + 'a>>;

/// The CRI ImageService.
pub trait ImageApi: Send + Sync + 'static {
    /// Every image, or only the one `filter.image` names (as CRI-O reads the filter).
    fn list_images(&self, req: cri::ListImagesRequest) -> CriFuture<'_, cri::ListImagesResponse>;
    /// The image `image.image` names; an image that is not stored is an empty answer,
    /// not an error.
    fn image_status(&self, req: cri::ImageStatusRequest)
    -> CriFuture<'_, cri::ImageStatusResponse>;
    /// Pulls `image.image` with the credentials in `auth`; answers the image ID.
    fn pull_image(&self, req: cri::PullImageRequest) -> CriFuture<'_, cri::PullImageResponse>;
    /// Removes the image `image.image` names, with all its tags; an image that is not
    /// stored is not an error.
    fn remove_image(&self, req: cri::RemoveImageRequest)
    -> CriFuture<'_, cri::RemoveImageResponse>;
    /// The filesystem the images live on and what they use of it.
    fn image_fs_info(
        &self,
        req: cri::ImageFsInfoRequest,
    ) -> CriFuture<'_, cri::ImageFsInfoResponse>;
}

/// The runtime-wide calls of the CRI RuntimeService: what the runtime is, whether it is
/// ready, its config. The sandbox and container calls are [`PodApi`], the streaming ones
/// [`StreamApi`]; of the whole service, only CheckpointContainer is not served (the
/// gRPC adapter answers it UNIMPLEMENTED).
pub trait RuntimeApi: Send + Sync + 'static {
    fn version(&self, req: cri::VersionRequest) -> CriFuture<'_, cri::VersionResponse>;
    /// RuntimeReady and NetworkReady; with `verbose`, details in `info`.
    fn status(&self, req: cri::StatusRequest) -> CriFuture<'_, cri::StatusResponse>;
    /// The cgroup driver the runtime uses.
    fn runtime_config(
        &self,
        req: cri::RuntimeConfigRequest,
    ) -> CriFuture<'_, cri::RuntimeConfigResponse>;
    /// The node's pod CIDRs from kubelet: checked and logged. berth, like containerd without
    /// a CNI config template, leaves the network config to whoever drops it in the conf dir.
    fn update_runtime_config(
        &self,
        req: cri::UpdateRuntimeConfigRequest,
    ) -> CriFuture<'_, cri::UpdateRuntimeConfigResponse>;
}

/// The sandbox and container calls of the CRI RuntimeService.
pub trait PodApi: Send + Sync + 'static {
    fn run_pod_sandbox(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> CriFuture<'_, cri::RunPodSandboxResponse>;
    fn stop_pod_sandbox(
        &self,
        req: cri::StopPodSandboxRequest,
    ) -> CriFuture<'_, cri::StopPodSandboxResponse>;
    fn remove_pod_sandbox(
        &self,
        req: cri::RemovePodSandboxRequest,
    ) -> CriFuture<'_, cri::RemovePodSandboxResponse>;
    fn pod_sandbox_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> CriFuture<'_, cri::PodSandboxStatusResponse>;
    /// kubelet's notice of a pod's new resources (in-place resize). The pod-level cgroup
    /// is kubelet's; as containerd without NRI plugins, the runtime checks the sandbox and
    /// has nothing to apply.
    fn update_pod_sandbox_resources(
        &self,
        req: cri::UpdatePodSandboxResourcesRequest,
    ) -> CriFuture<'_, cri::UpdatePodSandboxResourcesResponse>;
    fn list_pod_sandbox(
        &self,
        req: cri::ListPodSandboxRequest,
    ) -> CriFuture<'_, cri::ListPodSandboxResponse>;
    fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> CriFuture<'_, cri::CreateContainerResponse>;
    fn start_container(
        &self,
        req: cri::StartContainerRequest,
    ) -> CriFuture<'_, cri::StartContainerResponse>;
    fn stop_container(
        &self,
        req: cri::StopContainerRequest,
    ) -> CriFuture<'_, cri::StopContainerResponse>;
    fn remove_container(
        &self,
        req: cri::RemoveContainerRequest,
    ) -> CriFuture<'_, cri::RemoveContainerResponse>;
    fn list_containers(
        &self,
        req: cri::ListContainersRequest,
    ) -> CriFuture<'_, cri::ListContainersResponse>;
    fn container_status(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> CriFuture<'_, cri::ContainerStatusResponse>;
    fn exec_sync(&self, req: cri::ExecSyncRequest) -> CriFuture<'_, cri::ExecSyncResponse>;
    fn reopen_container_log(
        &self,
        req: cri::ReopenContainerLogRequest,
    ) -> CriFuture<'_, cri::ReopenContainerLogResponse>;
    fn update_container_resources(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> CriFuture<'_, cri::UpdateContainerResourcesResponse>;
    fn container_stats(
        &self,
        req: cri::ContainerStatsRequest,
    ) -> CriFuture<'_, cri::ContainerStatsResponse>;
    fn list_container_stats(
        &self,
        req: cri::ListContainerStatsRequest,
    ) -> CriFuture<'_, cri::ListContainerStatsResponse>;
    fn pod_sandbox_stats(
        &self,
        req: cri::PodSandboxStatsRequest,
    ) -> CriFuture<'_, cri::PodSandboxStatsResponse>;
    fn list_pod_sandbox_stats(
        &self,
        req: cri::ListPodSandboxStatsRequest,
    ) -> CriFuture<'_, cri::ListPodSandboxStatsResponse>;
    /// Every container event from now on, as the pods' holders report them.
    fn container_events(&self) -> EventStream;
    /// The ready pods' and their containers' cAdvisor-named metrics.
    fn list_pod_sandbox_metrics(&self) -> CriFuture<'_, cri::ListPodSandboxMetricsResponse>;
}

/// The streaming calls of the RuntimeService: each checks the request against the
/// runtime's state and answers a single-use URL of the streaming server.
pub trait StreamApi: Send + Sync + 'static {
    fn exec(&self, req: cri::ExecRequest) -> CriFuture<'_, cri::ExecResponse>;
    fn attach(&self, req: cri::AttachRequest) -> CriFuture<'_, cri::AttachResponse>;
    fn port_forward(&self, req: cri::PortForwardRequest)
    -> CriFuture<'_, cri::PortForwardResponse>;
}
