//! Exec, Attach and PortForward: the request is checked against the runtime's state (the
//! container or sandbox exists and runs) and by the streaming server's rules (kubelet's:
//! a command, at least one stream, no stderr with a tty), then answered with a single-use
//! URL of berth's streaming server, where kubectl's session then runs
//! ([`crate::runtime::sessions`]).

use std::sync::Arc;

use cri_proto::v1 as cri;
use tonic::Code;

use super::api::{CriFuture, StreamApi};
use super::error::CriError;
use crate::runtime::error::RuntimeError;
use crate::runtime::meta::Phase;
use crate::runtime::sessions::Sessions;
use crate::runtime::streaming::{
    AttachRequest, ExecRequest, PortForwardRequest, StreamingError, StreamingServer,
};

/// The streaming calls over berth's streaming server.
#[derive(Debug, Clone)]
pub struct Streams {
    pub sessions: Sessions,
    pub server: Arc<StreamingServer<Sessions>>,
}

fn streaming(rpc: &'static str, e: StreamingError) -> CriError {
    match e {
        StreamingError::InvalidRequest { field, reason, .. } => {
            CriError::invalid(rpc, field, reason)
        }
        StreamingError::TooManyInFlight(_) => CriError::Failed {
            rpc,
            object: "streaming server".into(),
            code: Code::ResourceExhausted,
            message: e.to_string(),
        },
        e => CriError::Failed {
            rpc,
            object: "streaming server".into(),
            code: Code::Internal,
            message: e.to_string(),
        },
    }
}

impl Streams {
    /// The full id of a container that exists and runs.
    async fn running_container(&self, rpc: &'static str, id: &str) -> Result<String, CriError> {
        if id.is_empty() {
            return Err(CriError::invalid(rpc, "container_id", "is required"));
        }
        let rec = self
            .sessions
            .containers
            .get(id)
            .map_err(|e| CriError::runtime(rpc, e))?;
        let (status, _) = self
            .sessions
            .containers
            .status(&rec.id, false)
            .await
            .map_err(|e| CriError::runtime(rpc, e))?;
        if status.state != cri::ContainerState::ContainerRunning as i32 {
            return Err(CriError::runtime(
                rpc,
                RuntimeError::NotRunning { container: rec.id },
            ));
        }
        Ok(rec.id)
    }
}

impl StreamApi for Streams {
    fn exec(&self, req: cri::ExecRequest) -> CriFuture<'_, cri::ExecResponse> {
        Box::pin(async move {
            let container_id = self.running_container("Exec", &req.container_id).await?;
            let url = self
                .server
                .get_exec(&ExecRequest {
                    container_id,
                    cmd: req.cmd,
                    tty: req.tty,
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr,
                })
                .map_err(|e| streaming("Exec", e))?;
            Ok(cri::ExecResponse { url })
        })
    }

    fn attach(&self, req: cri::AttachRequest) -> CriFuture<'_, cri::AttachResponse> {
        Box::pin(async move {
            let container_id = self.running_container("Attach", &req.container_id).await?;
            let url = self
                .server
                .get_attach(&AttachRequest {
                    container_id,
                    stdin: req.stdin,
                    tty: req.tty,
                    stdout: req.stdout,
                    stderr: req.stderr,
                })
                .map_err(|e| streaming("Attach", e))?;
            Ok(cri::AttachResponse { url })
        })
    }

    fn port_forward(
        &self,
        req: cri::PortForwardRequest,
    ) -> CriFuture<'_, cri::PortForwardResponse> {
        Box::pin(async move {
            const RPC: &str = "PortForward";
            if req.pod_sandbox_id.is_empty() {
                return Err(CriError::invalid(RPC, "pod_sandbox_id", "is required"));
            }
            let entry = self
                .sessions
                .sandboxes
                .get(&req.pod_sandbox_id)
                .map_err(|e| CriError::runtime(RPC, e))?;
            let rec = entry.snapshot();
            if rec.phase != Phase::Ready {
                return Err(CriError::runtime(
                    RPC,
                    RuntimeError::NotReady {
                        sandbox: rec.id,
                        reason: format!("it is {:?}", rec.phase),
                    },
                ));
            }
            let url = self
                .server
                .get_port_forward(&PortForwardRequest {
                    pod_sandbox_id: rec.id,
                    port: req.port,
                })
                .map_err(|e| streaming(RPC, e))?;
            Ok(cri::PortForwardResponse { url })
        })
    }
}
