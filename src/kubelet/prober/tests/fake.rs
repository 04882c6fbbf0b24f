//! A recording fake of the runtime's PodApi for the prober's tests: ExecSync answers
//! from a script (per command line, the last answer repeating), every call is recorded
//! with the tokio instant it came at; every other call fails.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use cri_proto::v1 as cri;
use tokio::time::Instant;
use tonic::Code;

use crate::cri::api::{CriFuture, EventStream, PodApi};
use crate::cri::error::CriError;

/// One scripted ExecSync answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Exit {
        code: i32,
        stdout: String,
        stderr: String,
    },
    Error(Code),
}

pub fn exit(code: i32) -> Answer {
    Answer::Exit {
        code,
        stdout: String::new(),
        stderr: String::new(),
    }
}

pub fn output(code: i32, stdout: &str, stderr: &str) -> Answer {
    Answer::Exit {
        code,
        stdout: stdout.to_string(),
        stderr: stderr.to_string(),
    }
}

#[derive(Default)]
pub struct FakePods {
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
    calls: Mutex<Vec<(Instant, cri::ExecSyncRequest)>>,
}

impl FakePods {
    /// Answers for the command line `cmd` (its words joined by spaces), in order; the
    /// last one repeats. An unscripted command exits 0.
    pub fn script(&self, cmd: &str, answers: &[Answer]) {
        let mut s = self.script.lock().unwrap_or_else(|e| e.into_inner());
        s.insert(cmd.to_string(), answers.iter().cloned().collect());
    }

    /// The times (since `t0`, in whole milliseconds) at which `cmd` ran.
    pub fn times(&self, cmd: &str, t0: Instant) -> Vec<u128> {
        self.calls()
            .iter()
            .filter(|(_, r)| r.cmd.join(" ") == cmd)
            .map(|(at, _)| at.duration_since(t0).as_millis())
            .collect()
    }

    pub fn calls(&self) -> Vec<(Instant, cri::ExecSyncRequest)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn next(&self, id: &str) -> Answer {
        let mut s = self.script.lock().unwrap_or_else(|e| e.into_inner());
        match s.get_mut(id) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap_or_else(|| exit(0)),
            Some(q) => q.front().cloned().unwrap_or_else(|| exit(0)),
            None => exit(0),
        }
    }
}

fn refuse<'a, T: Send + 'a>(rpc: &'static str) -> CriFuture<'a, T> {
    Box::pin(async move {
        Err(CriError::Internal {
            rpc,
            what: "fake".into(),
            reason: "not served by the prober's fake".into(),
        })
    })
}

impl PodApi for FakePods {
    fn exec_sync(&self, req: cri::ExecSyncRequest) -> CriFuture<'_, cri::ExecSyncResponse> {
        let answer = self.next(&req.cmd.join(" "));
        let id = req.container_id.clone();
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Instant::now(), req));
        Box::pin(async move {
            match answer {
                Answer::Exit {
                    code,
                    stdout,
                    stderr,
                } => Ok(cri::ExecSyncResponse {
                    stdout: stdout.into_bytes(),
                    stderr: stderr.into_bytes(),
                    exit_code: code,
                }),
                Answer::Error(code) => Err(CriError::Failed {
                    rpc: "ExecSync",
                    object: id,
                    code,
                    message: format!("scripted {code:?}"),
                }),
            }
        })
    }
    fn run_pod_sandbox(
        &self,
        _: cri::RunPodSandboxRequest,
    ) -> CriFuture<'_, cri::RunPodSandboxResponse> {
        refuse("RunPodSandbox")
    }
    fn stop_pod_sandbox(
        &self,
        _: cri::StopPodSandboxRequest,
    ) -> CriFuture<'_, cri::StopPodSandboxResponse> {
        refuse("StopPodSandbox")
    }
    fn remove_pod_sandbox(
        &self,
        _: cri::RemovePodSandboxRequest,
    ) -> CriFuture<'_, cri::RemovePodSandboxResponse> {
        refuse("RemovePodSandbox")
    }
    fn pod_sandbox_status(
        &self,
        _: cri::PodSandboxStatusRequest,
    ) -> CriFuture<'_, cri::PodSandboxStatusResponse> {
        refuse("PodSandboxStatus")
    }
    fn update_pod_sandbox_resources(
        &self,
        _: cri::UpdatePodSandboxResourcesRequest,
    ) -> CriFuture<'_, cri::UpdatePodSandboxResourcesResponse> {
        refuse("UpdatePodSandboxResources")
    }
    fn list_pod_sandbox(
        &self,
        _: cri::ListPodSandboxRequest,
    ) -> CriFuture<'_, cri::ListPodSandboxResponse> {
        refuse("ListPodSandbox")
    }
    fn create_container(
        &self,
        _: cri::CreateContainerRequest,
    ) -> CriFuture<'_, cri::CreateContainerResponse> {
        refuse("CreateContainer")
    }
    fn start_container(
        &self,
        _: cri::StartContainerRequest,
    ) -> CriFuture<'_, cri::StartContainerResponse> {
        refuse("StartContainer")
    }
    fn stop_container(
        &self,
        _: cri::StopContainerRequest,
    ) -> CriFuture<'_, cri::StopContainerResponse> {
        refuse("StopContainer")
    }
    fn remove_container(
        &self,
        _: cri::RemoveContainerRequest,
    ) -> CriFuture<'_, cri::RemoveContainerResponse> {
        refuse("RemoveContainer")
    }
    fn list_containers(
        &self,
        _: cri::ListContainersRequest,
    ) -> CriFuture<'_, cri::ListContainersResponse> {
        refuse("ListContainers")
    }
    fn container_status(
        &self,
        _: cri::ContainerStatusRequest,
    ) -> CriFuture<'_, cri::ContainerStatusResponse> {
        refuse("ContainerStatus")
    }
    fn reopen_container_log(
        &self,
        _: cri::ReopenContainerLogRequest,
    ) -> CriFuture<'_, cri::ReopenContainerLogResponse> {
        refuse("ReopenContainerLog")
    }
    fn update_container_resources(
        &self,
        _: cri::UpdateContainerResourcesRequest,
    ) -> CriFuture<'_, cri::UpdateContainerResourcesResponse> {
        refuse("UpdateContainerResources")
    }
    fn container_stats(
        &self,
        _: cri::ContainerStatsRequest,
    ) -> CriFuture<'_, cri::ContainerStatsResponse> {
        refuse("ContainerStats")
    }
    fn list_container_stats(
        &self,
        _: cri::ListContainerStatsRequest,
    ) -> CriFuture<'_, cri::ListContainerStatsResponse> {
        refuse("ListContainerStats")
    }
    fn pod_sandbox_stats(
        &self,
        _: cri::PodSandboxStatsRequest,
    ) -> CriFuture<'_, cri::PodSandboxStatsResponse> {
        refuse("PodSandboxStats")
    }
    fn list_pod_sandbox_stats(
        &self,
        _: cri::ListPodSandboxStatsRequest,
    ) -> CriFuture<'_, cri::ListPodSandboxStatsResponse> {
        refuse("ListPodSandboxStats")
    }
    fn container_events(&self) -> EventStream {
        Box::pin(tokio_stream::empty())
    }
    fn list_pod_sandbox_metrics(&self) -> CriFuture<'_, cri::ListPodSandboxMetricsResponse> {
        refuse("ListPodSandboxMetrics")
    }
}
