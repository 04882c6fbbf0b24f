//! The gRPC face of the CRI services: tonic's `RuntimeService` and `ImageService` over
//! berth's [`RuntimeApi`] and [`ImageApi`]. Each call is logged with its duration, and an
//! error becomes the status [`CriError`] maps it to. RuntimeService calls the runtime does
//! not serve yet answer UNIMPLEMENTED, naming the call.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use cri_proto::v1 as cri;
use cri_proto::{ImageService, RuntimeService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::api::{ImageApi, PodApi, RuntimeApi, StreamApi};
use super::error::CriError;

/// Messages a listing stream carries at most per response, well under gRPC's 4 MiB.
const STREAM_BATCH: usize = 100;

type Answer<T> = Result<Response<T>, Status>;

/// A server-streaming answer.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Runs one call, logging it, and turns its result into a gRPC answer.
async fn serve<T>(
    rpc: &'static str,
    fut: impl std::future::Future<Output = Result<T, CriError>>,
) -> Answer<T> {
    let t = Instant::now();
    let r = fut.await;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(v) => {
            tracing::debug!(rpc, ms, "ok");
            Ok(Response::new(v))
        }
        Err(e) => {
            tracing::info!(rpc, ms, code = ?e.code(), "failed: {e}");
            Err(e.into())
        }
    }
}

fn not_served(rpc: &'static str) -> Status {
    tracing::debug!(rpc, "not served");
    Status::unimplemented(format!("{rpc} is not implemented by berth yet"))
}

/// `items` as a stream of responses of at most [`STREAM_BATCH`] items each.
fn batched<I: Clone + Send + 'static, T: Send + 'static>(
    items: Vec<I>,
    wrap: impl Fn(Vec<I>) -> T,
) -> Response<BoxStream<T>> {
    let batches: Vec<Result<T, Status>> = items
        .chunks(STREAM_BATCH)
        .map(|c| Ok(wrap(c.to_vec())))
        .collect();
    Response::new(Box::pin(tokio_stream::iter(batches)))
}

/// The ImageService on the socket.
#[derive(Clone)]
pub struct ImageGrpc(pub Arc<dyn ImageApi>);

impl std::fmt::Debug for ImageGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ImageGrpc")
    }
}

#[tonic::async_trait]
impl ImageService for ImageGrpc {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Answer<cri::ListImagesResponse> {
        serve("ListImages", self.0.list_images(r.into_inner())).await
    }

    type StreamImagesStream = BoxStream<cri::StreamImagesResponse>;

