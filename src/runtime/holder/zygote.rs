//! The daemon's handle on its holder zygote (`berth-holder zygote`, see
//! [`crate::holder::launch`]): started on the first holder start, given each pod's holder
//! arguments and ready pipe, started again if it died, told to go (EOF) when the daemon
//! drops the handle.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crate::holder::fdpass::send_with_fds;
use crate::holder::launch::{CMDLINE_ROOM, SOCKET_FD, ZYGOTE_ARG, encode};

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
    /// The `berth-holder` binary.
    binary: PathBuf,
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
    /// A zygote of `binary` (a `berth-holder`), started when first needed.
    pub fn new(binary: PathBuf, env: Vec<(String, String)>) -> Self {
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

    /// Asks the zygote to start a holder with `args` (`berth-holder`'s, without
    /// `--ready-fd`), which reports on `ready`. A zygote that has gone is started again,
    /// once.
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
        let bin = &self.binary;
        let mut cmd = Command::new(bin);
        // The room its holders' command lines are written into (see `ArgArea`).
        cmd.arg(ZYGOTE_ARG)
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
