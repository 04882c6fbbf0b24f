//! Interactive exec: the pod's holder forks the command into the container with the
//! daemon's descriptors as its stdio, and this side carries bytes between them and the
//! client's streams.
//!
//! ```text
//!  without a tty: pipes; the holder gets the process's ends with the request (SCM_RIGHTS)
//!  with a tty:    a socketpair; the holder makes the terminal in the container's devpts,
//!                 hands the slave to the process and sends the master back on it
//!  then:          copy stdin -> process, process -> stdout/stderr, resizes -> TIOCSWINSZ,
//!                 until the holder answers the exit code on the request's own connection
//! ```
//! The request has a connection of its own: dropping this session's future (the client
//! went away) closes it, and the holder kills the process's group.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::fcntl::OFlag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::FdStream;
use crate::runtime::holder::proto::{self, Body, Response};
use crate::runtime::holder::{Client, ExecStart, fdpass};
use crate::runtime::streaming::{RuntimeError, SessionIo, StreamOut};
use crate::sys::tty;

/// How long output may keep coming after the process exited (from processes it left
/// behind holding its stdout); then the session ends without it.
const DRAIN: Duration = Duration::from_secs(2);

/// How long kubectl has to send its terminal's size before the process starts without it.
const FIRST_SIZE: Duration = Duration::from_secs(2);

/// How long the holder has to send a terminal's master.
const MASTER_WAIT: Duration = Duration::from_secs(30);

fn err(container: &str, what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError(format!("container {container}: {what}: {e}"))
}

/// Tasks that end with the session, however it ends.
#[derive(Default)]
pub(super) struct Tasks(pub Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Where one session's container is: the holder's state dir and the pod.
pub(super) struct Target {
    pub state_dir: std::path::PathBuf,
    pub pod_id: String,
    pub container_id: String,
}

pub(super) async fn run(
    t: Target,
    cmd: &[String],
    tty: bool,
    mut io: SessionIo,
) -> Result<i32, RuntimeError> {
    let cid = t.container_id.clone();
    if cmd.is_empty() {
        return Err(RuntimeError(format!("container {cid}: exec: cmd is empty")));
    }
    let mut size = None;
    if tty
        && let Some(rx) = io.resize.as_mut()
        && let Ok(Some(s)) = tokio::time::timeout(FIRST_SIZE, rx.recv()).await
    {
        size = Some((s.height, s.width));
    }
    let start = ExecStart {
        id: cid.clone(),
        cmd: cmd.to_vec(),
        tty,
        stdin: io.stdin.is_some(),
        stdout: io.stdout.is_some(),
        stderr: io.stderr.is_some(),
        size,
    };
    let pipe = || nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| err(&cid, "pipe", e));
    // (ours, theirs) per stream; theirs go to the holder.
    let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
    let mut theirs: Vec<OwnedFd> = Vec::new();
    let mut reply: Option<OwnedFd> = None;
    if tty {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| err(&cid, "socketpair", e))?;
        reply = Some(a);
        theirs.push(b);
    } else {
        if start.stdin {
            let (r, w) = pipe()?;
            ours[0] = Some(w);
            theirs.push(r);
        }
        for (i, on) in [(1, start.stdout), (2, start.stderr)] {
            if on {
                let (r, w) = pipe()?;
                ours[i] = Some(r);
                theirs.push(w);
            }
        }
    }
    let blocking_cid = cid.clone();
    let (stream, req_id, master) = tokio::task::spawn_blocking(move || {
        let cid = blocking_cid;
        let client = Client::connect(&t.state_dir, &t.pod_id).map_err(|e| err(&cid, "exec", e))?;
        let raw: Vec<RawFd> = theirs.iter().map(AsRawFd::as_raw_fd).collect();
        let (stream, id) = client
            .start_exec(start, &raw)
            .map_err(|e| err(&cid, "exec", e))?;
        // The holder has its own copies now; ours must close so that EOFs reach each side.
        drop(theirs);
        let master = match reply {
            Some(sock) => recv_fd(&sock)
                .map_err(|e| err(&cid, "exec: receive the terminal", e))?
                .map(|(_, fd)| fd),
            None => None,
        };
        Ok::<_, RuntimeError>((stream, id, master))
    })
    .await
    .map_err(|e| err(&cid, "exec", e))??;
    stream
        .set_nonblocking(true)
        .map_err(|e| err(&cid, "exec", e))?;
    let mut conn = tokio::net::UnixStream::from_std(stream).map_err(|e| err(&cid, "exec", e))?;
    let mut tasks = Tasks::default();
    let mut outputs = Vec::new();
    if let Some(master) = master {
        let resize_fd = master.try_clone().map_err(|e| err(&cid, "dup", e))?;
        let (mut reader, mut writer) =
            tokio::io::split(FdStream::new(master).map_err(|e| err(&cid, "terminal", e))?);
        if let Some(mut from) = io.stdin.take() {
            tasks.0.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut writer).await;
            }));
        }
        if let Some(mut rx) = io.resize.take() {
            tasks.0.push(tokio::spawn(async move {
                while let Some(s) = rx.recv().await {
                    if let Err(e) = tty::set_size(&resize_fd, s.height, s.width) {
                        tracing::debug!(error = %e, "exec: resize");
                    }
                }
            }));
        }
        // The terminal is read even when nobody wants its output, or the process blocks.
        let to = io.stdout.take();
        outputs.push(tokio::spawn(async move {
            copy_out(&mut reader, to).await;
        }));
    } else {
        if let (Some(w), Some(mut from)) = (ours[0].take(), io.stdin.take()) {
            let mut to = FdStream::new(w).map_err(|e| err(&cid, "stdin", e))?;
            tasks.0.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                // dropping `to` closes the pipe: the process reads EOF
            }));
        }
        for (i, out) in [(1, io.stdout.take()), (2, io.stderr.take())] {
            if let (Some(r), Some(to)) = (ours[i].take(), out) {
                let mut from = FdStream::new(r).map_err(|e| err(&cid, "output", e))?;
                outputs.push(tokio::spawn(async move {
                    copy_out(&mut from, Some(to)).await;
                }));
            }
        }
    }
    let code = match wait_answer(&mut conn, req_id).await {
        Ok(Body::Exec(r)) => r.exit_code,
        Ok(b) => {
            return Err(RuntimeError(format!(
                "container {cid}: exec: unexpected answer {b:?}"
            )));
        }
        Err(e) => return Err(RuntimeError(format!("container {cid}: {e}"))),
    };
    let drained = tokio::time::timeout(DRAIN, async {
        for o in &mut outputs {
            let _ = o.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::debug!(container = %cid, "exec: output still open after the process exited; not waiting for it");
        for o in &outputs {
            o.abort();
        }
    }
    drop(tasks);
    Ok(code)
}

/// Copies the process's output to the client's stream (or nowhere), then sends EOF.
pub(super) async fn copy_out<R: tokio::io::AsyncRead + Unpin>(
    from: &mut R,
    mut to: Option<StreamOut>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(w) = to.as_mut()
            && w.write_all(&buf[..n]).await.is_err()
        {
            to = None;
        }
    }
    if let Some(mut w) = to {
        let _ = w.shutdown().await;
    }
}

