//! Applies one layer tar into its own snapshot directory, safely.
//!
//! Every name is resolved with `openat2(RESOLVE_IN_ROOT)` against a handle on the
//! snapshot root, so `..`, absolute paths and symlinks (absolute or relative, from this
//! layer or planted earlier in it) all resolve inside the root: an entry can never create,
//! open or link anything outside it. Entries whose names contain `..` are refused outright,
//! as are device nodes unless the caller allows them. Final path components are created
//! with `O_EXCL|O_NOFOLLOW`/`*at` calls on the resolved parent, never through a symlink.
//!
//! Whiteouts become overlayfs whiteouts (a 0/0 character device) and opaque markers the
//! `trusted.overlay.opaque` xattr, so the directory is ready to be an overlay lower dir.
//! A layer cannot set `trusted.overlay.*` itself. The `tar` crate only parses; it never
//! writes here (its `unpack` does not convert whiteouts, keep xattrs or resolve in root).

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fchmod, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};

use super::error::{Error, Result};
use super::inroot::{clean_components, open_dir_path, open_in_root, reopen, set_xattr, stat_at};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// What a layer may contain beyond files, dirs and links.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Create character and block device nodes (a privileged runtime outside a user
    /// namespace may; the default refuses layers that carry them).
    pub allow_devices: bool,
    /// The most bytes an image may unpack to (its layers' uncompressed tar streams
    /// together), so a decompression bomb is refused; `None`: no cap, as in containerd.
    pub max_image_bytes: Option<u64>,
}

/// A hardlink whose target is not in this layer: resolved against the parent
/// snapshots once they are in place (see [`super::lower_links::resolve_lower_links`]).
#[derive(Debug, Clone)]
pub struct LowerLink {
    pub name: Vec<String>,
    pub target: Vec<String>,
}

/// What an unpack found worth knowing afterwards.
#[derive(Debug, Default)]
pub struct Unpacked {
    pub lower_links: Vec<LowerLink>,
    pub entries: u64,
}

/// Unpacks the tar stream `reader` into the existing directory `dest`.
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    layer: &str,
    opts: UnpackOptions,
) -> Result<Unpacked> {
    let root = open_dir_path(dest)?;
    let mut u = Unpacker {
        root,
        layer,
        opts,
        out: Unpacked::default(),
        dir_times: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| u.err("<archive>", "read tar", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.err("<archive>", "read tar entry", e))?;
        u.entry(&mut entry)?;
        u.out.entries += 1;
    }
    u.finish_dir_times();
    Ok(u.out)
}

struct Unpacker<'a> {
    root: OwnedFd,
    layer: &'a str,
    opts: UnpackOptions,
    out: Unpacked,
    dir_times: Vec<(Vec<String>, i64)>,
}

