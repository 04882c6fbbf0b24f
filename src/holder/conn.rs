//! The holder's client connections: accepting them, reading request frames, and queueing
//! answers and events that are written as each socket takes them.

use std::io::Write;
use std::os::unix::net::UnixStream;

use super::container::werr;
use super::proto::{
    Body, Envelope, ErrorCode, FrameError, PROTOCOL_VERSION, Response, WireError, decode, encode,
};
use super::server::Server;

/// A client whose unsent answers grow past this is dropped (it stopped reading).
const MAX_OUTBOX: usize = 64 << 20;

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) stream: UnixStream,
    pub(super) inbox: Vec<u8>,
    pub(super) outbox: Vec<u8>,
    pub(super) subscribed: bool,
    pub(super) closed: bool,
    /// Descriptors received with the frames, oldest first, until a request takes them.
    pub(super) fds: std::collections::VecDeque<std::os::fd::OwnedFd>,
}

/// A client holding more received descriptors than this, unclaimed, is dropped.
const MAX_HELD_FDS: usize = 16;
impl Server {
    pub(super) fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    return;
                }
            };
            // The socket is root-only by its mode; the peer's uid is checked as well.
            let cred =
                nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
            if !cred.is_ok_and(|c| c.uid() == nix::unistd::geteuid().as_raw()) {
                tracing::warn!("refused a client of another user");
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let id = self.next_conn;
            self.next_conn += 1;
            self.conns.insert(
                id,
                Conn {
                    stream,
                    inbox: Vec::new(),
                    outbox: Vec::new(),
                    subscribed: false,
                    closed: false,
                    fds: Default::default(),
                },
            );
        }
    }

    pub(super) fn on_conn(&mut self, id: u64, revents: libc::c_short) {
        if revents & libc::POLLOUT != 0 {
            self.flush_one(id);
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return;
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let mut got = Vec::new();
        loop {
            match super::fdpass::recv_with_fds(&c.stream, &mut self.buf, &mut got) {
                Ok(0) => {
                    c.closed = true;
                    break;
                }
                Ok(n) => c.inbox.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.closed = true;
                    break;
                }
            }
        }
        c.fds.extend(got);
        if c.fds.len() > MAX_HELD_FDS {
            tracing::warn!(
                conn = id,
                "dropped a client that sent descriptors no request took"
            );
            c.closed = true;
            c.fds.clear();
        }
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            let frame = match decode::<serde_json::Value>(&mut c.inbox) {
                Ok(Some(v)) => v,
                Ok(None) => break,
                // the frame was read whole: the stream is still in step
                Err(FrameError::Json(e)) => {
                    let _ = encode(
                        &Response::Err {
                            id: 0,
                            error: werr(ErrorCode::InvalidArgument, format!("bad request: {e}")),
                        },
                        &mut c.outbox,
                    );
                    continue;
                }
                Err(e) => {
                    // a bad length cannot be stepped over: answer and hang up
                    let _ = encode(
                        &Response::Err {
                            id: 0,
                            error: werr(ErrorCode::InvalidArgument, e.to_string()),
                        },
                        &mut c.outbox,
                    );
                    c.inbox.clear();
                    c.closed = true;
                    break;
                }
            };
            let req_id = frame
                .get("id")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0);
            let answer = match serde_json::from_value::<Envelope>(frame) {
                Err(e) => Some(Err(werr(
                    ErrorCode::InvalidArgument,
                    format!("bad request: {e}"),
                ))),
                Ok(env) if env.v != PROTOCOL_VERSION => Some(Err(werr(
                    ErrorCode::InvalidArgument,
                    format!(
                        "protocol version {} is not spoken here (the holder speaks {PROTOCOL_VERSION})",
                        env.v
                    ),
                ))),
                Ok(env) => self.handle(id, env.id, env.req),
            };
            if let Some(a) = answer {
                self.answer(id, req_id, a);
            }
        }
        if self
            .conns
            .get(&id)
            .is_some_and(|c| c.closed && c.outbox.is_empty())
        {
            self.conns.remove(&id);
        }
    }

    pub(super) fn answer(&mut self, conn: u64, req: u64, a: Result<Body, WireError>) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let r = match a {
            Ok(body) => Response::Ok { id: req, body },
            Err(error) => Response::Err { id: req, error },
        };
        if let Err(e) = encode(&r, &mut c.outbox) {
            let _ = encode(
                &Response::Err {
                    id: req,
                    error: werr(ErrorCode::Internal, e.to_string()),
                },
                &mut c.outbox,
            );
        }
    }

    /// Carries out one request; None when the answer comes later.
    pub(super) fn flush(&mut self) {
        let ids: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.outbox.is_empty() || c.closed)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.flush_one(id);
        }
    }

    pub(super) fn flush_one(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        while !c.outbox.is_empty() {
            match c.stream.write(&c.outbox) {
                Ok(0) => break,
                Ok(n) => {
                    c.outbox.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.closed = true;
                    c.outbox.clear();
                }
            }
        }
        if c.outbox.len() > MAX_OUTBOX {
            tracing::warn!(conn = id, "dropped a client that stopped reading");
            c.closed = true;
            c.outbox.clear();
        }
        if c.closed && c.outbox.is_empty() {
            self.conns.remove(&id);
        }
    }
}
