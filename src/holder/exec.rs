//! ExecSync: a process run in a container with its stdout and stderr captured, answered
//! when it exits (or killed at its deadline). The holder's loop keeps serving other
//! requests meanwhile; the exec'd process is the only process it costs.
//!
//! Exec (interactive): the same fork into the container, with the daemon's descriptors
//! (pipes, or a terminal made here) as its stdio; answered with the exit code alone. The
//! process leads its own process group (its own session with a terminal), and the group is
//! killed when the connection that asked for it closes: a client that went away leaves
//! nothing running.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use super::container::{Pod, set_nonblocking, werr};
use super::exec_spawn::{ExecTemplate, Setsid};
use super::proto::{ContainerState, ErrorCode, ExecResult, ExecStart, MAX_EXEC_OUTPUT, WireError};
use crate::oci::{self, ExecOptions};

/// One running ExecSync.
#[derive(Debug)]
pub struct ExecRun {
    /// The client connection and request to answer.
    pub conn: u64,
    pub req: u64,
    pub container: String,
    pub pid: i32,
    /// stdout, stderr; None once at EOF.
    pub pipes: [Option<OwnedFd>; 2],
    pub output: [Vec<u8>; 2],
    pub deadline: Option<Instant>,
    pub timeout: Duration,
    pub timed_out: bool,
    pub exit: Option<oci::Exit>,
    /// An interactive exec: killed when its connection closes.
    pub attached: bool,
    /// Its connection closed and it was killed.
    pub orphaned: bool,
}

/// Forks `cmd` into running container `id` with `stdio`; returns its pid.
fn spawn_in(
    pod: &mut Pod,
    id: &str,
    cmd: Vec<String>,
    stdio: [RawFd; 3],
    setsid: Setsid,
) -> Result<i32, WireError> {
    let c = pod
        .containers
        .get_mut(id)
        .ok_or_else(|| super::container::not_found(id))?;
    if c.info.state != ContainerState::Running {
        return Err(werr(
            ErrorCode::FailedPrecondition,
            format!("container {id} is {:?}, not running", c.info.state),
        ));
    }
    if cmd.is_empty() {
        return Err(werr(
            ErrorCode::InvalidArgument,
            format!("container {id}: exec: cmd is empty"),
        ));
    }
    if c.exec.is_none() {
        // read once: the spec the OCI runtime saved at create
        let spec = crate::oci::spec::load(id, &pod.rt.root.dir(id))
            .map_err(|e| werr(ErrorCode::Internal, e.to_string()))?;
        let linux = spec.linux().clone().unwrap_or_default();
        c.exec = Some(ExecTemplate::new(
            id,
            &c.process,
            &linux,
            c.info.pid,
            c.cgroup.as_ref(),
        )?);
        drop((spec, linux));
        // what parsing and compiling allocated goes back to the kernel
        super::release_memory();
    }
    match &mut c.exec {
        Some(Some(t)) => t.spawn(id, &cmd, stdio, setsid),
        _ => {
            // The OCI runtime's exec: no session or controlling terminal of ours.
            let mut process = c.process.clone();
            process.set_args(Some(cmd));
            process.set_terminal(Some(false));
            let opts = ExecOptions {
                stdio: Some(stdio),
                ..Default::default()
            };
            pod.rt
                .exec(id, &process, &opts)
                .map_err(|e| werr(ErrorCode::Internal, format!("container {id}: exec: {e}")))
        }
    }
}

/// The container's init pid, when it runs.
fn running_pid(pod: &Pod, id: &str) -> Result<i32, WireError> {
    let c = pod
        .containers
        .get(id)
        .ok_or_else(|| super::container::not_found(id))?;
    if c.info.state != ContainerState::Running {
        return Err(werr(
            ErrorCode::FailedPrecondition,
            format!("container {id} is {:?}, not running", c.info.state),
        ));
    }
    Ok(c.info.pid)
}

impl ExecRun {
    /// Starts `cmd` in container `id` with the container's own process settings (user,
    /// env, cwd, capabilities, seccomp), as containerd's ExecSync does.
    pub fn start(
        pod: &mut Pod,
        id: &str,
        cmd: Vec<String>,
        timeout_ms: u64,
        conn: u64,
        req: u64,
    ) -> Result<ExecRun, WireError> {
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| werr(ErrorCode::Internal, format!("container {id}: pipe: {e}")))
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let null: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(|e| werr(ErrorCode::Internal, format!("/dev/null: {e}")))?
            .into();
        let stdio = [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        let pid = spawn_in(pod, id, cmd, stdio, Setsid::No)?;
        drop((null, out_w, err_w));
        set_nonblocking(&out_r);
        set_nonblocking(&err_r);
        let timeout = Duration::from_millis(timeout_ms);
        Ok(ExecRun {
            conn,
            req,
            container: id.into(),
            pid,
            pipes: [Some(out_r), Some(err_r)],
            output: [Vec::new(), Vec::new()],
            deadline: (timeout_ms > 0).then(|| Instant::now() + timeout),
            timeout,
            timed_out: false,
            exit: None,
            attached: false,
            orphaned: false,
        })
    }