    /// ListImages' answer in batches, for nodes with more images than one message holds.
    async fn stream_images(
        &self,
        r: Request<cri::StreamImagesRequest>,
    ) -> Answer<Self::StreamImagesStream> {
        let req = cri::ListImagesRequest {
            filter: r.into_inner().filter,
        };
        let list = serve("StreamImages", self.0.list_images(req))
            .await?
            .into_inner();
        Ok(batched(list.images, |images| cri::StreamImagesResponse {
            images,
        }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Answer<cri::ImageStatusResponse> {
        serve("ImageStatus", self.0.image_status(r.into_inner())).await
    }

    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Answer<cri::PullImageResponse> {
        serve("PullImage", self.0.pull_image(r.into_inner())).await
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Answer<cri::RemoveImageResponse> {
        serve("RemoveImage", self.0.remove_image(r.into_inner())).await
    }

    async fn image_fs_info(
        &self,
        r: Request<cri::ImageFsInfoRequest>,
    ) -> Answer<cri::ImageFsInfoResponse> {
        serve("ImageFsInfo", self.0.image_fs_info(r.into_inner())).await
    }
}

/// The RuntimeService on the socket: what the runtime is, its pods, and the streaming
/// calls.
#[derive(Clone)]
pub struct RuntimeGrpc(
    pub Arc<dyn RuntimeApi>,
    pub Arc<dyn PodApi>,
    pub Arc<dyn StreamApi>,
);

impl std::fmt::Debug for RuntimeGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuntimeGrpc")
    }
}

/// The RuntimeService impl: the calls served, then `async fn $name(..) -> UNIMPLEMENTED`
/// for each call not served yet. The whole impl is built here so that `async_trait`
/// sees every method.
macro_rules! runtime_service {
    (
        served { $($served:tt)* }
        not_served { $($name:ident($req:ident) -> $resp:ty = $rpc:literal;)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for RuntimeGrpc {
            $($served)*
            $(
                async fn $name(&self, _r: Request<cri::$req>) -> Answer<$resp> {
                    Err(not_served($rpc))
                }
            )*
        }
    };
}

runtime_service! {
served {
    async fn version(&self, r: Request<cri::VersionRequest>) -> Answer<cri::VersionResponse> {
        serve("Version", self.0.version(r.into_inner())).await
    }

    async fn status(&self, r: Request<cri::StatusRequest>) -> Answer<cri::StatusResponse> {
        serve("Status", self.0.status(r.into_inner())).await
    }

    async fn runtime_config(
        &self,
        r: Request<cri::RuntimeConfigRequest>,
    ) -> Answer<cri::RuntimeConfigResponse> {
        serve("RuntimeConfig", self.0.runtime_config(r.into_inner())).await
    }


    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Answer<cri::UpdateRuntimeConfigResponse> {
        serve("UpdateRuntimeConfig", self.0.update_runtime_config(r.into_inner())).await
    }

    async fn run_pod_sandbox(&self, r: Request<cri::RunPodSandboxRequest>) -> Answer<cri::RunPodSandboxResponse> {
        serve("RunPodSandbox", self.1.run_pod_sandbox(r.into_inner())).await
    }
    async fn stop_pod_sandbox(&self, r: Request<cri::StopPodSandboxRequest>) -> Answer<cri::StopPodSandboxResponse> {
        serve("StopPodSandbox", self.1.stop_pod_sandbox(r.into_inner())).await
    }
    async fn remove_pod_sandbox(&self, r: Request<cri::RemovePodSandboxRequest>) -> Answer<cri::RemovePodSandboxResponse> {
        serve("RemovePodSandbox", self.1.remove_pod_sandbox(r.into_inner())).await
    }
    async fn update_pod_sandbox_resources(&self, r: Request<cri::UpdatePodSandboxResourcesRequest>) -> Answer<cri::UpdatePodSandboxResourcesResponse> {
        serve("UpdatePodSandboxResources", self.1.update_pod_sandbox_resources(r.into_inner())).await
    }
    async fn pod_sandbox_status(&self, r: Request<cri::PodSandboxStatusRequest>) -> Answer<cri::PodSandboxStatusResponse> {
        serve("PodSandboxStatus", self.1.pod_sandbox_status(r.into_inner())).await
    }
    async fn list_pod_sandbox(&self, r: Request<cri::ListPodSandboxRequest>) -> Answer<cri::ListPodSandboxResponse> {
        serve("ListPodSandbox", self.1.list_pod_sandbox(r.into_inner())).await
    }
    async fn create_container(&self, r: Request<cri::CreateContainerRequest>) -> Answer<cri::CreateContainerResponse> {
        serve("CreateContainer", self.1.create_container(r.into_inner())).await
    }
    async fn start_container(&self, r: Request<cri::StartContainerRequest>) -> Answer<cri::StartContainerResponse> {
        serve("StartContainer", self.1.start_container(r.into_inner())).await
    }
    async fn stop_container(&self, r: Request<cri::StopContainerRequest>) -> Answer<cri::StopContainerResponse> {
        serve("StopContainer", self.1.stop_container(r.into_inner())).await
    }
    async fn remove_container(&self, r: Request<cri::RemoveContainerRequest>) -> Answer<cri::RemoveContainerResponse> {
        serve("RemoveContainer", self.1.remove_container(r.into_inner())).await
    }
    async fn list_containers(&self, r: Request<cri::ListContainersRequest>) -> Answer<cri::ListContainersResponse> {
        serve("ListContainers", self.1.list_containers(r.into_inner())).await
    }
    async fn container_status(&self, r: Request<cri::ContainerStatusRequest>) -> Answer<cri::ContainerStatusResponse> {
        serve("ContainerStatus", self.1.container_status(r.into_inner())).await
    }
    async fn exec_sync(&self, r: Request<cri::ExecSyncRequest>) -> Answer<cri::ExecSyncResponse> {
        serve("ExecSync", self.1.exec_sync(r.into_inner())).await
    }
    async fn reopen_container_log(&self, r: Request<cri::ReopenContainerLogRequest>) -> Answer<cri::ReopenContainerLogResponse> {
        serve("ReopenContainerLog", self.1.reopen_container_log(r.into_inner())).await
    }
    async fn update_container_resources(&self, r: Request<cri::UpdateContainerResourcesRequest>) -> Answer<cri::UpdateContainerResourcesResponse> {
        serve("UpdateContainerResources", self.1.update_container_resources(r.into_inner())).await
    }
    async fn container_stats(&self, r: Request<cri::ContainerStatsRequest>) -> Answer<cri::ContainerStatsResponse> {
        serve("ContainerStats", self.1.container_stats(r.into_inner())).await
    }
    async fn list_container_stats(&self, r: Request<cri::ListContainerStatsRequest>) -> Answer<cri::ListContainerStatsResponse> {
        serve("ListContainerStats", self.1.list_container_stats(r.into_inner())).await
    }
    async fn pod_sandbox_stats(&self, r: Request<cri::PodSandboxStatsRequest>) -> Answer<cri::PodSandboxStatsResponse> {
        serve("PodSandboxStats", self.1.pod_sandbox_stats(r.into_inner())).await
    }
    async fn list_pod_sandbox_stats(&self, r: Request<cri::ListPodSandboxStatsRequest>) -> Answer<cri::ListPodSandboxStatsResponse> {
        serve("ListPodSandboxStats", self.1.list_pod_sandbox_stats(r.into_inner())).await
    }

    // The list calls' streaming forms (Kubernetes 1.33+): the same answer, in batches.
    async fn stream_pod_sandboxes(&self, r: Request<cri::StreamPodSandboxesRequest>) -> Answer<Self::StreamPodSandboxesStream> {
        let req = cri::ListPodSandboxRequest { filter: r.into_inner().filter };
        let list = serve("StreamPodSandboxes", self.1.list_pod_sandbox(req)).await?.into_inner();
        Ok(batched(list.items, |pod_sandboxes| cri::StreamPodSandboxesResponse { pod_sandboxes }))
    }
    async fn stream_containers(&self, r: Request<cri::StreamContainersRequest>) -> Answer<Self::StreamContainersStream> {
        let req = cri::ListContainersRequest { filter: r.into_inner().filter };
        let list = serve("StreamContainers", self.1.list_containers(req)).await?.into_inner();
        Ok(batched(list.containers, |containers| cri::StreamContainersResponse { containers }))
    }
    async fn stream_container_stats(&self, r: Request<cri::StreamContainerStatsRequest>) -> Answer<Self::StreamContainerStatsStream> {
        let req = cri::ListContainerStatsRequest { filter: r.into_inner().filter };
        let list = serve("StreamContainerStats", self.1.list_container_stats(req)).await?.into_inner();
        Ok(batched(list.stats, |container_stats| cri::StreamContainerStatsResponse { container_stats }))
    }
    async fn stream_pod_sandbox_stats(&self, r: Request<cri::StreamPodSandboxStatsRequest>) -> Answer<Self::StreamPodSandboxStatsStream> {
        let req = cri::ListPodSandboxStatsRequest { filter: r.into_inner().filter };
        let list = serve("StreamPodSandboxStats", self.1.list_pod_sandbox_stats(req)).await?.into_inner();
        Ok(batched(list.stats, |pod_sandbox_stats| cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }))
    }

    // The pod and container stats as cAdvisor-named metrics (src/cri/metrics.rs).
    async fn list_metric_descriptors(&self, _r: Request<cri::ListMetricDescriptorsRequest>) -> Answer<cri::ListMetricDescriptorsResponse> {
        tracing::debug!(rpc = "ListMetricDescriptors", "ok");
        Ok(Response::new(cri::ListMetricDescriptorsResponse { descriptors: super::metrics::descriptors() }))
    }
    async fn list_pod_sandbox_metrics(&self, _r: Request<cri::ListPodSandboxMetricsRequest>) -> Answer<cri::ListPodSandboxMetricsResponse> {
        serve("ListPodSandboxMetrics", self.1.list_pod_sandbox_metrics()).await
    }
    async fn stream_pod_sandbox_metrics(&self, _r: Request<cri::StreamPodSandboxMetricsRequest>) -> Answer<Self::StreamPodSandboxMetricsStream> {
        let list = serve("StreamPodSandboxMetrics", self.1.list_pod_sandbox_metrics()).await?.into_inner();
        Ok(batched(list.pod_metrics, |pod_sandbox_metrics| cri::StreamPodSandboxMetricsResponse { pod_sandbox_metrics }))
    }
    async fn exec(&self, r: Request<cri::ExecRequest>) -> Answer<cri::ExecResponse> {
        serve("Exec", self.2.exec(r.into_inner())).await
    }
    async fn attach(&self, r: Request<cri::AttachRequest>) -> Answer<cri::AttachResponse> {
        serve("Attach", self.2.attach(r.into_inner())).await
    }
    async fn port_forward(&self, r: Request<cri::PortForwardRequest>) -> Answer<cri::PortForwardResponse> {
        serve("PortForward", self.2.port_forward(r.into_inner())).await
    }

    async fn get_container_events(&self, _r: Request<cri::GetEventsRequest>) -> Answer<Self::GetContainerEventsStream> {
        use tokio_stream::StreamExt;
        tracing::debug!(rpc = "GetContainerEvents", "subscribed");
        Ok(Response::new(Box::pin(self.1.container_events().map(Ok))))
    }

    type StreamPodSandboxesStream = BoxStream<cri::StreamPodSandboxesResponse>;
    type StreamContainersStream = BoxStream<cri::StreamContainersResponse>;
    type StreamContainerStatsStream = BoxStream<cri::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = BoxStream<cri::StreamPodSandboxStatsResponse>;
    type GetContainerEventsStream = BoxStream<cri::ContainerEventResponse>;
    type StreamPodSandboxMetricsStream = BoxStream<cri::StreamPodSandboxMetricsResponse>;
}
not_served {
        checkpoint_container(CheckpointContainerRequest) -> cri::CheckpointContainerResponse = "CheckpointContainer";
    }
}
