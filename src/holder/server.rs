//! The holder's single-threaded poll loop: one poll(2) over the signalfd (SIGCHLD), the
//! listening socket, the client connections, the containers' output pipes and the running
//! execs' pipes. Every socket and pipe is non-blocking; a client's answers and events are
//! queued and written as its socket takes them, so a slow client never stalls the pod.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use super::conn::Conn;
use super::container::{Pod, werr};
use super::exec::ExecRun;
use super::now_ns;
use super::ns::Namespaces;
use super::proto::{
    Body, ContainerEvent, ContainerInfo, ErrorCode, EventKind, HolderInfo, PROTOCOL_VERSION,
    Request, Response, WireError, encode,
};
use crate::oci::Exit;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Signal,
    Listener,
    Conn(u64),
    Out(String, usize),
    Exec(usize, usize),
}

/// How long the holder waits, idle, before it gives back the memory and code mappings
/// its last work took (see [`super::release_memory`]): a burst of calls (a pod's
/// containers created and started, a probe) pays for that once, not per call.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// The holder's state while it serves.
#[derive(Debug)]
pub struct Server {
    pub(super) pod: Pod,
    pub(super) ns: Namespaces<'static>,
    pub(super) listener: UnixListener,
    pub(super) sigfd: SignalFd,
    pub(super) conns: BTreeMap<u64, Conn>,
    pub(super) next_conn: u64,
    pub(super) execs: Vec<ExecRun>,
    pub(super) buf: Vec<u8>,
    pub(super) shutdown: Option<(u64, u64)>,
}

impl Server {
    pub fn new(pod: Pod, ns: Namespaces<'static>, listener: UnixListener, sigfd: SignalFd) -> Self {
        Self {
            pod,
            ns,
            listener,
            sigfd,
            conns: BTreeMap::new(),
            next_conn: 1,
            execs: Vec::new(),
            buf: vec![0; 16 << 10],
            shutdown: None,
        }
    }

