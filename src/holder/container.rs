//! The pod's containers as the holder keeps them: created through the in-process OCI
//! runtime with their stdout/stderr on pipes the holder reads into the CRI log, their exits
//! reaped (the holder is their parent), and a record per container in
//! `<pod>/containers/<id>.json`, rewritten atomically at each step so that a restarted
//! daemon reads exit codes even after the holder is gone.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::Process;

use super::log::{LogFile, Splitter, Stream};
use super::proto::{
    ContainerInfo, ContainerState, CreateContainer, ErrorCode, ExitInfo, SpecJson, WireError,
};
use super::{PodDir, now_ns};
use crate::cgroups::Cgroup;
use crate::oci::{self, CreateOptions, OciError};
use crate::store::{Durability, write_file};

/// A failed request, as it is answered.
pub(crate) fn werr(code: ErrorCode, message: impl Into<String>) -> WireError {
    WireError {
        code,
        message: message.into(),
    }
}

fn oci_err(e: OciError) -> WireError {
    let code = match &e {
        OciError::BadId { .. } | OciError::Spec { .. } => ErrorCode::InvalidArgument,
        OciError::Exists { .. } => ErrorCode::AlreadyExists,
        OciError::NotFound { .. } => ErrorCode::NotFound,
        OciError::State { .. } => ErrorCode::FailedPrecondition,
        _ => ErrorCode::Internal,
    };
    werr(code, e.to_string())
}

/// One output pipe of a container and the partial line read from it.
#[derive(Debug)]
pub struct OutPipe {
    pub fd: OwnedFd,
    pub stream: Stream,
    pub split: Splitter,
}

/// One container.
#[derive(Debug)]
pub struct Container {
    pub info: ContainerInfo,
    /// The spec's process: what an ExecSync starts from (the rest of the spec stays on
    /// disk, in the OCI runtime's state).
    pub process: Process,
    pub cgroup: Option<Cgroup>,
    pub log: Option<LogFile>,
    /// stdout, stderr; None once at EOF.
    pub out: [Option<OutPipe>; 2],
    /// The write end of the stdin pipe, kept open so the container does not see EOF.
    pub stdin: Option<OwnedFd>,
    /// The first attach with stdin takes `stdin` (see [`super::proto::AttachStart`]).
    pub stdin_once: bool,
    /// The main process runs on a terminal: `out[0]` reads its master, `stdin` is a copy of
    /// the master (for attached clients' input and resizes).
    pub tty: bool,
    /// Clients attached to the main process's output.
    pub attached: Vec<super::attach::Attacher>,
    /// Built at the first ExecSync; `Some(None)`: this container uses the OCI runtime's exec.
    pub(crate) exec: Option<Option<super::exec_spawn::ExecTemplate>>,
}

/// A new container's main-process I/O, as [`Container`] keeps it.
struct Io {
    out: [Option<OutPipe>; 2],
    stdin: Option<OwnedFd>,
    stdin_once: bool,
    tty: bool,
}

impl Io {
    /// No I/O: a container whose program never ran.
    fn none() -> Self {
        Io {
            out: [None, None],
            stdin: None,
            stdin_once: false,
            tty: false,
        }
    }
}

impl Container {
    /// Reads what is in `out[i]` into the log; closes it at EOF or on error.
    pub fn pump(&mut self, i: usize, buf: &mut [u8]) {
        let Some(p) = &mut self.out[i] else { return };
        loop {
            match nix::unistd::read(&p.fd, buf) {
                Ok(0) => break,
                Ok(n) => {
                    for a in &mut self.attached {
                        a.feed(p.stream, &buf[..n]);
                    }
                    let (stream, log) = (p.stream, &mut self.log);
                    p.split.feed(&buf[..n], &mut |tag, text| {
                        if let Some(l) = log.as_mut() {
                            l.write(stream, tag, text);
                        }
                    });
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                // a terminal's master once the last slave descriptor closed: EOF
                Err(nix::errno::Errno::EIO) if self.tty => break,
                Err(e) => {
                    tracing::warn!(container = %self.info.id, error = %e, "read output");
                    break;
                }
            }
        }
        // EOF: the partial line left is written as upstream does
        if let Some(mut p) = self.out[i].take() {
            let log = &mut self.log;
            p.split.finish(&mut |tag, text| {
                if let Some(l) = log.as_mut() {
                    l.write(p.stream, tag, text);
                }
            });
        }
    }
}

/// The containers of the pod and the runtime that makes them.
#[derive(Debug)]
pub struct Pod {
    pub dir: PodDir,
    pub rt: oci::Runtime,
    pub containers: BTreeMap<String, Container>,
}

impl Pod {
    pub fn new(dir: PodDir) -> Self {
        let rt = oci::Runtime::new(dir.oci_root());
        Self {
            dir,
            rt,
            containers: BTreeMap::new(),
        }
    }

