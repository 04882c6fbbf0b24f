//! The holder zygote: one `berth-holder zygote` process per daemon that forks every
//! pod's holder, so that holders share the pages each exec would otherwise make private to
//! it.
//!
//! An exec of a position-independent binary makes the loader write the relocated
//! pointers of its read-only data (`.data.rel.ro`, the GOT) into pages of its own, and
//! start-up (the C library, the allocator, the log filter) dirties more. Holders forked
//! from one zygote share those pages, and the zygote's heap and libc data, copy-on-write,
//! for as long as they live.
//!
//! ```text
//! daemon --(SOCK_SEQPACKET: holder arguments + ready pipe)--> berth-holder zygote
//!                                                               | fork
//!                                                               '-> holder start (cli::main):
//!                                                                   join the pod cgroup,
//!                                                                   clone the holder, exit
//! ```
//!
//! The zygote is started on the first holder start and lives until the daemon closes
//! its end of the socket (or dies): it reads EOF and exits. Holders never depend on it
//! once forked. A zygote that died is started again on the next holder start. Each
//! holder's command line is set to the one an exec'd `berth-holder` would have had, so
//! operators (and the daemon's recovery) find a pod's holder by it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use super::fdpass::recv_with_fds;
use super::launch::{INVALID_PREFIX, MAX_REQUEST, SOCKET_FD, ZYGOTE_ARG, decode};

/// One request as the zygote reads it: the arguments and the ready pipe. `None` at EOF.
fn recv(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<(Vec<OsString>, OwnedFd)>> {
    let mut fds = Vec::new();
    let n = loop {
        match recv_with_fds(&sock, buf, &mut fds) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let (Some(ready), true) = (fds.pop(), fds.is_empty()) else {
        return Err(io::Error::other(
            "a holder start request without exactly one ready pipe",
        ));
    };
    Ok(Some((decode(&buf[..n]), ready)))
}

/// Runs `berth-holder zygote`: serves holder starts on fd 3 until EOF; returns the
/// process's exit code.
pub fn main() -> i32 {
    // SAFETY: fd 3 was put there for this process by the daemon (`Zygote::launch`).
    let sock = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
    let is_socket =
        nix::sys::stat::fstat(&sock).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
    if !is_socket {
        std::mem::forget(sock);
        tracing::error!("berth-holder zygote is started by berth cri, with its socket on fd 3");
        return 2;
    }
    // Read once: its children inherit the same argument area.
    let area = ArgArea::of_self();
    // Its own command line without the room it keeps for its holders'.
    if let Ok(a) = &area {
        a.write(std::iter::once(OsStr::new(ZYGOTE_ARG)));
    }
    // Nothing else the spawner left open is the zygote's.
    // SAFETY: no fd above the socket is in use in this process.
    unsafe {
        crate::sys::fds::close_range(SOCKET_FD as u32 + 1, u32::MAX);
    }
    let mut buf = vec![0u8; MAX_REQUEST];
    // What start-up allocated, freed and dirtied goes back before any holder shares it.
    super::release_memory();
    loop {
        let (args, ready) = match recv(sock.as_fd(), &mut buf) {
            Ok(Some(req)) => req,
            Ok(None) => return 0,
            Err(e) => {
                tracing::error!(error = %e, "holder zygote: a bad request, skipped");
                continue;
            }
        };
        match crate::sys::clone::fork() {
            Ok(0) => crate::sys::clone::exit_now(holder_start(&area, args, ready)),
            Ok(pid) => {
                drop(ready);
                // The start exits as soon as it has cloned the holder.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            }
            Err(e) => {
                let _ = nix::unistd::write(&ready, format!("error: fork: {e}\n").as_bytes());
            }
        }
    }
}

/// In the zygote's child: becomes `berth-holder <args> --ready-fd N`.
fn holder_start(area: &io::Result<ArgArea>, mut args: Vec<OsString>, ready: OwnedFd) -> i32 {
    use clap::Parser;
    // cli::main takes the pipe over by its number, as an exec'd holder would.
    let fd = std::os::fd::IntoRawFd::into_raw_fd(ready);
    let fail = |msg: String| {
        // SAFETY: the pipe stays open in this process until cli::main takes it.
        let pipe = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = nix::unistd::write(pipe, msg.as_bytes());
        1
    };
    args.push("--ready-fd".into());
    args.push(fd.to_string().into());
    match area {
        Ok(a) => a.write(args.iter().map(OsString::as_os_str)),
        Err(e) => return fail(format!("error: set the holder's command line: {e}\n")),
    }
    match super::cli::HolderCli::try_parse_from(
        std::iter::once(OsString::from("berth-holder")).chain(args),
    ) {
        // The zygote waits for this process, which must exit once the holder is cloned.
        Ok(cli) if cli.args.foreground => fail(format!(
            "{}error: a holder started by the zygote cannot stay in the foreground\n",
            INVALID_PREFIX
        )),
        Ok(cli) => super::cli::main(cli.args),
        Err(e) => fail(format!("{}error: {e}\n", INVALID_PREFIX)),
    }
}

/// The process's argument strings, `[arg_start, arg_end)` of /proc/self/stat, where
/// `/proc/<pid>/cmdline` (what ps shows) is read from. A holder's command line is
/// rewritten there in place: pointing the kernel elsewhere (PR_SET_MM) takes
/// CAP_SYS_RESOURCE, which a node's runtime may not have.
struct ArgArea {
    start: usize,
    len: usize,
}

impl ArgArea {
    fn of_self() -> io::Result<ArgArea> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        // Fields 48 and 49 counted from 1, the 2nd being "(comm)".
        let field = |n: usize| -> io::Result<usize> {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(n - 3))
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::other("no arg_start/arg_end in /proc/self/stat"))
        };
        let (start, end) = (field(48)?, field(49)?);
        if start == 0 || end <= start {
            return Err(io::Error::other("the process has no argument area"));
        }
        Ok(ArgArea {
            start,
            len: end - start,
        })
    }

    /// Makes the strings after argv[0] `args`, NUL-separated, in the room the zygote's own
    /// arguments left ([`CMDLINE_ROOM`]); what does not fit is left off at an argument's
    /// end.
    fn write<'a>(&self, args: impl Iterator<Item = &'a OsStr>) {
        // SAFETY: the area is this process's argument strings, written by the kernel at
        // exec (inherited through fork) and owned by nothing in Rust: std only keeps
        // pointers to them, and every byte written keeps each one NUL-terminated.
        let area = unsafe { std::slice::from_raw_parts_mut(self.start as *mut u8, self.len) };
        let argv0 = area
            .iter()
            .position(|b| *b == 0)
            .map_or(area.len(), |i| i + 1);
        let room = &mut area[argv0..];
        let mut at = 0;
        for a in args {
            let a = a.as_bytes();
            if at + a.len() + 1 > room.len() {
                break;
            }
            room[at..at + a.len()].copy_from_slice(a);
            room[at + a.len()] = 0;
            at += a.len() + 1;
        }
        room[at..].fill(0);
    }
}
