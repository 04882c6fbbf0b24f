//! The holder zygote: one `berth holder-zygote` process per daemon that forks every
//! pod's holder, so that holders share the pages each exec of berth would otherwise make
//! private to it.
//!
//! An exec of a position-independent binary makes the loader write the relocated
//! pointers of its read-only data (`.data.rel.ro`, the GOT) into pages of its own; for
//! berth that is about 530 KiB, the largest part of an idle holder's private memory.
//! Holders forked from one zygote share those pages, and the zygote's heap and libc data,
//! copy-on-write, for as long as they live.
//!
//! ```text
//! daemon --(SOCK_SEQPACKET: holder arguments + ready pipe)--> berth holder-zygote
//!                                                               | fork
//!                                                               '-> holder start (cli::main):
//!                                                                   join the pod cgroup,
//!                                                                   clone the holder, exit
//! ```
//!
//! The zygote is started on the first holder start and lives until the daemon closes
//! its end of the socket (or dies): it reads EOF and exits. Holders never depend on it
//! once forked. A zygote that died is started again on the next holder start. Each
//! holder's command line is set to the one `berth holder` would have had, so operators
//! (and the daemon's recovery) find a pod's holder by it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::fdpass::{recv_with_fds, send_with_fds};

/// The largest holder start request: its arguments, NUL-separated.
pub const MAX_REQUEST: usize = 16 * 1024;

/// The bytes a holder's command line may take after argv[0]: the zygote is started with
/// this much room in its own arguments. `--state-dir` and `--pod-id` come first, so the
/// pod a holder serves is always there.
pub const CMDLINE_ROOM: usize = 4096;

/// The fd the zygote finds its socket on.
const SOCKET_FD: RawFd = 3;

/// The glibc tunables the zygote and its holders start with. glibc's cache of freed
/// blocks (tcache: up to seven blocks of each size below 1 KiB) stays allocated as far as
/// `malloc_trim` can tell. A holder allocates most of what it ever will while it creates a
/// container, then idles, so that cache pinned about 120 KiB of private heap in each one.
/// A tunable is read once, at exec; the holders the zygote forks inherit its setting.
const TUNABLES: &str = "glibc.malloc.tcache_count=0";

/// [`TUNABLES`], followed by the daemon's own GLIBC_TUNABLES if it has any (the last
/// setting of a tunable wins, so an operator's choice stands).
fn tunables(inherited: Option<&std::ffi::OsStr>) -> OsString {
    let mut t = OsString::from(TUNABLES);
    if let Some(more) = inherited.filter(|v| !v.is_empty()) {
        t.push(":");
        t.push(more);
    }
    t
}

/// The daemon's handle on its zygote.
#[derive(Debug)]
pub struct Zygote {
    /// The berth binary (default: this process's own executable).
    binary: Option<PathBuf>,
    /// Environment for the zygote on top of the daemon's, which it inherits; its holders
    /// keep both.
    env: Vec<(String, String)>,
    running: Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    sock: OwnedFd,
    child: Child,
}

impl Zygote {
    /// A zygote of `binary` (default: this executable), started when first needed.
    pub fn new(binary: Option<PathBuf>, env: Vec<(String, String)>) -> Self {
        Self {
            binary,
            env,
            running: Mutex::new(None),
        }
    }

    /// The zygote's pid, once it runs.
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(|r| r.child.id())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the zygote to start a holder with `args` (those of `berth holder` after
    /// the subcommand, without `--ready-fd`), which reports on `ready`. A zygote that
    /// has gone is started again, once.
    pub fn start_holder(&self, args: &[OsString], ready: BorrowedFd<'_>) -> io::Result<()> {
        let msg = encode(args)?;
        let fds = [ready.as_raw_fd()];
        let mut running = self.lock();
        let mut r = match running.take() {
            Some(r) => r,
            None => self.launch()?,
        };
        if let Err(e) = send_with_fds(&r.sock, &msg, &fds) {
            tracing::warn!(error = %e, "the holder zygote is gone; starting it again");
            r.end();
            r = self.launch()?;
            if let Err(e) = send_with_fds(&r.sock, &msg, &fds) {
                r.end();
                return Err(e);
            }
        }
        *running = Some(r);
        Ok(())
    }

    fn launch(&self) -> io::Result<Running> {
        let (mine, theirs) = crate::sys::clone::channel().map_err(io::Error::from)?;
        let bin = self
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let mut cmd = Command::new(&bin);
        // The room its holders' command lines are written into (see `ArgArea`).
        cmd.arg("holder-zygote")
            .arg(" ".repeat(CMDLINE_ROOM))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env(
                "GLIBC_TUNABLES",
                tunables(std::env::var_os("GLIBC_TUNABLES").as_deref()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let fd = theirs.as_raw_fd();
        // SAFETY: the closure only calls dup2, which is async-signal-safe; it puts the
        // zygote's end of the socket where the zygote looks for it (without
        // close-on-exec: dup2's copy does not have it).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::dup2(fd, SOCKET_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("start the holder zygote {}: {e}", bin.display()),
            )
        })?;
        tracing::debug!(pid = child.id(), "holder zygote started");
        Ok(Running { sock: mine, child })
    }
}