    pub fn get(&self, id: &str) -> Result<&Container, WireError> {
        self.containers.get(id).ok_or_else(|| not_found(id))
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.dir.records().join(format!("{id}.json"))
    }

    /// Writes the container's record (temp file, rename). No fsync: the record lives in
    /// the runtime state dir (tmpfs /run in production) and describes processes that do not
    /// outlive the machine; the rename alone keeps it whole across a daemon or holder crash.
    pub fn save(&self, info: &ContainerInfo) {
        let p = self.record_path(&info.id);
        let res = serde_json::to_vec(info)
            .map_err(std::io::Error::other)
            .and_then(|b| write_file(&p, &b, Durability::Replace));
        if let Err(e) = res {
            tracing::error!(container = %info.id, path = %p.display(), error = %e, "write record");
        }
    }

    /// Creates the container (stopped before its program runs, until `start`).
    /// How the OCI runtime plans this pod's containers.
    fn plan_options(&self) -> oci::PlanOptions {
        oci::PlanOptions {
            seccomp_cache: Some(self.dir.seccomp_cache()),
            ..Default::default()
        }
    }

    pub fn create(&mut self, mut req: CreateContainer) -> Result<ContainerInfo, WireError> {
        let wire_spec = std::mem::replace(&mut req.spec, SpecJson::Value(Default::default()));
        let id = req.id.as_str();
        oci::state::Root::check_id(id).map_err(oci_err)?;
        if self.containers.contains_key(id) {
            return Err(werr(
                ErrorCode::AlreadyExists,
                format!("container {id} already exists in pod {}", self.dir.pod_id),
            ));
        }
        let spec = match wire_spec {
            SpecJson::Value(v) => oci::spec::from_value(id, v),
            SpecJson::Raw(r) => oci::spec::parse(id, r.get().as_bytes()),
        }
        .map_err(oci_err)?;
        let terminal = spec
            .process()
            .as_ref()
            .is_some_and(|p| p.terminal() == Some(true));
        if req.tty != terminal {
            return Err(werr(
                ErrorCode::InvalidArgument,
                format!(
                    "container {id}: tty is {} but the spec's process.terminal is {terminal}",
                    req.tty
                ),
            ));
        }
        let log = match &req.log_path {
            Some(p) if !p.is_absolute() => {
                return Err(werr(
                    ErrorCode::InvalidArgument,
                    format!("container {id}: log_path {} must be absolute", p.display()),
                ));
            }
            Some(p) => Some(LogFile::open(p).map_err(|e| {
                werr(
                    ErrorCode::Internal,
                    format!("container {id}: open log {}: {e}", p.display()),
                )
            })?),
            None => None,
        };
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| werr(ErrorCode::Internal, format!("container {id}: pipe: {e}")))
        };
        if terminal {
            return self.create_tty(req, spec, log);
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (stdin_keep, stdin_child): (Option<OwnedFd>, OwnedFd) = if req.stdin {
            let (r, w) = pipe()?;
            (Some(w), r)
        } else {
            let f = std::fs::File::open("/dev/null").map_err(|e| {
                werr(
                    ErrorCode::Internal,
                    format!("container {id}: /dev/null: {e}"),
                )
            })?;
            (None, f.into())
        };
        let process = spec.process().clone().unwrap_or_default();
        let opts = CreateOptions {
            bundle: self.dir.dir.clone(),
            spec: Some(spec),
            stdio: Some([
                stdin_child.as_raw_fd(),
                out_w.as_raw_fd(),
                err_w.as_raw_fd(),
            ]),
            plan: self.plan_options(),
            ..Default::default()
        };
        let st = match self.rt.create(id, &opts) {
            Ok(st) => st,
            Err(OciError::Exec { message, .. }) => {
                return Ok(self.unstartable(id, process, log, req.log_path, message));
            }
            Err(e) => return Err(oci_err(e)),
        };
        drop((stdin_child, out_w, err_w));
        for fd in [&out_r, &err_r] {
            set_nonblocking(fd);
        }
        let out = [
            Some(OutPipe {
                fd: out_r,
                stream: Stream::Stdout,
                split: Splitter::default(),
            }),
            Some(OutPipe {
                fd: err_r,
                stream: Stream::Stderr,
                split: Splitter::default(),
            }),
        ];
        let io = Io {
            out,
            stdin: stdin_keep,
            stdin_once: req.stdin_once,
            tty: false,
        };
        let info = created_info(id, st.pid, req.log_path);
        let info = self.track(info, process, st.cgroup, log, io);
        tracing::info!(container = id, pid = info.pid, "created");
        Ok(info)
    }

