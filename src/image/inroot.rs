//! Path handling confined to a directory: names cleaned of `.`/`..`, and opens resolved
//! with `openat2(RESOLVE_IN_ROOT)` so that nothing, symlinks included, leads outside it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, fstatat};

use super::error::{Error, Result};

/// `path` as clean components: leading `/` and `.` dropped; `..` refused.
pub fn clean_components(raw: &[u8]) -> std::result::Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("path contains `..`"),
            c => {
                if c.contains(&0) {
                    return Err("path contains a NUL byte");
                }
                out.push(String::from_utf8_lossy(c).into_owned());
                if std::str::from_utf8(c).is_err() {
                    return Err("path is not valid UTF-8");
                }
            }
        }
    }
    Ok(out)
}

pub fn open_dir_path(dest: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        dest,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open snapshot dir", dest)(e.into()))
}

/// `openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
pub fn open_in_root(root: &OwnedFd, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, if path.is_empty() { "." } else { path }, how)
}

pub fn reopen(fd: &OwnedFd, flags: OFlag) -> nix::Result<OwnedFd> {
    openat(fd, ".", flags | OFlag::O_CLOEXEC, Mode::empty())
}

pub fn stat_at(dir: &OwnedFd, name: &str) -> Option<FileStat> {
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()
}

pub fn set_xattr(fd: &OwnedFd, name: &str, value: &[u8]) -> std::io::Result<()> {
    let cname =
        CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: fd is an open descriptor we own for the whole call; cname is a valid
    // NUL-terminated string and value a valid slice of value.len() bytes.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_dotdot() {
        assert_eq!(clean_components(b"/a/./b/").unwrap(), vec!["a", "b"]);
        assert!(clean_components(b"a/../../etc").is_err());
        assert!(clean_components(b"..").is_err());
        assert!(clean_components(b"./").unwrap().is_empty());
    }
}
