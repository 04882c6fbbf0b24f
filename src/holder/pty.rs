//! A terminal for an interactive exec, made inside the container: the master comes from
//! the container's own devpts instance (its `/dev/ptmx`, reached through
//! `/proc/<init>/root`, which resolves the `pts/ptmx` symlink inside the container's root),
//! so the slave is a `/dev/pts/N` the container can name. The slave is opened from the
//! master (TIOCGPTPEER), never by path.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A terminal pair: the master for the daemon, the slave for the process.
#[derive(Debug)]
pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

/// Opens a new terminal in the devpts of the container whose init is `pid`, sized
/// `rows` x `cols` when given.
pub fn open_in(pid: i32, size: Option<(u16, u16)>) -> io::Result<Pty> {
    let path = CString::new(format!("/proc/{pid}/root/dev/ptmx")).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("open /proc/{pid}/root/dev/ptmx: {e}"),
        ));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a valid pointer.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("unlockpt: {e}")));
    }
    if let Some((rows, cols)) = size {
        crate::sys::tty::set_size(&master, rows, cols)?;
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd or -1.
    let s = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if s < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("open the pty slave: {e}")));
    }
    // SAFETY: s is a descriptor the ioctl just made.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    Ok(Pty { master, slave })
}