    /// Creates a container whose process has a terminal: the OCI runtime makes it inside
    /// the container and sends its master to a console socket of the holder's, bound in
    /// the pod's directory for the call. The master is read for the log (as stdout) and,
    /// with `stdin`, handed (as a copy) to attached clients.
    fn create_tty(
        &mut self,
        req: CreateContainer,
        spec: oci_spec::runtime::Spec,
        log: Option<LogFile>,
    ) -> Result<ContainerInfo, WireError> {
        let id = req.id.as_str();
        let sys = |what: &str, e: &dyn std::fmt::Display| {
            werr(
                ErrorCode::Internal,
                format!("container {id}: tty: {what}: {e}"),
            )
        };
        let dir = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&self.dir.dir)
            .map_err(|e| sys("open the pod dir", &e))?;
        let short_id: String = id.chars().take(16).collect();
        let name = format!("console-{short_id}.sock");
        // reached through the dir's fd, so that the path fits in a sockaddr_un
        let short = PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()));
        let full = self.dir.dir.join(&name);
        let _ = std::fs::remove_file(&full);
        let listener = std::os::unix::net::UnixListener::bind(&short)
            .map_err(|e| sys("bind the console socket", &e))?;
        let null = |w: bool| -> Result<OwnedFd, WireError> {
            std::fs::File::options()
                .read(!w)
                .write(w)
                .open("/dev/null")
                .map(Into::into)
                .map_err(|e| sys("/dev/null", &e))
        };
        let (i, o) = (null(false)?, null(true)?);
        let process = spec.process().clone().unwrap_or_default();
        let opts = CreateOptions {
            bundle: self.dir.dir.clone(),
            spec: Some(spec),
            console_socket: Some(short.clone()),
            stdio: Some([i.as_raw_fd(), o.as_raw_fd(), o.as_raw_fd()]),
            plan: self.plan_options(),
            ..Default::default()
        };
        let created = self.rt.create(id, &opts);
        let master = match &created {
            Ok(_) => receive_master(&listener),
            Err(_) => Err(std::io::Error::other("not created")),
        };
        let _ = std::fs::remove_file(&full);
        let st = match created {
            Ok(st) => st,
            Err(OciError::Exec { message, .. }) => {
                return Ok(self.unstartable(id, process, log, req.log_path, message));
            }
            Err(e) => return Err(oci_err(e)),
        };
        let master = match master {
            Ok(m) => m,
            Err(e) => {
                let _ = self.rt.kill(id, Signal::SIGKILL, true);
                let _ = oci::wait(st.pid);
                let _ = self.rt.delete(id, true);
                return Err(sys("receive the terminal", &e));
            }
        };
        let stdin = if req.stdin {
            Some(master.try_clone().map_err(|e| sys("dup", &e))?)
        } else {
            None
        };
        set_nonblocking(&master);
        let io = Io {
            out: [
                Some(OutPipe {
                    fd: master,
                    stream: Stream::Stdout,
                    split: Splitter::default(),
                }),
                None,
            ],
            stdin,
            stdin_once: false,
            tty: true,
        };
        let info = created_info(id, st.pid, req.log_path);
        let info = self.track(info, process, st.cgroup, log, io);
        tracing::info!(container = id, pid = info.pid, "created with a terminal");
        Ok(info)
    }

    /// Keeps a container whose program cannot be executed: the OCI runtime made and
    /// removed it (runc fails its create the same way); what the kubelet sees is
    /// containerd's: CreateContainer succeeds, StartContainer fails with the reason.
    fn unstartable(
        &mut self,
        id: &str,
        process: Process,
        log: Option<LogFile>,
        log_path: Option<PathBuf>,
        message: String,
    ) -> ContainerInfo {
        let mut info = created_info(id, 0, log_path);
        info.start_error = Some(message);
        let info = self.track(info, process, None, log, Io::none());
        tracing::info!(container = id, reason = ?info.start_error, "created; its program cannot run");
        info
    }

    /// Records a container just made (on disk, then in the pod's table) and returns its
    /// info.
    fn track(
        &mut self,
        info: ContainerInfo,
        process: Process,
        cgroup: Option<Cgroup>,
        log: Option<LogFile>,
        io: Io,
    ) -> ContainerInfo {
        self.save(&info);
        self.containers.insert(
            info.id.clone(),
            Container {
                info: info.clone(),
                process,
                cgroup,
                log,
                out: io.out,
                stdin: io.stdin,
                stdin_once: io.stdin_once,
                tty: io.tty,
                attached: Vec::new(),
                exec: None,
            },
        );
        info
    }

    /// Lets the created container run its program. A container whose program cannot
    /// run ends here, with exit code 128 (containerd's for a failed start), and the
    /// start fails with why.
    pub fn start(&mut self, id: &str) -> Result<ContainerInfo, WireError> {
        let c = self.get(id)?;
        if c.info.state != ContainerState::Created {
            return Err(werr(
                ErrorCode::FailedPrecondition,
                format!("container {id} is {:?}, not created", c.info.state),
            ));
        }
        if let Some(why) = c.info.start_error.clone() {
            let c = self.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            c.info.state = ContainerState::Exited;
            c.info.exit = Some(ExitInfo {
                code: 128,
                signal: None,
                oom_killed: false,
            });
            c.info.finished_at = now_ns();
            let info = c.info.clone();
            self.save(&info);
            return Err(werr(ErrorCode::FailedPrecondition, why));
        }
        self.rt.start(id).map_err(oci_err)?;
        let c = self.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        // it may have exited already; the exit is reaped by the loop and recorded then
        if c.info.state == ContainerState::Created {
            c.info.state = ContainerState::Running;
        }
        c.info.started_at = now_ns();
        let info = c.info.clone();
        self.save(&info);
        Ok(info)
    }

    /// Sends `sig` to the init, or to every process of the container.
    pub fn signal(&self, id: &str, sig: i32, all: bool) -> Result<(), WireError> {
        let c = self.get(id)?;
        let sig = Signal::try_from(sig).map_err(|_| {
            werr(
                ErrorCode::InvalidArgument,
                format!("container {id}: signal {sig} is not a signal"),
            )
        })?;
        if c.info.state == ContainerState::Exited {
            return Err(werr(
                ErrorCode::FailedPrecondition,
                format!("container {id} has exited"),
            ));
        }
        if c.info.pid <= 0 {
            return Err(werr(
                ErrorCode::FailedPrecondition,
                format!("container {id} has no process"),
            ));
        }
        if all {
            return self.rt.kill(id, sig, true).map_err(oci_err);
        }
        // The init is the holder's child: its pid cannot be reused before it is reaped.
        nix::sys::signal::kill(Pid::from_raw(c.info.pid), sig).map_err(|e| {
            werr(
                ErrorCode::Internal,
                format!("container {id}: kill {sig}: {e}"),
            )
        })
    }

    /// The container whose init is `pid`.
    pub fn by_pid(&self, pid: i32) -> Option<String> {
        self.containers
            .values()
            .find(|c| c.info.pid == pid && c.info.state != ContainerState::Exited)
            .map(|c| c.info.id.clone())
    }

    /// Records the exit of the container's init (already reaped).
    pub fn exited(&mut self, id: &str, exit: oci::Exit, buf: &mut [u8]) -> Option<ContainerInfo> {
        let c = self.containers.get_mut(id)?;
        // what the init wrote before it died is in the pipes now
        c.pump(0, buf);
        c.pump(1, buf);
        let oom = c.cgroup.as_ref().is_some_and(oom_killed);
        c.info.exit = Some(ExitInfo {
            code: exit.shell_code(),
            signal: match exit {
                oci::Exit::Signal(s) => Some(s),
                oci::Exit::Code(_) => None,
            },
            oom_killed: oom,
        });
        c.info.state = ContainerState::Exited;
        c.info.finished_at = now_ns();
        let info = c.info.clone();
        self.save(&info);
        tracing::info!(container = id, ?exit, oom, "exited");
        Some(info)
    }

    /// Kills the container if it runs (waiting for its init), then deletes it and its
    /// record. Returns the exit it recorded on the way, if any.
    pub fn remove(&mut self, id: &str, buf: &mut [u8]) -> Result<Option<ContainerInfo>, WireError> {
        let c = self.get(id)?;
        let mut stopped = None;
        // pid 0: made without a process (its program cannot run); nothing to kill.
        if c.info.state != ContainerState::Exited && c.info.pid > 0 {
            let pid = c.info.pid;
            let _ = self.rt.kill(id, Signal::SIGKILL, true);
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let exit = oci::wait(pid).map_err(|e| {
                werr(
                    ErrorCode::Internal,
                    format!("container {id}: wait for pid {pid}: {e}"),
                )
            })?;
            stopped = self.exited(id, exit, buf);
        }
        match self.rt.delete(id, true) {
            Ok(()) | Err(OciError::NotFound { .. }) => {}
            Err(e) => return Err(oci_err(e)),
        }
        if let Some(mut c) = self.containers.remove(id) {
            c.pump(0, buf);
            c.pump(1, buf);
        }
        let p = self.record_path(id);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(container = id, error = %e, "remove record");
        }
        tracing::info!(container = id, "removed");
        Ok(stopped)
    }

    /// Reopens the container's log file.
    pub fn reopen_log(&mut self, id: &str) -> Result<(), WireError> {
        let c = self.containers.get_mut(id).ok_or_else(|| not_found(id))?;
        let Some(l) = &mut c.log else {
            return Err(werr(
                ErrorCode::FailedPrecondition,
                format!("container {id} has no log file"),
            ));
        };
        l.reopen().map_err(|e| {
            werr(
                ErrorCode::Internal,
                format!("container {id}: reopen log {}: {e}", l.path().display()),
            )
        })
    }
}

