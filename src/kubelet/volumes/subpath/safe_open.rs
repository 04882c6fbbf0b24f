//! Opening and making paths inside a volume without following a symlink the container
//! may have put there (upstream doSafeOpen, findExistingPrefix, doSafeMakeDir). Every
//! step below the volume's root is an `*at` call on the fd of the step before, so a
//! directory swapped for a symlink between two steps is seen, not followed.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{Mode, SFlag, fchmod, fstat, fstatat, mkdirat};

use super::SubpathError;

/// The components of `path` below `base`, or `None` when `path` is not within `base`
/// (upstream PathWithinBase; both are symlink-free, `..` counts as outside).
pub(super) fn segments(path: &Path, base: &Path) -> Option<Vec<OsString>> {
    let rel = path.strip_prefix(base).ok()?;
    rel.components()
        .map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            _ => None,
        })
        .collect()
}

fn outside(path: &Path, base: &Path) -> SubpathError {
    SubpathError::Outside {
        path: path.to_path_buf(),
        base: base.to_path_buf(),
    }
}

/// An O_PATH fd of `path`, reached from `base` one component at a time without
/// following any symlink (upstream doSafeOpen). `path` and `base` must already be
/// resolved: a symlink met on the way is an error, whatever it points at.
pub fn safe_open(path: &Path, base: &Path) -> Result<OwnedFd, SubpathError> {
    let segs = segments(path, base).ok_or_else(|| outside(path, base))?;
    // The base itself is the one directory trusted; it must not be a symlink either.
    let mut fd = open(
        base,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(SubpathError::sys("cannot open directory", base))?;
    let mut current = base.to_path_buf();
    for seg in segs {
        current.push(&seg);
        // An automounted directory mounts on a stat of "name/" (openat(2) "automount");
        // whether this one is such a directory does not matter, so the answer is unused.
        let mut slash = seg.clone();
        slash.push("/");
        let _ = fstatat(&fd, slash.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
        let child = openat(
            &fd,
            seg.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(SubpathError::sys("cannot open", &current))?;
        let st = fstat(&child).map_err(SubpathError::sys("error running fstat on", &current))?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK {
            return Err(SubpathError::Symlink { path: current });
        }
        fd = child;
    }
    Ok(fd)
}

/// Makes `sub` (relative, without `..`) inside the volume at `base`, each missing
/// directory with `perm` whatever the umask (upstream SafeMakeDir): so that a subPath
/// made for a group-writable volume stays group-writable.
pub fn safe_make_dir(sub: &str, base: &Path, perm: u32) -> Result<(), SubpathError> {
    let real_base = std::fs::canonicalize(base)
        .map_err(SubpathError::io("error resolving symlinks in", base))?;
    let mut path = real_base.clone();
    for c in sub.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(outside(&real_base.join(sub), &real_base));
        }
        path.push(c);
    }
    do_safe_make_dir(&path, &real_base, perm)
}

fn do_safe_make_dir(path: &Path, base: &Path, perm: u32) -> Result<(), SubpathError> {
    if segments(path, base).is_none() {
        return Err(outside(path, base));
    }
    // Already there: a directory is fine (wherever it leads, the safe open that follows
    // decides), anything else cannot be made a directory.
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Ok(());
        }
        return Err(SubpathError::Sys {
            op: "mkdir",
            path: path.to_path_buf(),
            source: nix::Error::ENOTDIR,
        });
    }
    let (existing, to_create) = find_existing_prefix(base, path)?;
    let full_existing = std::fs::canonicalize(&existing)
        .map_err(SubpathError::io("error opening directory", &existing))?;
    if segments(&full_existing, base).is_none() {
        return Err(outside(&full_existing, base));
    }
    let mut parent = safe_open(&full_existing, base)?;
    let mut current = full_existing;
    for dir in to_create {
        current.push(&dir);
        mkdirat(
            &parent,
            dir.as_os_str(),
            Mode::from_bits_truncate(perm & 0o777),
        )
        .map_err(SubpathError::sys("cannot create directory", &current))?;
        // The new directory may have been swapped since: O_NOFOLLOW refuses a symlink,
        // O_DIRECTORY anything else (a fifo would block an O_RDONLY open).
        let child = openat(
            &parent,
            dir.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(SubpathError::sys("cannot open", &current))?;
        // mkdirat's mode went through the umask and cannot carry setgid and sticky.
        fchmod(&child, Mode::from_bits_truncate(perm & 0o7777))
            .map_err(SubpathError::sys("chmod", &current))?;
        parent = child;
    }
    Ok(())
}

/// The longest prefix of `path` below `base` that exists, and the components left to
/// make (upstream findExistingPrefix: it follows symlinks; its caller checks where the
/// prefix leads).
fn find_existing_prefix(
    base: &Path,
    path: &Path,
) -> Result<(PathBuf, Vec<OsString>), SubpathError> {
    let segs = segments(path, base).ok_or_else(|| outside(path, base))?;
    let mut fd = open(base, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(SubpathError::sys("error opening", base))?;
    let mut current = base.to_path_buf();
    for (i, seg) in segs.iter().enumerate() {
        // O_PATH: a fifo put in place of a directory does not block the open.
        match openat(
            &fd,
            OsStr::new(seg),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(child) => fd = child,
            Err(nix::Error::ENOENT) => return Ok((current, segs[i..].to_vec())),
            Err(e) => {
                return Err(SubpathError::Sys {
                    op: "error opening",
                    path: current.join(seg),
                    source: e,
                });
            }
        }
        current.push(seg);
    }
    Ok((current, Vec::new()))
}
