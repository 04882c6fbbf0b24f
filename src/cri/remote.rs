//! A remote CRI runtime (containerd, CRI-O, or `berth cri`) behind berth's CRI traits:
//! the `runtime.v1` RuntimeService and ImageService clients over one gRPC channel on the
//! runtime's unix socket, with kubelet's message size limits (16 MiB each way) and
//! deadlines (2 minutes a call; ExecSync its own timeout on top; PullImage none).
//!
//! A status the runtime answers becomes [`CriError::Remote`] with the call's name, the
//! gRPC code and the message as they came, so the kubelet can match on the code and the
//! gRPC adapter hands the same status on. This module owns the client side of the socket
//! only; it keeps no state of the runtime's.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cri_proto::v1 as cri;
use cri_proto::{ImageServiceClient, RuntimeServiceClient};
use hyper_util::rt::TokioIo;
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status, Streaming};

use super::api::{CriFuture, EventStream, ImageApi, PodApi, RuntimeApi, StreamApi};
use super::error::CriError;

/// kubelet's limit on a CRI message, both ways (maxMsgSize in cri-client).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
/// kubelet's default `--runtime-request-timeout`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long establishing the connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket of a CRI endpoint: `unix:///path` or an absolute path (the form kubelet
/// still accepts); anything else is refused naming the endpoint.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, CriError> {
    let path = match endpoint.split_once("://") {
        Some(("unix", rest)) => rest,
        Some((scheme, _)) => {
            return Err(CriError::invalid(
                "Connect",
                "endpoint",
                format!("{endpoint:?}: scheme {scheme:?} is not supported (only unix://)"),
            ));
        }
        None => endpoint,
    };
    if !path.starts_with('/') {
        return Err(CriError::invalid(
            "Connect",
            "endpoint",
            format!("{endpoint:?}: the socket path must be absolute"),
        ));
    }
    Ok(PathBuf::from(path))
}

/// A CRI runtime reached over its socket. Cloning shares the channel.
#[derive(Debug, Clone)]
pub struct RemoteRuntime {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

fn remote(rpc: &'static str, s: Status) -> CriError {
    CriError::Remote {
        rpc,
        code: s.code(),
        message: s.message().to_string(),
    }
}

/// Runs one unary call under `timeout` (none: no deadline).
async fn call<T>(
    rpc: &'static str,
    timeout: Option<Duration>,
    fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, CriError> {
    let r = match timeout {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .map_err(|_| CriError::Remote {
                rpc,
                code: Code::DeadlineExceeded,
                message: format!("no answer within {t:?}"),
            })?,
        None => fut.await,
    };
    r.map(tonic::Response::into_inner)
        .map_err(|s| remote(rpc, s))
}

impl RemoteRuntime {
    /// Connects to the runtime at `endpoint` and checks that it speaks CRI v1 (Version),
    /// as kubelet does before it uses a runtime.
    pub async fn connect(endpoint: &str) -> Result<Self, CriError> {
        let path = socket_path(endpoint)?;
        let sock = path.clone();
        // The URI is a placeholder: the connector opens the socket.
        let channel = Endpoint::from_static("http://cri.sock")
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(sock).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }))
            .await
            .map_err(|e| CriError::Remote {
                rpc: "Connect",
                code: Code::Unavailable,
                message: format!("{}: {e}", path.display()),
            })?;
        let me = Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            image: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        };
        let v = me
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await?;
        tracing::debug!(endpoint, runtime = %v.runtime_name, version = %v.runtime_version,
            "connected to the CRI runtime");
        Ok(me)
    }
}

/// A unary RuntimeService (`runtime`) or ImageService (`image`) call with kubelet's
/// default deadline.
macro_rules! unary {
    ($client:ident, $method:ident, $rpc:literal, $req:ty, $resp:ty) => {
        fn $method(&self, req: $req) -> CriFuture<'_, $resp> {
            let mut c = self.$client.clone();
            Box::pin(call($rpc, Some(REQUEST_TIMEOUT), async move {
                c.$method(req).await
            }))
        }
    };
}

impl ImageApi for RemoteRuntime {
    unary! { image, list_images, "ListImages", cri::ListImagesRequest, cri::ListImagesResponse }
    unary! { image, image_status, "ImageStatus", cri::ImageStatusRequest, cri::ImageStatusResponse }
    unary! { image, remove_image, "RemoveImage", cri::RemoveImageRequest, cri::RemoveImageResponse }
    unary! { image, image_fs_info, "ImageFsInfo", cri::ImageFsInfoRequest, cri::ImageFsInfoResponse }

