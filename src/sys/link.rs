//! The link-flags seam: SIOCGIFFLAGS and SIOCSIFFLAGS on an interface of the caller's
//! network namespace, with the Linux implementation and the recording fake. (Links are
//! otherwise made and changed through netlink, in net/ and the CNI plugins.)

use std::io;
use std::os::fd::AsRawFd;

#[cfg(test)]
use super::record::{Call, Recorder};

/// An interface's flags (IFF_UP, IFF_LOOPBACK, ...).
pub trait LinkFlags: Send + Sync {
    fn flags(&self, name: &str) -> io::Result<i32>;
    fn set_flags(&self, name: &str, flags: i32) -> io::Result<()>;
}

/// The kernel, through a datagram socket made in the calling thread's network namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linux;

/// A socket of the caller's network namespace and a request naming `name`.
fn request(name: &str) -> io::Result<(std::os::fd::OwnedFd, libc::ifreq)> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value for it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok((sock, req))
}

impl LinkFlags for Linux {
    fn flags(&self, name: &str) -> io::Result<i32> {
        let (sock, mut req) = request(name)?;
        // SAFETY: SIOCGIFFLAGS reads the flags of the named interface into `req`, a valid
        // ifreq that outlives the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the flags member of the union is the one SIOCGIFFLAGS filled in.
        Ok(unsafe { req.ifr_ifru.ifru_flags } as u16 as i32)
    }

    fn set_flags(&self, name: &str, flags: i32) -> io::Result<()> {
        let (sock, mut req) = request(name)?;
        // the kernel's field is a short
        req.ifr_ifru.ifru_flags = flags as u16 as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq naming the interface.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
impl LinkFlags for Recorder {
    fn flags(&self, _name: &str) -> io::Result<i32> {
        Ok(self.answers.link_flags)
    }

    fn set_flags(&self, name: &str, flags: i32) -> io::Result<()> {
        self.record(Call::SetLinkFlags {
            name: name.into(),
            flags,
        })
        .map_err(io::Error::from)
    }
}
