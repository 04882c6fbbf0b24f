//! Attach: clients connected to a container's main process. Its output, as the holder
//! reads it for the log, is also copied to each attached client's pipes (never blocking
//! the pod: a client whose pipe is full loses what does not fit); its stdin is handed to
//! the client as a pipe end (the container's own with stdin_once, a copy otherwise). An
//! attach ends when the container exits (its pipes close and it is answered `done`) or
//! when its connection closes.

use std::os::fd::{AsRawFd, OwnedFd};

use super::container::{set_nonblocking, werr};
use super::log::Stream;
use super::proto::{AttachStart, Body, ContainerState, ErrorCode, WireError};
use super::server::Server;

/// One attached client.
#[derive(Debug)]
pub struct Attacher {
    pub conn: u64,
    pub req: u64,
    /// Write ends for stdout and stderr; None when not wanted or broken.
    pub out: [Option<OwnedFd>; 2],
    /// Bytes dropped because the client's pipe was full.
    pub dropped: u64,
}

impl Attacher {
    /// Copies what the process wrote on `stream` to the client, as far as its pipe takes.
    pub fn feed(&mut self, stream: Stream, data: &[u8]) {
        let i = match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        };
        let Some(fd) = &self.out[i] else { return };
        let mut rest = data;
        while !rest.is_empty() {
            match nix::unistd::write(fd, rest) {
                Ok(n) => rest = &rest[n..],
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => {
                    if self.dropped == 0 {
                        tracing::warn!(conn = self.conn, "attached client is slow: output dropped");
                    }
                    self.dropped += rest.len() as u64;
                    return;
                }
                Err(_) => {
                    // the client closed its end
                    self.out[i] = None;
                    return;
                }
            }
        }
    }
}

impl Server {
    /// Attaches connection `conn` (request `req`) to container `a.id` with `fds`.
    pub(super) fn attach(
        &mut self,
        conn: u64,
        req: u64,
        a: AttachStart,
        mut fds: Vec<OwnedFd>,
    ) -> Result<(), WireError> {
        let id = a.id.clone();
        if fds.len() != a.fd_count() {
            return Err(werr(
                ErrorCode::InvalidArgument,
                format!(
                    "container {id}: attach: {} descriptors came with the request, {} expected",
                    fds.len(),
                    a.fd_count()
                ),
            ));
        }
        let c = self
            .pod
            .containers
            .get_mut(&id)
            .ok_or_else(|| super::container::not_found(&id))?;
        if c.info.state != ContainerState::Running {
            return Err(werr(
                ErrorCode::FailedPrecondition,
                format!("container {id} is {:?}, not running", c.info.state),
            ));
        }
        let mut it = fds.drain(..);
        if a.stdin {
            let reply = it.next();
            let handed = if c.stdin_once {
                c.stdin.take().map(|fd| (b"o", fd))
            } else {
                let tag = if c.tty { b"t" } else { b"d" };
                c.stdin
                    .as_ref()
                    .and_then(|fd| fd.try_clone().ok())
                    .map(|fd| (tag, fd))
            };
            if let (Some(reply), Some((tag, fd))) = (reply, handed) {
                // The stdin pipe end is blocking for the client; the holder never writes it.
                if let Err(e) = super::fdpass::send_with_fds(&reply, tag, &[fd.as_raw_fd()]) {
                    return Err(werr(
                        ErrorCode::Internal,
                        format!("container {id}: attach: send stdin: {e}"),
                    ));
                }
            }
        }
        let mut out = [None, None];
        for (i, on) in [(0, a.stdout), (1, a.stderr)] {
            if on && let Some(fd) = it.next() {
                set_nonblocking(&fd);
                out[i] = Some(fd);
            }
        }
        c.attached.push(Attacher {
            conn,
            req,
            out,
            dropped: 0,
        });
        tracing::info!(container = %id, conn, "attached");
        Ok(())
    }

    /// Ends the attaches of container `id` (it exited): their pipes close, and each is
    /// answered.
    pub(super) fn end_attaches(&mut self, id: &str) {
        let ended: Vec<Attacher> = match self.pod.containers.get_mut(id) {
            Some(c) => c.attached.drain(..).collect(),
            None => return,
        };
        for a in ended {
            let (conn, req) = (a.conn, a.req);
            drop(a);
            self.answer(conn, req, Ok(Body::Done));
        }
    }

    /// Forgets the attaches whose connection closed.
    pub(super) fn drop_gone_attaches(&mut self) {
        for c in self.pod.containers.values_mut() {
            c.attached.retain(|a| self.conns.contains_key(&a.conn));
        }
    }
}
