//! The sandbox and container calls of the RuntimeService over berth's in-process runtime
//! (`src/runtime`): requests checked and unpacked here, the work done there.

use cri_proto::v1 as cri;

use super::api::{CriFuture, PodApi};
use super::error::CriError;
use crate::runtime::container::Containers;
use crate::runtime::events::PodEvent;
use crate::runtime::sandbox::Sandboxes;

/// The in-process pod runtime.
#[derive(Debug, Clone)]
pub struct Pods {
    pub sandboxes: Sandboxes,
    pub containers: Containers,
}

fn wrap<T>(rpc: &'static str, r: crate::runtime::error::Result<T>) -> Result<T, CriError> {
    r.map_err(|e| CriError::runtime(rpc, e))
}

impl PodApi for Pods {
    fn run_pod_sandbox(
        &self,
        req: cri::RunPodSandboxRequest,
    ) -> CriFuture<'_, cri::RunPodSandboxResponse> {
        Box::pin(async move {
            let cfg = req
                .config
                .ok_or_else(|| CriError::invalid("RunPodSandbox", "config", "is required"))?;
            let id = wrap(
                "RunPodSandbox",
                self.sandboxes.run(cfg, &req.runtime_handler).await,
            )?;
            Ok(cri::RunPodSandboxResponse { pod_sandbox_id: id })
        })
    }

    fn stop_pod_sandbox(
        &self,
        req: cri::StopPodSandboxRequest,
    ) -> CriFuture<'_, cri::StopPodSandboxResponse> {
        Box::pin(async move {
            wrap(
                "StopPodSandbox",
                self.sandboxes.stop(&req.pod_sandbox_id).await,
            )?;
            Ok(cri::StopPodSandboxResponse {})
        })
    }

    fn remove_pod_sandbox(
        &self,
        req: cri::RemovePodSandboxRequest,
    ) -> CriFuture<'_, cri::RemovePodSandboxResponse> {
        Box::pin(async move {
            // Its containers go first (the CRI says they are forcibly removed).
            if let Ok(full) = self.sandboxes.resolve(&req.pod_sandbox_id) {
                for c in self
                    .containers
                    .all()
                    .iter()
                    .filter(|c| c.sandbox_id == full)
                {
                    wrap("RemovePodSandbox", self.containers.remove(&c.id).await)?;
                }
            }
            wrap(
                "RemovePodSandbox",
                self.sandboxes.remove(&req.pod_sandbox_id).await,
            )?;
            Ok(cri::RemovePodSandboxResponse {})
        })
    }

    fn update_pod_sandbox_resources(
        &self,
        req: cri::UpdatePodSandboxResourcesRequest,
    ) -> CriFuture<'_, cri::UpdatePodSandboxResourcesResponse> {
        Box::pin(async move {
            let sb = wrap(
                "UpdatePodSandboxResources",
                self.sandboxes.get(&req.pod_sandbox_id),
            )?;
            tracing::info!(
                sandbox = %sb.snapshot().id,
                overhead = ?req.overhead,
                resources = ?req.resources,
                "pod resources updated by kubelet; nothing for the runtime to apply"
            );
            Ok(cri::UpdatePodSandboxResourcesResponse {})
        })
    }

    fn pod_sandbox_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> CriFuture<'_, cri::PodSandboxStatusResponse> {
        Box::pin(async move {
            let (status, info) = wrap(
                "PodSandboxStatus",
                self.sandboxes.status(&req.pod_sandbox_id, req.verbose),
            )?;
            Ok(cri::PodSandboxStatusResponse {
                status: Some(status),
                info,
                containers_statuses: vec![],
                timestamp: crate::runtime::holder::now_ns(),
            })
        })
    }

    fn list_pod_sandbox(
        &self,
        req: cri::ListPodSandboxRequest,
    ) -> CriFuture<'_, cri::ListPodSandboxResponse> {
        Box::pin(async move {
            Ok(cri::ListPodSandboxResponse {
                items: self.sandboxes.list(req.filter),
            })
        })
    }

    fn create_container(
        &self,
        req: cri::CreateContainerRequest,
    ) -> CriFuture<'_, cri::CreateContainerResponse> {
        Box::pin(async move {
            let cfg = req
                .config
                .ok_or_else(|| CriError::invalid("CreateContainer", "config", "is required"))?;
            let id = wrap(
                "CreateContainer",
                self.containers
                    .create(&req.pod_sandbox_id, cfg, req.sandbox_config)
                    .await,
            )?;
            Ok(cri::CreateContainerResponse { container_id: id })
        })
    }

    fn start_container(
        &self,
        req: cri::StartContainerRequest,
    ) -> CriFuture<'_, cri::StartContainerResponse> {
        Box::pin(async move {
            wrap(
                "StartContainer",
                self.containers.start(&req.container_id).await,
            )?;
            Ok(cri::StartContainerResponse {})
        })
    }

    fn stop_container(
        &self,
        req: cri::StopContainerRequest,
    ) -> CriFuture<'_, cri::StopContainerResponse> {
        Box::pin(async move {
            wrap(
                "StopContainer",
                self.containers.stop(&req.container_id, req.timeout).await,
            )?;
            Ok(cri::StopContainerResponse {})
        })
    }

    fn remove_container(
        &self,
        req: cri::RemoveContainerRequest,
    ) -> CriFuture<'_, cri::RemoveContainerResponse> {
        Box::pin(async move {
            wrap(
                "RemoveContainer",
                self.containers.remove(&req.container_id).await,
            )?;
            Ok(cri::RemoveContainerResponse {})
        })
    }

    fn list_containers(
        &self,
        req: cri::ListContainersRequest,
    ) -> CriFuture<'_, cri::ListContainersResponse> {
        Box::pin(async move {
            Ok(cri::ListContainersResponse {
                containers: self.containers.list(req.filter).await,
            })
        })
    }

    fn container_status(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> CriFuture<'_, cri::ContainerStatusResponse> {
        Box::pin(async move {
            let (status, info) = wrap(
                "ContainerStatus",
                self.containers.status(&req.container_id, req.verbose).await,
            )?;
            Ok(cri::ContainerStatusResponse {
                status: Some(status),
                info,
            })
        })
    }

    fn exec_sync(&self, req: cri::ExecSyncRequest) -> CriFuture<'_, cri::ExecSyncResponse> {
        Box::pin(async move {
            let r = wrap(
                "ExecSync",
                self.containers
                    .exec_sync(&req.container_id, req.cmd, req.timeout)
                    .await,
            )?;
            Ok(cri::ExecSyncResponse {
                stdout: r.stdout,
                stderr: r.stderr,
                exit_code: r.exit_code,
            })
        })
    }

    fn reopen_container_log(
        &self,
        req: cri::ReopenContainerLogRequest,
    ) -> CriFuture<'_, cri::ReopenContainerLogResponse> {
        Box::pin(async move {
            wrap(
                "ReopenContainerLog",
                self.containers.reopen_log(&req.container_id).await,
            )?;
            Ok(cri::ReopenContainerLogResponse {})
        })
    }

    fn update_container_resources(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> CriFuture<'_, cri::UpdateContainerResourcesResponse> {
        Box::pin(async move {
            let linux = req.linux.ok_or_else(|| {
                CriError::invalid("UpdateContainerResources", "linux", "is required")
            })?;
            wrap(
                "UpdateContainerResources",
                self.containers
                    .update_resources(&req.container_id, linux)
                    .await,
            )?;
            Ok(cri::UpdateContainerResourcesResponse {})
        })
    }

    fn container_stats(
        &self,
        req: cri::ContainerStatsRequest,
    ) -> CriFuture<'_, cri::ContainerStatsResponse> {
        Box::pin(async move {
            let stats = wrap(
                "ContainerStats",
                self.containers.container_stats(&req.container_id),
            )?;
            Ok(cri::ContainerStatsResponse { stats: Some(stats) })
        })
    }

    fn list_container_stats(
        &self,
        req: cri::ListContainerStatsRequest,
    ) -> CriFuture<'_, cri::ListContainerStatsResponse> {
        Box::pin(async move {
            Ok(cri::ListContainerStatsResponse {
                stats: self.containers.list_container_stats(req.filter),
            })
        })
    }

    fn pod_sandbox_stats(
        &self,
        req: cri::PodSandboxStatsRequest,
    ) -> CriFuture<'_, cri::PodSandboxStatsResponse> {
        Box::pin(async move {
            let stats = wrap(
                "PodSandboxStats",
                self.containers.pod_sandbox_stats(&req.pod_sandbox_id),
            )?;
            Ok(cri::PodSandboxStatsResponse { stats: Some(stats) })
        })
    }

    fn list_pod_sandbox_stats(
        &self,
        req: cri::ListPodSandboxStatsRequest,
    ) -> CriFuture<'_, cri::ListPodSandboxStatsResponse> {
        Box::pin(async move {
            Ok(cri::ListPodSandboxStatsResponse {
                stats: self.containers.list_pod_sandbox_stats(req.filter),
            })
        })
    }

    fn container_events(&self) -> super::api::EventStream {
        use tokio_stream::StreamExt;
        let me = self.clone();
        let rx = self.sandboxes.events().subscribe();
        let stream = tokio_stream::wrappers::BroadcastStream::new(rx)
            .filter_map(|r| match r {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!("a GetContainerEvents client fell behind: {e}");
                    None
                }
            })
            .then(move |e| {
                let me = me.clone();
                async move { me.event_response(e).await }
            });
        Box::pin(stream)
    }

    fn list_pod_sandbox_metrics(&self) -> CriFuture<'_, cri::ListPodSandboxMetricsResponse> {
        Box::pin(async move {
            // The walk of the writable layers and /proc is blocking file IO.
            let me = self.clone();
            let samples = tokio::task::spawn_blocking(move || {
                me.containers
                    .pod_samples(&crate::runtime::stats::Sources::default())
            })
            .await
            .map_err(|e| CriError::Internal {
                rpc: "ListPodSandboxMetrics",
                what: "the metrics reading".into(),
                reason: e.to_string(),
            })?;
            Ok(cri::ListPodSandboxMetricsResponse {
                pod_metrics: super::metrics::pod_metrics(&samples),
            })
        })
    }
}

impl Pods {
    /// The CRI form of a holder's event: its type and time, with the container's and the
    /// sandbox's status as they are now (a deleted container has none).
    async fn event_response(&self, e: PodEvent) -> cri::ContainerEventResponse {
        use crate::runtime::holder::EventKind;
        let kind = match e.event.kind {
            EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
            EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
            EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
            EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
        };
        let containers_statuses = if e.event.kind == EventKind::Deleted {
            vec![]
        } else {
            self.containers
                .status(&e.event.id, false)
                .await
                .map(|(s, _)| vec![s])
                .unwrap_or_default()
        };
        cri::ContainerEventResponse {
            container_id: e.event.id.clone(),
            container_event_type: kind as i32,
            created_at: e.event.time,
            pod_sandbox_status: self
                .sandboxes
                .status(&e.sandbox_id, false)
                .ok()
                .map(|(s, _)| s),
            containers_statuses,
        }
    }
}
