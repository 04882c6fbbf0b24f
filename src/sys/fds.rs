//! The file descriptors a process keeps when it becomes another program or a long-lived
//! process of its own: what its starter left open is not its to hold.

/// Marks every fd from 3 up close-on-exec: only stdio crosses the coming exec (a
/// container's process must not inherit the runtime's sockets and files).
pub fn cloexec_above_stdio() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on this process's fds.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// Closes every fd from `first` to `last` (inclusive).
///
/// # Safety
/// No fd in the range may be in use by anything in the process (an `OwnedFd`, a `File`,
/// a library's descriptor): it would then name another file, or none.
pub unsafe fn close_range(first: u32, last: u32) {
    // SAFETY: the caller guarantees nothing in the range is in use.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, last, 0u32);
    }
}
