//! Hardlinks whose target lies in a lower layer: each layer is unpacked into its own
//! directory, so such a link is completed by copying the target from the nearest parent
//! snapshot that has it, once the parents are in place.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fchmod};
use nix::unistd::{Gid, Uid, fchown};

use super::error::{Error, Result};
use super::inroot::{open_dir_path, open_in_root};
use super::unpack::LowerLink;

/// Copies the targets of hardlinks that pointed below this layer from the nearest parent
/// snapshot that has them (`parents` top-most first), so the layer dir is complete.
pub fn resolve_lower_links(
    dest: &Path,
    parents: &[PathBuf],
    links: &[LowerLink],
    layer: &str,
) -> Result<()> {
    let root = open_dir_path(dest)?;
    for link in links {
        let shown = link.name.join("/");
        let target = link.target.join("/");
        let src = parents.iter().find_map(|p| {
            let proot = open_dir_path(p).ok()?;
            open_in_root(&proot, &target, OFlag::O_RDONLY | OFlag::O_NOFOLLOW).ok()
        });
        let Some(src) = src else {
            return Err(Error::UnsafeLayer {
                layer: layer.to_string(),
                entry: shown,
                reason: format!("hardlink target {target:?} is in no layer"),
            });
        };
        let io = |op, e: std::io::Error| Error::Unpack {
            layer: layer.to_string(),
            entry: shown.clone(),
            op,
            source: e,
        };
        let st = nix::sys::stat::fstat(&src).map_err(|e| io("stat link target", e.into()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(Error::UnsafeLayer {
                layer: layer.to_string(),
                entry: shown,
                reason: "hardlink to a non-regular lower file".into(),
            });
        }
        let (name, parent) = link
            .name
            .split_last()
            .ok_or_else(|| io("resolve", std::io::ErrorKind::InvalidInput.into()))?;
        let dir = open_in_root(
            &root,
            &if parent.is_empty() {
                ".".into()
            } else {
                parent.join("/")
            },
            OFlag::O_PATH | OFlag::O_DIRECTORY,
        )
        .map_err(|e| io("open parent", e.into()))?;
        let fd = openat(
            &dir,
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| io("create file", e.into()))?;
        let mut out = File::from(fd);
        std::io::copy(&mut File::from(src), &mut out).map_err(|e| io("copy lower file", e))?;
        fchown(
            &out,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        )
        .map_err(|e| io("chown", e.into()))?;
        fchmod(&out, Mode::from_bits_truncate(st.st_mode & 0o7777))
            .map_err(|e| io("chmod", e.into()))?;
    }
    Ok(())
}
