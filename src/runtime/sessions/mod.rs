//! berth's side of the CRI streaming server ([`super::streaming`]): the interactive
//! sessions behind Exec, Attach and PortForward, run against the pods' holders and
//! network namespaces.
//!
//! The streaming server owns the protocol and hands over plain byte streams; this module
//! owns where the bytes go: a connection on the pod's loopback (port-forward) or a process
//! the pod's holder forks into the container with the daemon's pipes or a terminal as its
//! stdio (exec). It must not reach into a container's files or cgroups itself.

mod attach;
mod dial;
mod exec;
mod fdio;

use tokio::io::AsyncWriteExt;

use super::container::Containers;
use super::meta::Phase;
use super::sandbox::Sandboxes;
use super::streaming::{DuplexStream, RuntimeError, SessionIo, StreamingRuntime};

pub use dial::dial_loopback;
pub use fdio::FdStream;

/// The sessions of this node's pods.
#[derive(Debug, Clone)]
pub struct Sessions {
    pub sandboxes: Sandboxes,
    pub containers: Containers,
}

impl Sessions {
    fn target(&self, container_id: &str) -> Result<exec::Target, RuntimeError> {
        let rec = self
            .containers
            .get(container_id)
            .map_err(|e| RuntimeError(e.to_string()))?;
        Ok(exec::Target {
            state_dir: self.sandboxes.state_dir().to_path_buf(),
            pod_id: rec.sandbox_id,
            container_id: rec.id,
        })
    }
}

impl StreamingRuntime for Sessions {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        tty: bool,
        io: SessionIo,
    ) -> Result<i32, RuntimeError> {
        exec::run(self.target(container_id)?, cmd, tty, io).await
    }

    async fn attach(
        &self,
        container_id: &str,
        tty: bool,
        io: SessionIo,
    ) -> Result<(), RuntimeError> {
        attach::run(self.target(container_id)?, tty, io).await
    }

    async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
        stream: Box<dyn DuplexStream>,
    ) -> std::io::Result<()> {
        let rec = self
            .sandboxes
            .get(sandbox_id)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))?
            .snapshot();
        if rec.phase != Phase::Ready {
            return Err(std::io::Error::other(format!(
                "sandbox {sandbox_id} is not ready ({:?})",
                rec.phase
            )));
        }
        let target = dial_loopback(rec.netns.map(Into::into), port).await?;
        relay(stream, target).await
    }
}

/// Copies bytes between a port-forward stream and its target connection, both ways; each
/// direction's end is passed on as a shutdown of the other side's writer.
pub async fn relay(
    stream: Box<dyn DuplexStream>,
    target: tokio::net::TcpStream,
) -> std::io::Result<()> {
    let (mut tr, mut tw) = target.into_split();
    let (mut sr, mut sw) = tokio::io::split(stream);
    let up = async {
        tokio::io::copy(&mut sr, &mut tw).await?;
        tw.shutdown().await
    };
    let down = async {
        tokio::io::copy(&mut tr, &mut sw).await?;
        sw.shutdown().await
    };
    let (u, d) = tokio::join!(up, down);
    u.and(d)
}
