//! What the image store uses of its filesystem, counted as `du -x` counts: allocated
//! blocks (not apparent sizes) and inodes, each hard-linked inode once, not descending
//! into other filesystems (a container's overlay mounted below `rootfs/` is not the
//! store's).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::image::{Error, Result};

/// Bytes and inodes in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Walks `root`. Entries removed while the walk runs (a pull or a removal racing it)
/// are skipped, not errors.
pub fn usage(root: &Path) -> Result<Usage> {
    let top = std::fs::symlink_metadata(root).map_err(io("stat", root))?;
    let dev = top.dev();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut total = Usage::default();
    let mut count = |m: &std::fs::Metadata, total: &mut Usage| {
        if seen.insert((m.dev(), m.ino())) {
            total.bytes += m.blocks() * 512;
            total.inodes += 1;
        }
    };
    count(&top, &mut total);
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("list", &dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io("list", &dir))?;
            let path = entry.path();
            let m = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("stat", &path)(e)),
            };
            if m.dev() != dev {
                continue;
            }
            count(&m, &mut total);
            if m.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(total)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_links_count_once() {
        let dir = std::env::temp_dir().join(format!("berth-unit-imagefs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).expect("mkdir");
        std::fs::write(dir.join("a/f"), vec![7u8; 10_000]).expect("write");
        let one = usage(&dir).expect("usage");
        std::fs::hard_link(dir.join("a/f"), dir.join("g")).expect("link");
        let linked = usage(&dir).expect("usage");
        // The root, a, and f: three inodes, the link adds none.
        assert_eq!(one.inodes, 3);
        assert_eq!(linked.inodes, 3);
        assert!(one.bytes >= 10_000);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
