//! The container's terminal: a pty made inside the container, whose master is sent to
//! the caller's console socket (runc's `--console-socket` protocol: one SCM_RIGHTS message
//! carrying the master fd).

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// Connects to the console socket at `path` (done by the runtime, before the fork).
pub fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(std::os::unix::net::UnixStream::connect(path)?.into())
}

/// In the container's init (or exec'd process): makes the pty, sends its master over
/// `socket`, and makes the slave the controlling terminal and stdio. Runs as root,
/// before the user switch; the slave is given to `uid`/`gid`.
pub fn setup(socket: RawFd, uid: u32, gid: u32, size: Option<(u16, u16)>) -> Result<(), String> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| format!("process.terminal: open /dev/ptmx: {e}"))?;
    grantpt(&master).map_err(|e| format!("process.terminal: grantpt: {e}"))?;
    unlockpt(&master).map_err(|e| format!("process.terminal: unlockpt: {e}"))?;
    let name = ptsname_r(&master).map_err(|e| format!("process.terminal: ptsname: {e}"))?;
    let slave: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(&name)
        .map_err(|e| format!("process.terminal: open {name}: {e}"))?
        .into();
    nix::unistd::fchown(&slave, Some(uid.into()), Some(gid.into()))
        .map_err(|e| format!("process.terminal: chown {name}: {e}"))?;
    if let Some((rows, cols)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct from a valid pointer to a local.
        let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if r < 0 {
            return Err(format!(
                "process.consoleSize: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        socket,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("--console-socket: send the pty master: {e}"))?;
    drop(master);
    nix::unistd::setsid().map_err(|e| format!("process.terminal: setsid: {e}"))?;
    // SAFETY: TIOCSCTTY takes an int argument; the fd is a valid open tty.
    let r = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(format!(
            "process.terminal: make it the controlling terminal: {}",
            std::io::Error::last_os_error()
        ));
    }
    nix::unistd::dup2_stdin(slave.as_fd()).map_err(|e| format!("dup2 stdin: {e}"))?;
    nix::unistd::dup2_stdout(slave.as_fd()).map_err(|e| format!("dup2 stdout: {e}"))?;
    nix::unistd::dup2_stderr(slave.as_fd()).map_err(|e| format!("dup2 stderr: {e}"))?;
    Ok(())
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}
