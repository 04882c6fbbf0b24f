//! The daemon's side of the holder protocol: spawn a pod's holder, connect to a running
//! one (after a daemon restart), and make the calls.
//!
//! A [`Client`] is one blocking connection doing one call at a time; the daemon keeps one
//! per pod for calls (from tokio, inside `spawn_blocking`, or one client per task), and a
//! separate subscribed connection ([`Events`]) per pod for the event stream. Calls are
//! short except `exec_sync`, which waits for the process; several clients may be connected
//! to one holder at once.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::PodOptions;
use super::launch::INVALID_PREFIX;
use super::proto::{
    AttachStart, Body, ContainerEvent, ContainerInfo, CreateContainer, Envelope, ExecResult,
    ExecStart, HolderInfo, PROTOCOL_VERSION, Request, Response, decode, encode,
};
use super::zygote::Zygote;
use super::{HolderError, PodDir, Result};

/// How to start a pod's holder.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub state_dir: PathBuf,
    pub pod_id: String,
    pub pod: PodOptions,
}

/// One connection to a pod's holder.
#[derive(Debug)]
pub struct Client {
    pod: PodDir,
    stream: UnixStream,
    next_id: u64,
    inbox: Vec<u8>,
}

impl Client {
    /// Starts the pod's holder through `zygote` and connects to it once it reports
    /// ready.
    pub fn spawn(zygote: &Zygote, opts: &SpawnOptions) -> Result<Client> {
        let pod = PodDir::new(&opts.state_dir, &opts.pod_id)?;
        let id = pod.pod_id.clone();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| {
            HolderError::Sys {
                pod: id.clone(),
                op: "pipe".into(),
                source,
            }
        })?;
        zygote
            .start_holder(&opts.pod.args(&opts.state_dir, &opts.pod_id), w.as_fd())
            .map_err(|e| HolderError::Start {
                pod: id.clone(),
                message: e.to_string(),
                invalid: e.kind() == std::io::ErrorKind::InvalidInput,
            })?;
        // EOF once the holder has reported and every copy of the write end is closed.
        drop(w);
        let mut msg = String::new();
        let _ = std::fs::File::from(r).read_to_string(&mut msg);
        let msg = msg.trim();
        if !msg.starts_with("ok") {
            let invalid = msg.starts_with(INVALID_PREFIX);
            return Err(HolderError::Start {
                pod: id,
                message: if msg.is_empty() {
                    "it exited without reporting readiness".into()
                } else {
                    msg.trim_start_matches(INVALID_PREFIX)
                        .trim_start_matches("error: ")
                        .to_string()
                },
                invalid,
            });
        }
        Client::connect(&opts.state_dir, &opts.pod_id)
    }

    /// Connects to the running holder of `pod_id`.
    pub fn connect(state_dir: &Path, pod_id: &str) -> Result<Client> {
        let pod = PodDir::new(state_dir, pod_id)?;
        let stream = pod
            .with_socket_path(|p| UnixStream::connect(p))
            .map_err(|source| HolderError::Io {
                pod: pod_id.into(),
                op: "connect",
                path: pod.socket(),
                source,
            })?;
        Ok(Client {
            pod,
            stream,
            next_id: 1,
            inbox: Vec::new(),
        })
    }

    /// The pod's holder files.
    pub fn pod(&self) -> &PodDir {
        &self.pod
    }

    /// Bounds how long a call waits for the holder (None: forever, the default).
    pub fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        self.stream
            .set_read_timeout(t)
            .and_then(|()| self.stream.set_write_timeout(t))
            .map_err(|source| self.io("set timeout", source))
    }

    fn io(&self, op: &'static str, source: std::io::Error) -> HolderError {
        HolderError::Io {
            pod: self.pod.pod_id.clone(),
            op,
            path: self.pod.socket(),
            source,
        }
    }

    /// `req` as the next frame on this connection, with its id.
    fn frame(&mut self, req: Request) -> Result<(u64, Vec<u8>)> {
        let id = self.next_id;
        self.next_id += 1;
        let mut frame = Vec::new();
        encode(
            &Envelope {
                v: PROTOCOL_VERSION,
                id,
                req,
            },
            &mut frame,
        )
        .map_err(|source| HolderError::Frame {
            pod: self.pod.pod_id.clone(),
            source,
        })?;
        Ok((id, frame))
    }

    fn call(&mut self, req: Request) -> Result<Body> {
        let (id, frame) = self.frame(req)?;
        self.stream
            .write_all(&frame)
            .map_err(|source| self.io("send", source))?;
        loop {
            match self.read_frame()? {
                Response::Ok { id: rid, body } if rid == id => return Ok(body),
                Response::Err { id: rid, error } if rid == id || rid == 0 => {
                    return Err(HolderError::Remote {
                        pod: self.pod.pod_id.clone(),
                        error,
                    });
                }
                // events of a subscribed connection, or a stale answer
                _ => continue,
            }
        }
    }

    fn read_frame(&mut self) -> Result<Response> {
        let mut buf = [0u8; 16 << 10];
        loop {
            match decode::<Response>(&mut self.inbox) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(source) => {
                    return Err(HolderError::Frame {
                        pod: self.pod.pod_id.clone(),
                        source,
                    });
                }
            }
            let n = match self.stream.read(&mut buf) {
                Ok(0) => {
                    return Err(HolderError::Closed {
                        pod: self.pod.pod_id.clone(),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io("receive", e)),
            };
            self.inbox.extend_from_slice(&buf[..n]);
        }
    }

    fn unexpected(&self, body: Body) -> HolderError {
        HolderError::Invalid {
            pod: self.pod.pod_id.clone(),
            field: "holder answer",
            reason: format!("unexpected {body:?}"),
        }
    }

    fn container(&mut self, req: Request) -> Result<ContainerInfo> {
        match self.call(req)? {
            Body::Container(c) => Ok(c),
            b => Err(self.unexpected(b)),
        }
    }

    fn done(&mut self, req: Request) -> Result<()> {
        match self.call(req)? {
            Body::Done => Ok(()),
            b => Err(self.unexpected(b)),
        }
    }

    /// The holder's pid, protocol version and namespace files.
    pub fn hello(&mut self) -> Result<HolderInfo> {
        match self.call(Request::Hello)? {
            Body::Hello(h) => Ok(h),
            b => Err(self.unexpected(b)),
        }
    }

    /// Creates a container (stopped before its program, until `start_container`).
    pub fn create_container(&mut self, req: CreateContainer) -> Result<ContainerInfo> {
        self.container(Request::CreateContainer(req))
    }

    pub fn start_container(&mut self, id: &str) -> Result<ContainerInfo> {
        self.container(Request::StartContainer { id: id.into() })
    }

    /// Sends `signal` to the container's init, or (`all`) to all its processes.
    pub fn signal(&mut self, id: &str, signal: i32, all: bool) -> Result<()> {
        self.done(Request::Signal {
            id: id.into(),
            signal,
            all,
        })
    }

    pub fn container_state(&mut self, id: &str) -> Result<ContainerInfo> {
        self.container(Request::ContainerState { id: id.into() })
    }

    /// Runs `cmd` in the container; `timeout` zero waits as long as it runs. A process
    /// past its timeout is killed and the call fails with [`super::ErrorCode::DeadlineExceeded`].
    pub fn exec_sync(&mut self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecResult> {
        match self.call(Request::ExecSync {
            id: id.into(),
            cmd: cmd.to_vec(),
            timeout_ms: timeout.as_millis().min(u64::MAX as u128) as u64,
        })? {
            Body::Exec(r) => Ok(r),
            b => Err(self.unexpected(b)),
        }
    }

    /// Sends an interactive Exec with its descriptors (see [`ExecStart`]) and hands the
    /// connection over: the answer, an [`ExecResult`] with the exit code, comes when the
    /// process ends, and closing the connection kills the process. Returns the socket and
    /// the request's id.
    pub fn start_exec(self, start: ExecStart, fds: &[RawFd]) -> Result<(UnixStream, u64)> {
        self.hand_over(Request::Exec(start), fds)
    }

    /// Sends an Attach with its descriptors (see [`AttachStart`]) and hands the connection
    /// over: the answer (`done`) comes when the container exits; closing the connection
    /// detaches. Returns the socket and the request's id.
    pub fn start_attach(self, start: AttachStart, fds: &[RawFd]) -> Result<(UnixStream, u64)> {
        self.hand_over(Request::Attach(start), fds)
    }

    fn hand_over(mut self, req: Request, fds: &[RawFd]) -> Result<(UnixStream, u64)> {
        let (id, frame) = self.frame(req)?;
        let sent = super::fdpass::send_with_fds(&self.stream, &frame, fds)
            .map_err(|source| self.io("send", source))?;
        self.stream
            .write_all(&frame[sent..])
            .map_err(|source| self.io("send", source))?;
        Ok((self.stream, id))
    }

    pub fn reopen_log(&mut self, id: &str) -> Result<()> {
        self.done(Request::ReopenLog { id: id.into() })
    }

    /// Removes the container (killing it first if it runs).
    pub fn remove_container(&mut self, id: &str) -> Result<()> {
        self.done(Request::RemoveContainer { id: id.into() })
    }

    pub fn list_containers(&mut self) -> Result<Vec<ContainerInfo>> {
        match self.call(Request::ListContainers)? {
            Body::Containers { containers } => Ok(containers),
            b => Err(self.unexpected(b)),
        }
    }

    /// Turns this connection into the pod's event stream: the containers as they are now,
    /// then every later event.
    pub fn subscribe(mut self) -> Result<(Vec<ContainerInfo>, Events)> {
        match self.call(Request::Subscribe)? {
            Body::Containers { containers } => Ok((
                containers,
                Events {
                    reactor: None,
                    client: self,
                },
            )),
            b => Err(self.unexpected(b)),
        }
    }

    /// Kills and removes every container, releases the pod's namespaces and files; the
    /// holder exits.
    pub fn shutdown(mut self) -> Result<()> {
        self.done(Request::Shutdown)?;
        // the holder closes its end as it exits
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
        Ok(())
    }
}

/// A subscribed connection: the pod's container events, in order.
#[derive(Debug)]
pub struct Events {
    /// The connection registered with tokio's reactor, once read with
    /// [`Events::next_event_async`]; dropped before the connection it watches.
    reactor: Option<AsyncFd<RawFd>>,
    client: Client,
}

impl Events {
    /// The next event; blocks (up to the timeout set with [`Events::set_timeout`]).
    pub fn next_event(&mut self) -> Result<ContainerEvent> {
        next_event(&mut self.client)
    }

    /// The next event, waited for on tokio's reactor rather than on a thread: a node's
    /// pods each keep a connection open for as long as they live. The connection is
    /// non-blocking from the first call on; [`Events::next_event`] no longer waits then.
    pub async fn next_event_async(&mut self) -> Result<ContainerEvent> {
        if self.reactor.is_none() {
            let stream = &self.client.stream;
            stream
                .set_nonblocking(true)
                .map_err(|e| self.client.io("make non-blocking", e))?;
            // SAFETY: the fd is the client's stream, which is never replaced and outlives
            // the registration (`reactor` is declared, so dropped, before `client`).
            let fd =
                unsafe { AsyncFd::register_with_interest(stream.as_raw_fd(), Interest::READABLE) }
                    .map_err(|e| self.client.io("watch", e.into()))?;
            self.reactor = Some(fd);
        }
        let Some(reactor) = &self.reactor else {
            unreachable!("set above")
        };
        let would_block = |r: &Result<ContainerEvent>| {
            matches!(r, Err(HolderError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::WouldBlock)
        };
        // A whole frame may already wait in the inbox: read before waiting.
        let r = next_event(&mut self.client);
        if !would_block(&r) {
            return r;
        }
        loop {
            let mut ready = reactor
                .readable()
                .await
                .map_err(|e| self.client.io("wait for", e))?;
            let r = next_event(&mut self.client);
            if !would_block(&r) {
                return r;
            }
            ready.clear_ready();
        }
    }

    pub fn set_timeout(&self, t: Option<Duration>) -> Result<()> {
        self.client.set_timeout(t)
    }
}

/// The next event frame on a subscribed connection (answers and stale frames skipped).
fn next_event(client: &mut Client) -> Result<ContainerEvent> {
    loop {
        if let Response::Event(e) = client.read_frame()? {
            return Ok(e);
        }
    }
}

impl AsFd for Events {
    /// For a poll loop or tokio's `AsyncFd`: readable when an event may be there.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.client.stream.as_fd()
    }
}