impl Running {
    /// Ends a zygote that no longer takes requests, and reaps it.
    fn end(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if let Some(mut r) = self.lock().take() {
            // EOF tells it to go.
            drop(r.sock);
            let _ = r.child.wait();
        }
    }
}

/// The arguments NUL-separated, each checked to fit.
fn encode(args: &[OsString]) -> io::Result<Vec<u8>> {
    let mut msg = Vec::new();
    for a in args {
        if a.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("holder argument {a:?} contains a NUL byte"),
            ));
        }
        msg.extend_from_slice(a.as_bytes());
        msg.push(0);
    }
    if msg.len() > MAX_REQUEST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the holder's arguments take {} bytes, over the {MAX_REQUEST} a start takes",
                msg.len()
            ),
        ));
    }
    Ok(msg)
}

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
    let body = &buf[..n];
    let args = match body.strip_suffix(b"\0") {
        None if body.is_empty() => Vec::new(),
        rest => rest
            .unwrap_or(body)
            .split(|b| *b == 0)
            .map(|a| OsStr::from_bytes(a).to_os_string())
            .collect(),
    };
    Ok(Some((args, ready)))
}

/// Runs `berth holder-zygote`: serves holder starts on fd 3 until EOF; returns the
/// process's exit code.
pub fn main() -> i32 {
    // SAFETY: fd 3 was put there for this process by the daemon (`Zygote::launch`).
    let sock = unsafe { OwnedFd::from_raw_fd(SOCKET_FD) };
    let is_socket =
        nix::sys::stat::fstat(&sock).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
    if !is_socket {
        std::mem::forget(sock);
        tracing::error!("berth holder-zygote is started by berth cri, with its socket on fd 3");
        return 2;
    }
    // Read once: its children inherit the same argument area.
    let area = ArgArea::of_self();
    // Its own command line without the room it keeps for its holders'.
    if let Ok(a) = &area {
        a.write(std::iter::once(OsStr::new("holder-zygote")));
    }
    // Nothing else the spawner left open is the zygote's.
    // SAFETY: close_range only closes fds of this process, none in use beyond the socket.
    unsafe {
        libc::syscall(libc::SYS_close_range, SOCKET_FD as u32 + 1, u32::MAX, 0u32);
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

/// In the zygote's child: becomes `berth holder <args> --ready-fd N`.
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
        Ok(a) => a.write(
            std::iter::once(OsStr::new("holder")).chain(args.iter().map(OsString::as_os_str)),
        ),
        Err(e) => return fail(format!("error: set the holder's command line: {e}\n")),
    }
    match super::cli::HolderCli::try_parse_from(
        std::iter::once(OsString::from("holder")).chain(args),
    ) {
        // The zygote waits for this process, which must exit once the holder is cloned.
        Ok(cli) if cli.args.foreground => fail(format!(
            "{}error: a holder started by the zygote cannot stay in the foreground\n",
            super::cli::INVALID_PREFIX
        )),
        Ok(cli) => super::cli::main(cli.args),
        Err(e) => fail(format!("{}error: {e}\n", super::cli::INVALID_PREFIX)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tcache_is_off_unless_the_operator_says_otherwise() {
        assert_eq!(tunables(None), "glibc.malloc.tcache_count=0");
        assert_eq!(tunables(Some("".as_ref())), "glibc.malloc.tcache_count=0");
        assert_eq!(
            tunables(Some(
                "glibc.malloc.tcache_count=7:glibc.malloc.check=3".as_ref()
            )),
            "glibc.malloc.tcache_count=0:glibc.malloc.tcache_count=7:glibc.malloc.check=3"
        );
    }
}
