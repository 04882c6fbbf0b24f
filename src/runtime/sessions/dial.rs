//! Connecting to a port on a pod's loopback from inside its network namespace.
//!
//! `setns(2)` moves only the calling thread, so the socket is made on a short-lived thread
//! that enters the namespace, connects and ends; the connected socket keeps the namespace
//! it was made in and is handed to tokio. The daemon's own threads never change namespace.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one connect may take (loopback answers at once or refuses).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on the loopback of the network namespace at `netns` (None: the
/// host's, for a host-network pod): 127.0.0.1 first, then [::1] when IPv4 is refused or
/// unavailable, as containerd dials "localhost".
pub async fn dial_loopback(netns: Option<PathBuf>, port: u16) -> io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-pf-dial".into())
        .spawn(move || {
            let _ = tx.send(connect_in(netns.as_deref(), port));
        })?;
    let sock = rx
        .await
        .map_err(|_| io::Error::other("port-forward dial thread died"))??;
    sock.set_nonblocking(true)?;
    let _ = sock.set_nodelay(true);
    tokio::net::TcpStream::from_std(sock)
}

fn connect_in(netns: Option<&Path>, port: u16) -> io::Result<TcpStream> {
    if let Some(path) = netns {
        let f = std::fs::File::open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("setns {}: {e}", path.display())))?;
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            // The IPv4 error is the one reported: it is what kubectl users expect to read.
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e4)
        }
    }
}