/// A descriptor the holder sends back (a terminal's master, a container's stdin) with its
/// one-byte tag; None when the holder closed the socket without one (the request failed:
/// its answer says why, or there is nothing to send).
pub(super) fn recv_fd(sock: &OwnedFd) -> std::io::Result<Option<(u8, OwnedFd)>> {
    let tv = nix::sys::time::TimeVal::new(MASTER_WAIT.as_secs() as i64, 0);
    nix::sys::socket::setsockopt(sock, nix::sys::socket::sockopt::ReceiveTimeout, &tv)?;
    let mut fds = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match fdpass::recv_with_fds(sock, &mut b, &mut fds) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(n) => {
                let tag = if n == 1 { b[0] } else { 0 };
                return Ok(fds.into_iter().next().map(|fd| (tag, fd)));
            }
        }
    }
}

/// Reads the holder's answer to request `id`: its body, or why the request failed.
pub(super) async fn wait_answer(
    conn: &mut tokio::net::UnixStream,
    id: u64,
) -> Result<Body, String> {
    let mut inbox = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(r) = proto::decode::<Response>(&mut inbox).map_err(|e| e.to_string())? {
            match r {
                Response::Ok { id: rid, body } if rid == id => return Ok(body),
                Response::Err { id: rid, error } if rid == id || rid == 0 => {
                    return Err(error.message);
                }
                _ => {}
            }
        }
        let n = conn
            .read(&mut buf)
            .await
            .map_err(|e| format!("holder connection: {e}"))?;
        if n == 0 {
            return Err("the pod's holder closed the connection before the session ended".into());
        }
        inbox.extend_from_slice(&buf[..n]);
    }
}