    /// A pull takes as long as it takes (kubelet sets no deadline; its own progress
    /// check cancels a stuck one).
    fn pull_image(&self, req: cri::PullImageRequest) -> CriFuture<'_, cri::PullImageResponse> {
        let mut c = self.image.clone();
        Box::pin(call(
            "PullImage",
            None,
            async move { c.pull_image(req).await },
        ))
    }
}

impl RuntimeApi for RemoteRuntime {
    unary! { runtime, version, "Version", cri::VersionRequest, cri::VersionResponse }
    unary! { runtime, status, "Status", cri::StatusRequest, cri::StatusResponse }
    unary! { runtime, runtime_config, "RuntimeConfig", cri::RuntimeConfigRequest, cri::RuntimeConfigResponse }
    unary! { runtime, update_runtime_config, "UpdateRuntimeConfig", cri::UpdateRuntimeConfigRequest, cri::UpdateRuntimeConfigResponse }
}

impl PodApi for RemoteRuntime {
    unary! { runtime, run_pod_sandbox, "RunPodSandbox", cri::RunPodSandboxRequest, cri::RunPodSandboxResponse }
    unary! { runtime, stop_pod_sandbox, "StopPodSandbox", cri::StopPodSandboxRequest, cri::StopPodSandboxResponse }
    unary! { runtime, remove_pod_sandbox, "RemovePodSandbox", cri::RemovePodSandboxRequest, cri::RemovePodSandboxResponse }
    unary! { runtime, pod_sandbox_status, "PodSandboxStatus", cri::PodSandboxStatusRequest, cri::PodSandboxStatusResponse }
    unary! { runtime, update_pod_sandbox_resources, "UpdatePodSandboxResources", cri::UpdatePodSandboxResourcesRequest, cri::UpdatePodSandboxResourcesResponse }
    unary! { runtime, list_pod_sandbox, "ListPodSandbox", cri::ListPodSandboxRequest, cri::ListPodSandboxResponse }
    unary! { runtime, create_container, "CreateContainer", cri::CreateContainerRequest, cri::CreateContainerResponse }
    unary! { runtime, start_container, "StartContainer", cri::StartContainerRequest, cri::StartContainerResponse }
    unary! { runtime, remove_container, "RemoveContainer", cri::RemoveContainerRequest, cri::RemoveContainerResponse }
    unary! { runtime, list_containers, "ListContainers", cri::ListContainersRequest, cri::ListContainersResponse }
    unary! { runtime, container_status, "ContainerStatus", cri::ContainerStatusRequest, cri::ContainerStatusResponse }
    unary! { runtime, reopen_container_log, "ReopenContainerLog", cri::ReopenContainerLogRequest, cri::ReopenContainerLogResponse }
    unary! { runtime, update_container_resources, "UpdateContainerResources", cri::UpdateContainerResourcesRequest, cri::UpdateContainerResourcesResponse }
    unary! { runtime, container_stats, "ContainerStats", cri::ContainerStatsRequest, cri::ContainerStatsResponse }
    unary! { runtime, list_container_stats, "ListContainerStats", cri::ListContainerStatsRequest, cri::ListContainerStatsResponse }
    unary! { runtime, pod_sandbox_stats, "PodSandboxStats", cri::PodSandboxStatsRequest, cri::PodSandboxStatsResponse }
    unary! { runtime, list_pod_sandbox_stats, "ListPodSandboxStats", cri::ListPodSandboxStatsRequest, cri::ListPodSandboxStatsResponse }

    /// The grace period runs inside the runtime: the deadline is kubelet's default plus
    /// the request's timeout.
    fn stop_container(
        &self,
        req: cri::StopContainerRequest,
    ) -> CriFuture<'_, cri::StopContainerResponse> {
        let mut c = self.runtime.clone();
        let t = REQUEST_TIMEOUT + Duration::from_secs(req.timeout.max(0).unsigned_abs());
        Box::pin(call("StopContainer", Some(t), async move {
            c.stop_container(req).await
        }))
    }

    /// kubelet's deadline for ExecSync: its default plus the command's timeout, and
    /// none for a command without one.
    fn exec_sync(&self, req: cri::ExecSyncRequest) -> CriFuture<'_, cri::ExecSyncResponse> {
        let mut c = self.runtime.clone();
        let t = (req.timeout > 0)
            .then(|| REQUEST_TIMEOUT + Duration::from_secs(req.timeout.unsigned_abs()));
        Box::pin(call("ExecSync", t, async move { c.exec_sync(req).await }))
    }

    fn container_events(&self) -> EventStream {
        let mut c = self.runtime.clone();
        Box::pin(Events::Opening(Box::pin(async move {
            c.get_container_events(cri::GetEventsRequest {})
                .await
                .map(tonic::Response::into_inner)
        })))
    }

    fn list_pod_sandbox_metrics(&self) -> CriFuture<'_, cri::ListPodSandboxMetricsResponse> {
        let mut c = self.runtime.clone();
        Box::pin(call(
            "ListPodSandboxMetrics",
            Some(REQUEST_TIMEOUT),
            async move {
                c.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
                    .await
            },
        ))
    }
}

