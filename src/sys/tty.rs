//! Terminals: what both a holder (making a container's terminal) and the daemon (resizing
//! it for an Exec or Attach session) do to one.

use std::io;
use std::os::fd::AsRawFd;

/// Sets a terminal's window size (on the master or the slave).
pub fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