pub(crate) fn not_found(id: &str) -> WireError {
    werr(ErrorCode::NotFound, format!("container {id} not found"))
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) {
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
}

/// Whether the kernel's OOM killer killed a process of the cgroup (v1: memory.oom_control's
/// `oom_kill`, or `failcnt` where the kernel has no such field; v2: memory.events).
pub fn oom_killed(cg: &Cgroup) -> bool {
    let field = |text: &str, name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    if let Some(dir) = cg.dirs.get("memory") {
        let ctl = std::fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default();
        if let Some(n) = field(&ctl, "oom_kill ") {
            return n > 0;
        }
        let failcnt = std::fs::read_to_string(dir.join("memory.failcnt")).unwrap_or_default();
        return failcnt.trim().parse::<u64>().unwrap_or(0) > 0;
    }
    if let Some(dir) = cg.dirs.get("unified") {
        let ev = std::fs::read_to_string(dir.join("memory.events")).unwrap_or_default();
        return field(&ev, "oom_kill ").unwrap_or(0) > 0;
    }
    false
}

/// The master the OCI runtime sends to the console socket (runc's protocol: one message,
/// the pty's name as data and the master attached).
fn receive_master(listener: &std::os::unix::net::UnixListener) -> std::io::Result<OwnedFd> {
    listener.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    return Err(std::io::Error::other("the runtime never connected"));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    };
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut fds = Vec::new();
    let mut buf = [0u8; 256];
    super::fdpass::recv_with_fds(&conn, &mut buf, &mut fds)?;
    fds.into_iter()
        .next()
        .ok_or_else(|| std::io::Error::other("no terminal came with the message"))
}

/// The record of a container just created, with its init's pid.
fn created_info(id: &str, pid: i32, log_path: Option<PathBuf>) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        state: ContainerState::Created,
        pid,
        created_at: now_ns(),
        started_at: 0,
        finished_at: 0,
        exit: None,
        log_path,
        start_error: None,
    }
}
