//! Crash-safe persistent state: files that are replaced whole, never torn.
//!
//! Every state file berth keeps (container state, image records, CNI attachment results)
//! is written here: to a temp file in the same directory, then renamed over the old one,
//! so a reader or a restart after kill -9 sees the old or the new content, never a mix.
//! [`Durability::Durable`] also fsyncs the file and the directory, so the new content
//! survives a power loss; [`Durability::Replace`] skips both where the file only matters
//! while the machine is up (a pid file) or a later durable write will cover it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// How far a write must reach before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// temp, fsync, rename, fsync(dir): on disk when this returns.
    Durable,
    /// temp, rename: atomic for readers and across a process crash, not a power loss.
    Replace,
}

/// Replaces `path` with `bytes` atomically (see the module doc); the file is mode 0600.
pub fn write_file(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "state file path has no name",
        )
    })?;
    // Unique per process and per call, so concurrent writers never share a temp file.
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Durable {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if durability == Durability::Durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_whole_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("berth-store-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        for (bytes, d) in [
            (&b"{\"a\":1}"[..], Durability::Durable),
            (b"{}", Durability::Replace),
        ] {
            write_file(&p, bytes, d).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), bytes);
        }
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        assert!(write_file(&dir.join("missing/x"), b"", Durability::Durable).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
