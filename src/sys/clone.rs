//! Kernel seams for making container processes: fork, clone into the caller's parent,
//! setns, and a message socket between the runtime and the child.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{AddressFamily, MsgFlags, SockFlag, SockType, recv, send, socketpair};

/// A connected pair of SOCK_SEQPACKET sockets (close-on-exec): one message per send.
pub fn channel() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends one message.
pub fn send_msg(fd: RawFd, msg: &[u8]) -> nix::Result<()> {
    send(fd, msg, MsgFlags::empty()).map(|_| ())
}

/// Receives one message; empty when the other side closed.
pub fn recv_msg(fd: RawFd) -> nix::Result<Vec<u8>> {
    let mut buf = vec![0u8; 8192];
    loop {
        match recv(fd, &mut buf, MsgFlags::empty()) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// fork(2) through libc, so that the C library's fork handlers run (malloc stays usable
/// in the child of a multi-threaded parent).
///
/// Returns 0 in the child, the child's pid in the parent.
pub fn fork() -> nix::Result<i32> {
    // SAFETY: fork has no memory-safety preconditions; the child only runs the
    // container setup code of this crate and then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(pid)
}

/// clone(2) with CLONE_PARENT: the new process is a child of the caller's parent, so the
/// runtime can wait for a container's init even though an intermediate made it (the
/// intermediate is what enters a new pid namespace). Fork semantics (no new stack): the
/// caller must be single-threaded.
///
/// Returns 0 in the child, the child's pid (in the caller's pid namespace) in the caller.
pub fn clone_parent() -> nix::Result<i32> {
    // SAFETY: a raw clone without CLONE_VM and with a NULL stack duplicates the address
    // space like fork; the caller is the single-threaded intermediate process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(r as i32)
}

/// Exits the calling process at once, without running destructors or atexit handlers
/// (which belong to the parent whose memory a forked child shares a copy of).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Joins the namespace at `path`.
pub fn join_ns(path: &std::path::Path, flag: nix::sched::CloneFlags) -> nix::Result<()> {
    let f = std::fs::File::open(path)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)))?;
    nix::sched::setns(f, flag)
}

/// Wraps a raw fd the caller owns.
///
/// # Safety
/// `fd` must be open and owned by nobody else.
pub unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The raw fd of an owned one.
pub fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}