impl Unpacker<'_> {
    fn err(&self, entry: &str, op: &'static str, source: std::io::Error) -> Error {
        Error::Unpack {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            op,
            source,
        }
    }

    fn refuse(&self, entry: &str, reason: impl Into<String>) -> Error {
        Error::UnsafeLayer {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_components(&raw).map_err(|r| self.refuse(&shown, r))?;
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // the root itself: its metadata belongs to the snapshot
        };
        let kind = entry.header().entry_type();
        if name == OPAQUE {
            let dir = self.ensure_dir(parent, &shown)?;
            let dir = reopen(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| self.err(&shown, "open dir", e.into()))?;
            return set_xattr(&dir, "trusted.overlay.opaque", b"y")
                .map_err(|e| self.err(&shown, "mark opaque", e));
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.refuse(&shown, "malformed whiteout"));
            }
            let dir = self.ensure_dir(parent, &shown)?;
            self.clear(&dir, hidden, false, &shown)?;
            return mknodat(&dir, hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| self.err(&shown, "create whiteout", e.into()));
        }
        let h = entry.header();
        let mode = h.mode().map_err(|e| self.err(&shown, "read mode", e))? & 0o7777;
        let uid = h
            .uid()
            .ok()
            .and_then(|u| u32::try_from(u).ok())
            .ok_or_else(|| self.refuse(&shown, "uid out of range"))?;
        let gid = h
            .gid()
            .ok()
            .and_then(|g| u32::try_from(g).ok())
            .ok_or_else(|| self.refuse(&shown, "gid out of range"))?;
        let mtime = h
            .mtime()
            .ok()
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(0);
        let dir = self.ensure_dir(parent, &shown)?;
        let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        match kind {
            tar::EntryType::Directory => {
                let existing = stat_at(&dir, name);
                if !existing.is_some_and(|s| {
                    SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
                }) {
                    self.clear(&dir, name, false, &shown)?;
                    mkdirat(&dir, name.as_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| self.err(&shown, "mkdir", e.into()))?;
                }
                let fd = openat(
                    &dir,
                    name.as_str(),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.err(&shown, "open dir", e.into()))?;
                fchown(&fd, owner.0, owner.1).map_err(|e| self.err(&shown, "chown", e.into()))?;
                fchmod(&fd, Mode::from_bits_truncate(mode))
                    .map_err(|e| self.err(&shown, "chmod", e.into()))?;
                self.xattrs(entry, &fd, &shown)?;
                self.dir_times.push((comps.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.clear(&dir, name, true, &shown)?;
                let fd = openat(
                    &dir,
                    name.as_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| self.err(&shown, "create file", e.into()))?;
                let mut file = File::from(fd);
                std::io::copy(entry, &mut file).map_err(|e| self.err(&shown, "write file", e))?;
                fchown(&file, owner.0, owner.1).map_err(|e| self.err(&shown, "chown", e.into()))?;
                fchmod(&file, Mode::from_bits_truncate(mode))
                    .map_err(|e| self.err(&shown, "chmod", e.into()))?;
                self.xattrs(
                    entry,
                    &file
                        .as_fd()
                        .try_clone_to_owned()
                        .map_err(|e| self.err(&shown, "dup", e))?,
                    &shown,
                )?;
                let t = TimeSpec::new(mtime, 0);
                nix::sys::stat::futimens(&file, &t, &t)
                    .map_err(|e| self.err(&shown, "set times", e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "symlink without a target"))?
                    .into_owned();
                if target.contains(&0) {
                    return Err(self.refuse(&shown, "symlink target contains NUL"));
                }
                self.clear(&dir, name, true, &shown)?;
                // The target is data: whatever it says, it is only ever followed with
                // this directory (or the container's root) as `/`.
                symlinkat(OsStr::from_bytes(&target), &dir, name.as_str())
                    .map_err(|e| self.err(&shown, "symlink", e.into()))?;
                fchownat(
                    &dir,
                    name.as_str(),
                    owner.0,
                    owner.1,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.err(&shown, "lchown", e.into()))?;
                let t = TimeSpec::new(mtime, 0);
                utimensat(&dir, name.as_str(), &t, &t, UtimensatFlags::NoFollowSymlink)
                    .map_err(|e| self.err(&shown, "set times", e.into()))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&shown, "hardlink without a target"))?
                    .into_owned();
                let tcomps = clean_components(&target)
                    .map_err(|r| self.refuse(&shown, format!("hardlink target: {r}")))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.refuse(&shown, "hardlink to the root"));
                };
                self.clear(&dir, name, true, &shown)?;
                let linked = match self.resolve_dir(tparent) {
                    Ok(tdir) => {
                        linkat(&tdir, tname.as_str(), &dir, name.as_str(), AtFlags::empty())
                    }
                    Err(e) => Err(e),
                };
                match linked {
                    Ok(()) => {}
                    Err(Errno::ENOENT) => self.out.lower_links.push(LowerLink {
                        name: comps.clone(),
                        target: tcomps,
                    }),
                    Err(e) => return Err(self.err(&shown, "hardlink", e.into())),
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                if !self.opts.allow_devices {
                    return Err(self.refuse(&shown, "device nodes are not allowed in layers here"));
                }
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let kind = if kind == tar::EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                self.clear(&dir, name, true, &shown)?;
                mknodat(
                    &dir,
                    name.as_str(),
                    kind,
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::makedev(major.into(), minor.into()),
                )
                .map_err(|e| self.err(&shown, "mknod", e.into()))?;
                fchownat(
                    &dir,
                    name.as_str(),
                    owner.0,
                    owner.1,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.err(&shown, "chown", e.into()))?;
            }
            tar::EntryType::Fifo => {
                self.clear(&dir, name, true, &shown)?;
                mknodat(
                    &dir,
                    name.as_str(),
                    SFlag::S_IFIFO,
                    Mode::from_bits_truncate(mode),
                    0,
                )
                .map_err(|e| self.err(&shown, "mkfifo", e.into()))?;
                fchownat(
                    &dir,
                    name.as_str(),
                    owner.0,
                    owner.1,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.err(&shown, "chown", e.into()))?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                return Err(self.refuse(&shown, format!("unsupported tar entry type {other:?}")));
            }
        }
        Ok(())
    }

    /// Opens `comps` (relative to the root, resolved in it) as a directory handle.
    fn resolve_dir(&self, comps: &[String]) -> nix::Result<OwnedFd> {
        let p = if comps.is_empty() {
            ".".to_string()
        } else {
            comps.join("/")
        };
        open_in_root(&self.root, &p, OFlag::O_PATH | OFlag::O_DIRECTORY)
    }

    /// Opens the parent directory, creating missing components (0755, root-owned, as
    /// docker and containerd do for parents a layer does not list).
    fn ensure_dir(&self, comps: &[String], shown: &str) -> Result<OwnedFd> {
        match self.resolve_dir(comps) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(Errno::ENOTDIR) => {
                return Err(self.refuse(shown, "a parent path component is not a directory"));
            }
            Err(e) => return Err(self.err(shown, "open parent", e.into())),
        }
        let mut cur = self
            .resolve_dir(&[])
            .map_err(|e| self.err(shown, "open root", e.into()))?;
        for (i, c) in comps.iter().enumerate() {
            match self.resolve_dir(&comps[..=i]) {
                Ok(fd) => cur = fd,
                Err(Errno::ENOENT) => {
                    match mkdirat(&cur, c.as_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) => {}
                        // Not there when resolved, yet something is: a symlink leading
                        // nowhere inside this layer. Creating its target would mean
                        // writing where the link points, so refuse.
                        Err(Errno::EEXIST) => {
                            return Err(self.refuse(shown, format!("parent component {c:?} is a symlink that leads nowhere inside the layer")));
                        }
                        Err(e) => return Err(self.err(shown, "create parent", e.into())),
                    }
                    cur = self
                        .resolve_dir(&comps[..=i])
                        .map_err(|e| self.err(shown, "open parent", e.into()))?;
                }
                Err(e) => return Err(self.err(shown, "open parent", e.into())),
            }
        }
        Ok(cur)
    }

    /// Removes whatever `name` in `dir` is, so a new entry can take its place (a
    /// directory stays when `keep_dir` is false and the new entry is a directory).
    fn clear(&self, dir: &OwnedFd, name: &str, _replace_dir: bool, shown: &str) -> Result<()> {
        let Some(st) = stat_at(dir, name) else {
            return Ok(());
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir {
            // The parent was resolved inside the root, so its /proc path is inside too;
            // remove_dir_all never follows symlinks.
            let real = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                .map_err(|e| self.err(shown, "resolve parent", e))?;
            std::fs::remove_dir_all(real.join(name))
                .map_err(|e| self.err(shown, "replace directory", e))
        } else {
            nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .map_err(|e| self.err(shown, "replace entry", e.into()))
        }
    }

    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        fd: &OwnedFd,
        shown: &str,
    ) -> Result<()> {
        let Ok(Some(exts)) = entry.pax_extensions() else {
            return Ok(());
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.err(shown, "read pax header", e))?;
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            if name.starts_with("trusted.overlay.") {
                return Err(self.refuse(shown, format!("layer sets overlay xattr {name}")));
            }
            if let Err(e) = set_xattr(fd, &name, ext.value_bytes()) {
                // Filesystems without user/security xattrs: the file is still right.
                tracing::warn!(
                    layer = self.layer,
                    entry = shown,
                    xattr = name,
                    "xattr not set: {e}"
                );
            }
        }
        Ok(())
    }

    fn finish_dir_times(&mut self) {
        for (comps, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            if let Ok(fd) = open_in_root(
                &self.root,
                &comps.join("/"),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
            ) {
                let t = TimeSpec::new(mtime, 0);
                let _ = nix::sys::stat::futimens(&fd, &t, &t);
            }
        }
    }
}
