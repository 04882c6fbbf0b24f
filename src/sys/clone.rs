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
    clone3(libc::CLONE_PARENT as u64, None)
}

/// The kernel's `struct clone_args` (include/uapi/linux/sched.h, its size as of 5.7);
/// the libc crate has it for some targets only.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (5.7): the child is born in the cgroup2 directory `cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) with fork semantics (no new stack; the child signals SIGCHLD when it ends,
/// or as the caller does with `CLONE_PARENT`) and `flags`, born in the cgroup2 directory `cgroup` when given. Without a cgroup, a
/// kernel that has no clone3 (before 5.3) gets clone(2). The caller must be
/// single-threaded: the child runs on a copy of its memory without the C library's fork
/// handlers.
///
/// Returns 0 in the child, the child's pid (in the caller's pid namespace) in the caller.
pub fn clone3(flags: u64, cgroup: Option<RawFd>) -> nix::Result<i32> {
    let args = CloneArgs {
        flags: flags | cgroup.map_or(0, |_| CLONE_INTO_CGROUP),
        // With CLONE_PARENT the child takes the caller's own exit signal; clone3 wants 0.
        exit_signal: if flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        cgroup: cgroup.map_or(0, |fd| fd as u64),
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM and without a stack duplicates the address space
    // like fork; `args` is a valid clone_args of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r >= 0 {
        return Ok(r as i32);
    }
    let e = nix::errno::Errno::last();
    if e != nix::errno::Errno::ENOSYS || cgroup.is_some() {
        return Err(e);
    }
    // SAFETY: as above, through the older system call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD as u64) as libc::c_ulong,
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