impl StreamApi for RemoteRuntime {
    unary! { runtime, exec, "Exec", cri::ExecRequest, cri::ExecResponse }
    unary! { runtime, attach, "Attach", cri::AttachRequest, cri::AttachResponse }
    unary! { runtime, port_forward, "PortForward", cri::PortForwardRequest, cri::PortForwardResponse }
}

type Opening =
    Pin<Box<dyn Future<Output = Result<Streaming<cri::ContainerEventResponse>, Status>> + Send>>;

/// GetContainerEvents as a plain stream of events. The call goes out when the stream is
/// first polled, and the runtime sends the events from when it receives it. The stream
/// ends when the runtime closes it or fails, and at once when the runtime does not serve
/// the call (containerd before 1.7 answers UNIMPLEMENTED): the kubelet then relists as it
/// does without events.
enum Events {
    Opening(Opening),
    Open(Box<Streaming<cri::ContainerEventResponse>>),
    Done,
}

impl Stream for Events {
    type Item = cri::ContainerEventResponse;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut *self {
                Events::Opening(f) => match f.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(s)) => *self = Events::Open(Box::new(s)),
                    Poll::Ready(Err(s)) => {
                        if s.code() == Code::Unimplemented {
                            tracing::debug!(
                                message = s.message(),
                                "the runtime has no GetContainerEvents; relisting only"
                            );
                        } else {
                            tracing::warn!(code = ?s.code(), message = s.message(),
                                "GetContainerEvents refused");
                        }
                        *self = Events::Done;
                    }
                },
                Events::Open(s) => {
                    return match Pin::new(s.as_mut()).poll_next(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Some(Ok(ev))) => Poll::Ready(Some(ev)),
                        Poll::Ready(Some(Err(st))) => {
                            tracing::warn!(code = ?st.code(), message = st.message(),
                                "GetContainerEvents stream failed");
                            *self = Events::Done;
                            Poll::Ready(None)
                        }
                        Poll::Ready(None) => {
                            tracing::debug!("GetContainerEvents stream closed by the runtime");
                            *self = Events::Done;
                            Poll::Ready(None)
                        }
                    };
                }
                Events::Done => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_as_kubelet_takes_them() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").expect("unix"),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/var/run/crio/crio.sock").expect("path"),
            PathBuf::from("/var/run/crio/crio.sock")
        );
        for bad in [
            "tcp://127.0.0.1:1234",
            "npipe:////./pipe/x",
            "unix://relative.sock",
            "run/x.sock",
            "",
        ] {
            let e = socket_path(bad).expect_err(bad);
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
            assert!(e.to_string().contains("endpoint"), "{e}");
        }
    }

    /// A status from the runtime reaches the kubelet, and the gRPC adapter's caller, with
    /// its code and message unchanged.
    #[test]
    fn statuses_pass_through() {
        let e = remote("ExecSync", Status::not_found("container \"x\" not found"));
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.to_string().contains("ExecSync"), "{e}");
        let s: Status = e.into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "container \"x\" not found");
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable() {
        let e = RemoteRuntime::connect("unix:///nonexistent/berth-no.sock")
            .await
            .expect_err("no socket");
        assert_eq!(e.code(), Code::Unavailable);
        assert!(e.to_string().contains("/nonexistent/berth-no.sock"), "{e}");
    }

    /// A runtime without GetContainerEvents ends the stream instead of failing it.
    #[tokio::test]
    async fn unimplemented_events_end_the_stream() {
        use tokio_stream::StreamExt;
        let mut s = Events::Opening(Box::pin(async {
            Err(Status::unimplemented("unknown method GetContainerEvents"))
        }));
        assert!(s.next().await.is_none());
        assert!(s.next().await.is_none());
    }
}