    /// Starts an interactive exec with `fds`, the descriptors that came with the request
    /// (see [`ExecStart`]).
    pub fn start_attached(
        pod: &mut Pod,
        start: ExecStart,
        mut fds: Vec<OwnedFd>,
        conn: u64,
        req: u64,
    ) -> Result<ExecRun, WireError> {
        let id = start.id.clone();
        if fds.len() != start.fd_count() {
            return Err(werr(
                ErrorCode::InvalidArgument,
                format!(
                    "container {id}: exec: {} descriptors came with the request, {} expected",
                    fds.len(),
                    start.fd_count()
                ),
            ));
        }
        let null: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(|e| werr(ErrorCode::Internal, format!("/dev/null: {e}")))?
            .into();
        let pid = if start.tty {
            let init = running_pid(pod, &id)?;
            let reply = fds.remove(0);
            let pty = super::pty::open_in(init, start.size).map_err(|e| {
                werr(
                    ErrorCode::Internal,
                    format!("container {id}: exec: terminal: {e}"),
                )
            })?;
            let s = pty.slave.as_raw_fd();
            let pid = spawn_in(pod, &id, start.cmd, [s, s, s], Setsid::Terminal)?;
            drop(pty.slave);
            let sent = super::fdpass::send_with_fds(&reply, b"m", &[pty.master.as_raw_fd()]);
            if let Err(e) = sent {
                kill_group(pid);
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return Err(werr(
                    ErrorCode::Internal,
                    format!("container {id}: exec: send the terminal: {e}"),
                ));
            }
            pid
        } else {
            let mut it = fds.iter();
            let mut pick = |on: bool| {
                if on {
                    it.next().map_or(null.as_raw_fd(), AsRawFd::as_raw_fd)
                } else {
                    null.as_raw_fd()
                }
            };
            let stdio = [pick(start.stdin), pick(start.stdout), pick(start.stderr)];
            spawn_in(pod, &id, start.cmd, stdio, Setsid::Group)?
        };
        Ok(ExecRun {
            conn,
            req,
            container: id,
            pid,
            pipes: [None, None],
            output: [Vec::new(), Vec::new()],
            deadline: None,
            timeout: Duration::ZERO,
            timed_out: false,
            exit: None,
            attached: true,
            orphaned: false,
        })
    }

    /// Kills an interactive exec whose client went away (its whole process group).
    pub fn orphan(&mut self) {
        if self.exit.is_none() && !self.orphaned {
            tracing::info!(container = %self.container, pid = self.pid, "exec client gone: killing the exec");
            self.orphaned = true;
            kill_group(self.pid);
        }
    }

    /// Reads what is in pipe `i`; closes it at EOF.
    pub fn pump(&mut self, i: usize, buf: &mut [u8]) {
        let Some(fd) = &self.pipes[i] else { return };
        loop {
            match nix::unistd::read(fd, buf) {
                Ok(0) => break,
                Ok(n) => {
                    // past the cap the output is read and dropped, so the process never
                    // blocks on a full pipe
                    let room = MAX_EXEC_OUTPUT.saturating_sub(self.output[i].len());
                    self.output[i].extend_from_slice(&buf[..n.min(room)]);
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        self.pipes[i] = None;
    }

    /// Kills the process when its deadline has passed.
    pub fn check_deadline(&mut self, now: Instant) {
        if self.exit.is_none() && !self.timed_out && self.deadline.is_some_and(|d| now >= d) {
            self.timed_out = true;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// The answer, once the process has exited. Output written by processes it left
    /// behind after its exit is not waited for.
    pub fn result(&mut self, buf: &mut [u8]) -> Option<Result<ExecResult, WireError>> {
        let exit = self.exit?;
        self.pump(0, buf);
        self.pump(1, buf);
        self.pipes = [None, None];
        if self.timed_out {
            return Some(Err(werr(
                ErrorCode::DeadlineExceeded,
                format!(
                    "container {}: exec timeout {:?} exceeded; the process was killed",
                    self.container, self.timeout
                ),
            )));
        }
        Some(Ok(ExecResult {
            exit_code: exit.shell_code(),
            stdout: std::mem::take(&mut self.output[0]),
            stderr: std::mem::take(&mut self.output[1]),
        }))
    }
}

/// SIGKILLs the process group `pid` leads, or `pid` alone when it leads none (an exec
/// through the OCI runtime).
fn kill_group(pid: i32) {
    use nix::sys::signal::{Signal, kill, killpg};
    let p = nix::unistd::Pid::from_raw(pid);
    if killpg(p, Signal::SIGKILL).is_err() {
        let _ = kill(p, Signal::SIGKILL);
    }
}