    /// Serves until a Shutdown request has been carried out.
    pub fn run(mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut tokens: Vec<Token> = Vec::new();
        // When the holder, idle since, gives back what its last burst of work took.
        let mut release_at: Option<Instant> = None;
        loop {
            fds.clear();
            tokens.clear();
            let mut add = |fd: RawFd, events: libc::c_short, t: Token| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                tokens.push(t);
            };
            add(self.sigfd.as_raw_fd(), libc::POLLIN, Token::Signal);
            add(self.listener.as_raw_fd(), libc::POLLIN, Token::Listener);
            for (id, c) in &self.conns {
                let mut ev = libc::POLLIN;
                if !c.outbox.is_empty() {
                    ev |= libc::POLLOUT;
                }
                add(c.stream.as_raw_fd(), ev, Token::Conn(*id));
            }
            for (id, c) in &self.pod.containers {
                for (i, p) in c.out.iter().enumerate() {
                    if let Some(p) = p {
                        add(p.fd.as_raw_fd(), libc::POLLIN, Token::Out(id.clone(), i));
                    }
                }
            }
            for (n, e) in self.execs.iter().enumerate() {
                for (i, p) in e.pipes.iter().enumerate() {
                    if let Some(p) = p {
                        add(p.as_raw_fd(), libc::POLLIN, Token::Exec(n, i));
                    }
                }
            }
            let timeout = self
                .execs
                .iter()
                .filter(|e| e.exit.is_none() && !e.timed_out)
                .filter_map(|e| e.deadline)
                .chain(release_at)
                .min()
                .map(|d| {
                    let ms = d.saturating_duration_since(Instant::now()).as_millis();
                    ms.min(i32::MAX as u128) as i32 + 1
                })
                .unwrap_or(-1);
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll");
                }
                continue;
            }
            if n > 0 {
                release_at = Some(Instant::now() + IDLE_RELEASE);
            } else if release_at.is_some_and(|t| t <= Instant::now()) {
                release_at = None;
                super::release_memory();
            }
            for (fd, t) in fds.iter().zip(tokens.iter()) {
                if fd.revents == 0 {
                    continue;
                }
                match t {
                    Token::Signal => self.on_signal(),
                    Token::Listener => self.accept(),
                    Token::Conn(id) => self.on_conn(*id, fd.revents),
                    Token::Out(id, i) => {
                        if let Some(c) = self.pod.containers.get_mut(id) {
                            c.pump(*i, &mut self.buf);
                        }
                    }
                    Token::Exec(n, i) => {
                        if let Some(e) = self.execs.get_mut(*n) {
                            e.pump(*i, &mut self.buf);
                        }
                    }
                }
            }
            let now = Instant::now();
            for e in &mut self.execs {
                e.check_deadline(now);
            }
            self.finish_execs();
            for e in &mut self.execs {
                if e.attached && !self.conns.contains_key(&e.conn) {
                    e.orphan();
                }
            }
            self.drop_gone_attaches();
            if let Some((conn, req)) = self.shutdown.take() {
                self.do_shutdown(conn, req);
                return;
            }
            self.flush();
        }
    }

    pub(super) fn handle(
        &mut self,
        conn: u64,
        req_id: u64,
        req: Request,
    ) -> Option<Result<Body, WireError>> {
        let trim = matches!(
            req,
            Request::CreateContainer(_)
                | Request::StartContainer { .. }
                | Request::RemoveContainer { .. }
        );
        let r = match req {
            Request::Hello => Ok(Body::Hello(self.hello())),
            Request::CreateContainer(c) => self.pod.create(c).map(|info| {
                self.event(EventKind::Created, &info);
                Body::Container(info)
            }),
            Request::StartContainer { id } => match self.pod.start(&id) {
                Ok(info) => {
                    self.event(EventKind::Started, &info);
                    Ok(Body::Container(info))
                }
                Err(e) => {
                    // A program that cannot run ended the container.
                    let ended = self
                        .pod
                        .get(&id)
                        .ok()
                        .filter(|c| c.info.start_error.is_some())
                        .map(|c| c.info.clone());
                    if let Some(info) = ended {
                        self.event(EventKind::Stopped, &info);
                    }
                    Err(e)
                }
            },
            Request::Signal { id, signal, all } => {
                self.pod.signal(&id, signal, all).map(|()| Body::Done)
            }
            Request::ContainerState { id } => {
                self.pod.get(&id).map(|c| Body::Container(c.info.clone()))
            }
            Request::ExecSync {
                id,
                cmd,
                timeout_ms,
            } => match ExecRun::start(&mut self.pod, &id, cmd, timeout_ms, conn, req_id) {
                Ok(run) => {
                    self.execs.push(run);
                    return None;
                }
                Err(e) => Err(e),
            },
            Request::Exec(start) => {
                let fds = self
                    .conns
                    .get_mut(&conn)
                    .map(|c| {
                        let n = start.fd_count().min(c.fds.len());
                        c.fds.drain(..n).collect()
                    })
                    .unwrap_or_default();
                match ExecRun::start_attached(&mut self.pod, start, fds, conn, req_id) {
                    Ok(run) => {
                        self.execs.push(run);
                        return None;
                    }
                    Err(e) => Err(e),
                }
            }
            Request::Attach(a) => {
                let fds = self
                    .conns
                    .get_mut(&conn)
                    .map(|c| {
                        let n = a.fd_count().min(c.fds.len());
                        c.fds.drain(..n).collect()
                    })
                    .unwrap_or_default();
                match self.attach(conn, req_id, a, fds) {
                    Ok(()) => return None,
                    Err(e) => Err(e),
                }
            }
            Request::ReopenLog { id } => self.pod.reopen_log(&id).map(|()| Body::Done),
            Request::RemoveContainer { id } => self.remove(&id).map(|()| Body::Done),
            Request::ListContainers => Ok(Body::Containers {
                containers: self.list(),
            }),
            Request::Subscribe => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.subscribed = true;
                }
                Ok(Body::Containers {
                    containers: self.list(),
                })
            }
            Request::Shutdown => {
                self.shutdown = Some((conn, req_id));
                return None;
            }
        };
        if trim {
            // creating, starting and removing run code once and allocate and free the
            // most: give it back
            super::release_memory();
        }
        Some(r)
    }

    /// Removes a container (killing it first) and announces its stop and deletion.
    fn remove(&mut self, id: &str) -> Result<(), WireError> {
        let before = self.pod.get(id).map(|c| c.info.clone())?;
        self.end_attaches(id);
        let stopped = self.pod.remove(id, &mut self.buf)?;
        if let Some(s) = &stopped {
            self.event(EventKind::Stopped, s);
        }
        self.event(EventKind::Deleted, stopped.as_ref().unwrap_or(&before));
        Ok(())
    }

    fn hello(&self) -> HolderInfo {
        HolderInfo {
            version: PROTOCOL_VERSION,
            pod_id: self.pod.dir.pod_id.clone(),
            pid: std::process::id() as i32,
            namespaces: self.ns.files.clone(),
        }
    }

    fn list(&self) -> Vec<ContainerInfo> {
        self.pod
            .containers
            .values()
            .map(|c| c.info.clone())
            .collect()
    }

    /// Queues an event for every subscribed client.
    fn event(&mut self, kind: EventKind, info: &ContainerInfo) {
        let ev = Response::Event(ContainerEvent {
            id: info.id.clone(),
            kind,
            time: now_ns(),
            container: info.clone(),
        });
        for c in self.conns.values_mut().filter(|c| c.subscribed) {
            let _ = encode(&ev, &mut c.outbox);
        }
    }

    fn on_signal(&mut self) {
        while let Ok(Some(si)) = self.sigfd.read_signal() {
            let sig = si.ssi_signo as i32;
            if sig != Signal::SIGCHLD as i32 {
                tracing::info!(signal = sig, "ignored: the holder stops only on Shutdown");
            }
        }
        loop {
            let (pid, exit) = match waitpid(None::<nix::unistd::Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            self.on_exit(pid, exit);
        }
    }

    fn on_exit(&mut self, pid: i32, exit: Exit) {
        if let Some(e) = self
            .execs
            .iter_mut()
            .find(|e| e.pid == pid && e.exit.is_none())
        {
            e.exit = Some(exit);
        } else if let Some(id) = self.pod.by_pid(pid) {
            if let Some(info) = self.pod.exited(&id, exit, &mut self.buf) {
                self.event(EventKind::Stopped, &info);
            }
            self.end_attaches(&id);
        } else if self.ns.pod_init == Some(pid) {
            tracing::error!(?exit, "the pod's pid 1 exited");
            self.ns.pod_init = None;
        } else {
            tracing::debug!(pid, ?exit, "reaped an orphan");
        }
    }

    fn finish_execs(&mut self) {
        let mut i = 0;
        while i < self.execs.len() {
            match self.execs[i].result(&mut self.buf) {
                Some(r) => {
                    let e = self.execs.swap_remove(i);
                    self.answer(e.conn, e.req, r.map(Body::Exec));
                }
                None => i += 1,
            }
        }
    }

    /// Kills and removes every container, releases the namespaces and the pod's files,
    /// answers the request and returns (the holder then exits).
    fn do_shutdown(&mut self, conn: u64, req: u64) {
        tracing::info!("shutting down");
        let execs: Vec<ExecRun> = self.execs.drain(..).collect();
        for e in execs {
            let pid = nix::unistd::Pid::from_raw(e.pid);
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            let msg = format!(
                "container {}: exec killed: the pod is shutting down",
                e.container
            );
            self.answer(e.conn, e.req, Err(werr(ErrorCode::FailedPrecondition, msg)));
        }
        let mut errs = Vec::new();
        let ids: Vec<String> = self.pod.containers.keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.remove(&id) {
                errs.push(e.message);
            }
        }
        errs.extend(self.ns.release());
        let dir = &self.pod.dir.dir;
        if let Err(e) = std::fs::remove_dir_all(dir) {
            errs.push(format!("remove {}: {e}", dir.display()));
        }
        let r = if errs.is_empty() {
            Ok(Body::Done)
        } else {
            Err(werr(
                ErrorCode::Internal,
                format!("shutdown: {}", errs.join("; ")),
            ))
        };
        self.answer(conn, req, r);
        // last words, written whole before exiting
        for c in self.conns.values_mut() {
            let _ = c.stream.set_nonblocking(false);
            let _ = c.stream.write_all(&c.outbox);
        }
    }
}
