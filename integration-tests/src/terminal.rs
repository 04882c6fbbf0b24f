//! A client on a pseudo-terminal of the test's making, as a user's shell runs
//! `kubectl exec -it`: the terminal is the command's stdio and controlling tty, the test
//! sets its size (the kernel then signals SIGWINCH to the command), types on it, and waits
//! for what it shows.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A running command on its own terminal; killed and reaped when dropped.
#[derive(Debug)]
pub struct Terminal {
    master: OwnedFd,
    child: Child,
    shown: Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Terminal {
    /// Starts `cmd` on a new terminal of `rows` x `cols`.
    pub fn spawn(cmd: &mut Command, rows: u16, cols: u16) -> std::io::Result<Self> {
        let p = nix::pty::openpty(None, None)?;
        set_size(&p.master, rows, cols)?;
        let slave = p.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: in the forked child before exec; setsid and ioctl are async-signal-safe
        // and fd 0 is the terminal.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let mut reader = std::fs::File::from(p.master.try_clone()?);
        let (tx, shown) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            master: p.master,
            child,
            shown,
            seen: Vec::new(),
        })
    }

    /// Resizes the terminal.
    pub fn set_size(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        set_size(&self.master, rows, cols)
    }

    /// Types `bytes` on the terminal.
    pub fn type_in(&self, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::File::from(self.master.try_clone()?).write_all(bytes)
    }

    /// Waits up to `timeout` until the terminal has shown `needle`; false if it has not.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.shown().contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.shown.recv_timeout(left) {
                Ok(b) => self.seen.extend(b),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
            }
        }
        true
    }

    /// Everything the terminal has shown so far.
    pub fn shown(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits for the command to end.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_size(master: &OwnedFd, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the master is open and TIOCSWINSZ only reads `ws`.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
