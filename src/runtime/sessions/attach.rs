//! Attach: the client joins the container's main process through the pod's holder, which
//! copies the process's output (as it reads it for the log) into pipes this side reads, and
//! hands over the container's stdin.
//!
//! Ends, as containerd's attach does: when the container exits (the holder answers), when
//! the client leaves (the session's future is dropped, which closes the holder connection:
//! the holder detaches it), or, for a container without stdin_once, when the client's stdin
//! ends (a detach; with stdin_once the container's stdin closes instead and output goes on
//! until the container exits). A container with a terminal has one output (the terminal),
//! and kubectl's resizes go to its master.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;

use super::FdStream;
use super::exec::{Target, Tasks, copy_out, recv_fd, wait_answer};
use crate::runtime::holder::proto::Body;
use crate::runtime::holder::{AttachStart, Client};
use crate::runtime::streaming::{RuntimeError, SessionIo};
use crate::sys::tty;

fn err(container: &str, what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError(format!("container {container}: attach: {what}: {e}"))
}

pub(super) async fn run(t: Target, tty: bool, mut io: SessionIo) -> Result<(), RuntimeError> {
    let cid = t.container_id.clone();
    let start = AttachStart {
        id: cid.clone(),
        stdin: io.stdin.is_some(),
        stdout: io.stdout.is_some(),
        stderr: io.stderr.is_some(),
    };
    let mut theirs: Vec<OwnedFd> = Vec::new();
    let mut reply = None;
    if start.stdin {
        let (a, b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| err(&cid, "socketpair", e))?;
        reply = Some(a);
        theirs.push(b);
    }
    let mut ours: [Option<OwnedFd>; 2] = [None, None];
    for (i, on) in [(0, start.stdout), (1, start.stderr)] {
        if on {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| err(&cid, "pipe", e))?;
            ours[i] = Some(r);
            theirs.push(w);
        }
    }
    let blocking_cid = cid.clone();
    let (stream, req_id, stdin) = tokio::task::spawn_blocking(move || {
        let cid = blocking_cid;
        let client =
            Client::connect(&t.state_dir, &t.pod_id).map_err(|e| err(&cid, "holder", e))?;
        let raw: Vec<RawFd> = theirs.iter().map(AsRawFd::as_raw_fd).collect();
        let (stream, id) = client
            .start_attach(start, &raw)
            .map_err(|e| err(&cid, "holder", e))?;
        drop(theirs);
        let stdin = match reply {
            Some(sock) => recv_fd(&sock).map_err(|e| err(&cid, "receive stdin", e))?,
            None => None,
        };
        Ok::<_, RuntimeError>((stream, id, stdin))
    })
    .await
    .map_err(|e| err(&cid, "holder", e))??;
    stream
        .set_nonblocking(true)
        .map_err(|e| err(&cid, "holder", e))?;
    let mut conn = tokio::net::UnixStream::from_std(stream).map_err(|e| err(&cid, "holder", e))?;
    let mut tasks = Tasks::default();
    let (detach_tx, detach_rx) = tokio::sync::oneshot::channel::<()>();
    if let Some(mut from) = io.stdin.take() {
        match stdin {
            Some((tag, fd)) => {
                let once = tag == b'o';
                if tag == b't'
                    && tty
                    && let Some(mut rx) = io.resize.take()
                {
                    let master = fd.try_clone().map_err(|e| err(&cid, "dup", e))?;
                    tasks.0.push(tokio::spawn(async move {
                        while let Some(s) = rx.recv().await {
                            if let Err(e) = tty::set_size(&master, s.height, s.width) {
                                tracing::debug!(error = %e, "attach: resize");
                            }
                        }
                    }));
                }
                let mut to = FdStream::new(fd).map_err(|e| err(&cid, "stdin", e))?;
                tasks.0.push(tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                    drop(to);
                    if !once {
                        let _ = detach_tx.send(());
                    }
                }));
            }
            None => {
                // The container has no stdin (or another client has it for good).
                tasks.0.push(tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
                }));
            }
        }
    }
    let mut outputs = Tasks::default();
    for (i, out) in [(0, io.stdout.take()), (1, io.stderr.take())] {
        if let (Some(r), Some(to)) = (ours[i].take(), out) {
            let mut from = FdStream::new(r).map_err(|e| err(&cid, "output", e))?;
            outputs.0.push(tokio::spawn(async move {
                copy_out(&mut from, Some(to)).await;
            }));
        }
    }
    tokio::select! {
        r = wait_answer(&mut conn, req_id) => match r {
            Ok(Body::Done) => {
                // the container exited: its output pipes are closed, what is in them is the rest
                for o in &mut outputs.0 {
                    let _ = o.await;
                }
            }
            Ok(b) => return Err(err(&cid, "holder", format!("unexpected answer {b:?}"))),
            Err(e) => return Err(RuntimeError(format!("container {cid}: {e}"))),
        },
        Ok(()) = detach_rx => {
            tracing::debug!(container = %cid, "attach: the client's stdin ended: detached");
        }
    }
    drop(tasks);
    Ok(())
}
