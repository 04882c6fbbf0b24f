//! Descriptors across the holder's socket (SCM_RIGHTS): the daemon sends an interactive
//! exec's stdio with its request; the holder sends a terminal's master back.
//!
//! On a stream socket the descriptors travel with the first byte of the `sendmsg` that
//! carried them, so a receiver that reads frames in order gets them no later than the
//! frame that names them.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// The most descriptors one message carries (stdin, stdout, stderr, with room to spare).
pub const MAX_FDS: usize = 4;

/// Sends `data` with `fds` attached; returns how many bytes went (the descriptors went
/// with the first one).
pub fn send_with_fds(sock: &impl AsFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(
            sock.as_fd().as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Reads into `buf`, appending any descriptors that came with the bytes to `fds`
/// (close-on-exec). Ok(0) is EOF. Blocks as the socket does.
pub fn recv_with_fds(
    sock: &impl AsFd,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let buf_len = buf.len();
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let (n, cut) = (msg.bytes, msg.flags.contains(MsgFlags::MSG_TRUNC));
    // Taken into OwnedFds before anything can fail, so none leaks.
    let mut truncated = false;
    match msg.cmsgs() {
        Ok(it) => {
            for c in it {
                if let ControlMessageOwned::ScmRights(got) = c {
                    // SAFETY: the kernel just installed these descriptors in this process
                    // for this message; nothing else owns them.
                    fds.extend(
                        got.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        Err(_) => truncated = true,
    }
    if truncated {
        return Err(io::Error::other(format!(
            "more than {MAX_FDS} descriptors in one message (the rest were closed)"
        )));
    }
    // Only a message socket cuts a message that does not fit.
    if cut {
        return Err(io::Error::other(format!(
            "a message longer than {} bytes (the rest was dropped)",
            buf_len
        )));
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn descriptors_arrive_with_the_first_byte_of_their_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let (pr, pw) = nix::unistd::pipe().unwrap();
        assert_eq!(send_with_fds(&a, b"frame", &[pw.as_raw_fd()]).unwrap(), 5);
        drop(pw);
        (&a).write_all(b"-more").unwrap();
        let mut fds = Vec::new();
        let mut buf = [0u8; 64];
        let n = recv_with_fds(&b, &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"frame");
        assert_eq!(fds.len(), 1);
        // the received end is the same pipe: bytes written on it reach the read end
        std::fs::File::from(fds.pop().unwrap())
            .write_all(b"x")
            .unwrap();
        let mut got = [0u8; 1];
        std::fs::File::from(pr).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        let n = recv_with_fds(&b, &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"-more");
        assert!(fds.is_empty());
    }

    #[test]
    fn a_message_cut_short_is_an_error_and_its_descriptors_are_kept() {
        let (a, b) = crate::sys::clone::channel().unwrap();
        let (_pr, pw) = nix::unistd::pipe().unwrap();
        send_with_fds(&a, b"0123456789", &[pw.as_raw_fd()]).unwrap();
        let mut fds = Vec::new();
        let mut buf = [0u8; 4];
        let e = recv_with_fds(&b, &mut buf, &mut fds).unwrap_err();
        assert!(e.to_string().contains("longer than 4 bytes"), "{e}");
        // taken into the caller's hands, to be closed when it drops them
        assert_eq!(fds.len(), 1);
    }
}
