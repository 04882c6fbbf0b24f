//! The tcpSocket probe (upstream's pkg/probe/tcp): a connection opened within the
//! timeout is success; the socket is closed at once.

use std::os::fd::AsFd;
use std::time::Duration;

use tokio::net::TcpStream;

use super::probe::Probed;

/// Connects to `addr` (`host:port`) within `timeout`.
pub(crate) async fn probe(addr: &str, timeout: Duration) -> Probed {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Probed::failure(format!("dial tcp {addr}: i/o timeout")),
        Ok(Err(e)) => Probed::failure(format!("dial tcp {addr}: connect: {}", io_message(&e))),
        Ok(Ok(stream)) => {
            // A 1 s linger, as upstream's probe dialer sets, so that frequent probes do
            // not leave sockets in TIME_WAIT.
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 1,
            };
            if let Err(e) = nix::sys::socket::setsockopt(
                &stream.as_fd(),
                nix::sys::socket::sockopt::Linger,
                &linger,
            ) {
                tracing::debug!(addr, error = %e, "tcp probe: SO_LINGER not set");
            }
            drop(stream);
            Probed::success(String::new())
        }
    }
}

/// An I/O error as Go prints it: the lower-case errno text ("connection refused").
pub(crate) fn io_message(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let desc = nix::errno::Errno::from_raw(n).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}
