//! Upstream's AtomicWriter (pkg/volume/util/atomic_writer.go): the files of a projected
//! volume (configMap, secret, downwardAPI, projected) live in a timestamped directory
//! `..2026_12_07_06_16_30.<random>`; `..data` is a symlink to it, swapped by rename(2);
//! each top-level user-visible name is a symlink through `..data`. A container thus sees
//! either the whole old set of files or the whole new one, never a mix.
//!
//! Unchanged content writes nothing; changed or removed files write a new directory, run
//! the caller's `set_perms` over the volume (the fsGroup ownership), swap `..data` once, remove the user-visible links of removed names, then the old directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ownership::OwnershipError;

const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of the payload: its content and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Why a payload could not be written: a bad path (the reason alone) or a file error.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `payload` (relative path -> file) into `target`, which must exist. Returns
/// whether anything was written. `set_perms` runs once the new files are in place and
/// before the swap (upstream's setPerms), so containers never see them with other
/// permissions; a failure leaves the old files in place.
pub fn write(
    target: &Path,
    payload: &BTreeMap<String, FileProjection>,
    set_perms: &dyn Fn() -> Result<(), OwnershipError>,
) -> Result<bool, WriteError> {
    let payload = clean_payload(payload)?;
    let data_link = target.join(DATA_DIR);
    let old_ts = match std::fs::read_link(&data_link) {
        Ok(p) => Some(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&data_link)(e)),
    };

    let mut to_remove = BTreeSet::new();
    let mut should_write = true;
    if let Some(old) = &old_ts {
        let old_path = target.join(old);
        to_remove = paths_to_remove(&payload, &old_path)?;
        should_write = payload_changed(&payload, &old_path)? || !to_remove.is_empty();
    }

    if should_write {
        let ts_dir = new_timestamp_dir(target)?;
        let ts_name = ts_dir
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| io_err(&ts_dir)(io::ErrorKind::InvalidInput.into()))?;
        if let Err(e) = write_payload_to_dir(&payload, &ts_dir) {
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(e);
        }
        if let Err(e) = set_perms() {
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(e.into());
        }
        let new_link = target.join(NEW_DATA_DIR);
        // A `..data_tmp` left by an interrupted write would make symlink(2) fail.
        let _ = std::fs::remove_file(&new_link);
        if let Err(e) = std::os::unix::fs::symlink(&ts_name, &new_link) {
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(io_err(&new_link)(e));
        }
        if let Err(e) = std::fs::rename(&new_link, &data_link) {
            let _ = std::fs::remove_file(&new_link);
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(io_err(&data_link)(e));
        }
        tracing::debug!(target = %target.display(), dir = %ts_name.display(), "volume payload swapped in");
    }

    create_user_visible_files(target, &payload)?;

    if should_write {
        // Only top-level names are links of their own; deeper ones went with the old dir.
        for p in to_remove.iter().filter(|p| !p.contains('/')) {
            let path = target.join(p);
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(io_err(&path)(e));
            }
        }
        if let Some(old) = &old_ts {
            let old_path = target.join(old);
            if let Err(e) = std::fs::remove_dir_all(&old_path)
                && e.kind() != io::ErrorKind::NotFound
            {
                return Err(io_err(&old_path)(e));
            }
        }
    }
    Ok(should_write)
}

/// Paths checked as upstream's validatePath, then cleaned as Go's path.Clean.
fn clean_payload(
    payload: &BTreeMap<String, FileProjection>,
) -> Result<BTreeMap<String, FileProjection>, WriteError> {
    let mut out = BTreeMap::new();
    for (path, file) in payload {
        validate_path(path).map_err(|reason| WriteError::InvalidPath {
            path: path.clone(),
            reason,
        })?;
        let clean: Vec<&str> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        if clean.is_empty() {
            return Err(WriteError::InvalidPath {
                path: path.clone(),
                reason: "must name a file",
            });
        }
        out.insert(clean.join("/"), file.clone());
    }
    Ok(out)
}

/// Upstream's validatePath: relative, no `..` element, not starting with `..`, bounded.
pub fn validate_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("must not be empty");
    }
    if path.starts_with('/') {
        return Err("must be relative path");
    }
    if path.len() > MAX_PATH_LENGTH {
        return Err("must be less than or equal to 4096 characters");
    }
    let items: Vec<&str> = path.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err("must not contain '..'");
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err("filenames must be less than or equal to 255 characters");
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err("must not start with '..'");
    }
    Ok(())
}

/// Every path under the old timestamped dir that the new payload does not keep (the new
/// payload's parent directories count as kept).
fn paths_to_remove(
    payload: &BTreeMap<String, FileProjection>,
    old: &Path,
) -> Result<BTreeSet<String>, WriteError> {
    let mut found = BTreeSet::new();
    walk(old, old, &mut found)?;
    let mut keep = BTreeSet::new();
    for p in payload.keys() {
        let mut cur = p.as_str();
        loop {
            keep.insert(cur.to_string());
            match cur.rfind('/') {
                Some(i) => cur = &cur[..i],
                None => break,
            }
        }
    }
    Ok(found.difference(&keep).cloned().collect())
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) -> Result<(), WriteError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        if let Ok(rel) = path.strip_prefix(base) {
            out.insert(rel.to_string_lossy().into_owned());
        }
        if entry.file_type().map_err(io_err(&path))?.is_dir() {
            walk(base, &path, out)?;
        }
    }
    Ok(())
}

/// Whether any file is new or its content differs from the old dir's.
fn payload_changed(
    payload: &BTreeMap<String, FileProjection>,
    old: &Path,
) -> Result<bool, WriteError> {
    for (p, file) in payload {
        let path = old.join(p);
        match std::fs::read(&path) {
            Ok(content) if content == file.data => {}
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(false)
}

/// `..<UTC time as 2006_01_02_15_04_05>.<random>`, mode 0755.
fn new_timestamp_dir(target: &Path) -> Result<PathBuf, WriteError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let stamp = utc_stamp(now);
    for _ in 0..16 {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|e| io_err(target)(io::Error::other(e.to_string())))?;
        let dir = target.join(format!("..{stamp}.{}", u32::from_ne_bytes(b)));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&dir))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        }
    }
    Err(io_err(target)(io::ErrorKind::AlreadyExists.into()))
}

/// Seconds since the epoch as `YYYY_MM_DD_HH_MM_SS` in UTC.
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}_{m:02}_{d:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn write_payload_to_dir(
    payload: &BTreeMap<String, FileProjection>,
    dir: &Path,
) -> Result<(), WriteError> {
    for (p, file) in payload {
        let path = dir.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::write(&path, &file.data).map_err(io_err(&path))?;
        // Set after writing so the umask does not narrow the mode asked for.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode & 0o7777))
            .map_err(io_err(&path))?;
    }
    Ok(())
}

/// A `name -> ..data/name` link for each top-level name of the payload, where missing.
fn create_user_visible_files(
    target: &Path,
    payload: &BTreeMap<String, FileProjection>,
) -> Result<(), WriteError> {
    for p in payload.keys() {
        let top = p.split('/').next().unwrap_or(p);
        let link = target.join(top);
        match std::fs::read_link(&link) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::os::unix::fs::symlink(Path::new(DATA_DIR).join(top), &link)
                    .map_err(io_err(&link))?;
            }
            Err(e) => return Err(io_err(&link)(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::volumes::tests::TempDir;

    fn payload(files: &[(&str, &str, u32)]) -> BTreeMap<String, FileProjection> {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn no_perms() -> Result<(), OwnershipError> {
        Ok(())
    }

    /// How many timestamped payload dirs (`..2026_...`) are in `dir`.
    fn timestamped_dirs(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let e = e.as_ref().unwrap();
                e.file_name().to_string_lossy().starts_with("..20")
            })
            .count()
    }

    fn data_target(dir: &Path) -> PathBuf {
        std::fs::read_link(dir.join(DATA_DIR)).unwrap()
    }

    #[test]
    fn first_write_update_noop_and_removal() {
        let t = TempDir::new("atomic");
        let dir = t.path();
        // First write: files through ..data, modes as asked.
        let p1 = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600), ("c", "3", 0o400)]);
        assert!(write(dir, &p1, &no_perms).unwrap());
        let ts1 = data_target(dir);
        assert!(ts1.to_string_lossy().starts_with("..20"), "{ts1:?}");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(
            std::fs::read_link(dir.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(dir.join(&ts1))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        assert_eq!(mode, 0o755);

        // Same content: nothing written, same dir.
        assert!(!write(dir, &p1, &no_perms).unwrap());
        assert_eq!(data_target(dir), ts1);

        // Changed content: a new dir, one swap, the old dir gone.
        let p2 = payload(&[("a", "1", 0o644), ("sub/b", "22", 0o600), ("c", "3", 0o400)]);
        assert!(write(dir, &p2, &no_perms).unwrap());
        let ts2 = data_target(dir);
        assert_ne!(ts1, ts2);
        assert!(!dir.join(&ts1).exists());
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "22");

        // A removed key: its link and file are gone, the others stay.
        let p3 = payload(&[("a", "1", 0o644), ("sub/b", "22", 0o600)]);
        assert!(write(dir, &p3, &no_perms).unwrap());
        assert!(std::fs::symlink_metadata(dir.join("c")).is_err());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("..20"))
            .collect();
        names.sort();
        assert_eq!(names, ["..data", "a", "sub"]);
        // Exactly one timestamped dir remains.
        let ts_dirs = timestamped_dirs(dir);
        assert_eq!(ts_dirs, 1);
    }

    #[test]
    fn failed_set_perms_keeps_the_old_files() {
        let t = TempDir::new("atomic-perms");
        let dir = t.path();
        assert!(write(dir, &payload(&[("a", "1", 0o644)]), &no_perms).unwrap());
        let ts1 = data_target(dir);
        let refuse = || -> Result<(), OwnershipError> {
            Err(OwnershipError::Walk {
                path: PathBuf::from("x"),
                source: io::ErrorKind::PermissionDenied.into(),
            })
        };
        let e = write(dir, &payload(&[("a", "2", 0o644)]), &refuse).unwrap_err();
        assert!(matches!(e, WriteError::Ownership(_)), "{e}");
        assert_eq!(data_target(dir), ts1);
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let dirs = timestamped_dirs(dir);
        assert_eq!(dirs, 1);
        // Unchanged content writes nothing, so the ownership is not applied again.
        let called = std::cell::Cell::new(false);
        let record = || -> Result<(), OwnershipError> {
            called.set(true);
            Ok(())
        };
        assert!(!write(dir, &payload(&[("a", "1", 0o644)]), &record).unwrap());
        assert!(!called.get());
    }

    #[test]
    fn refuses_bad_paths() {
        let t = TempDir::new("atomic-bad");
        for bad in ["/abs", "../up", "a/../b", "..hidden", ""] {
            let e = write(t.path(), &payload(&[(bad, "x", 0o644)]), &no_perms).unwrap_err();
            assert!(matches!(e, WriteError::InvalidPath { .. }), "{bad}: {e}");
        }
        assert!(validate_path("..").is_err());
        assert!(validate_path("a/./b").is_ok());
        assert!(validate_path(&"x".repeat(256)).is_err());
    }

    #[test]
    fn stamp() {
        assert_eq!(utc_stamp(0), "1970_01_01_00_00_00");
        assert_eq!(utc_stamp(1_796_625_390), "2026_12_07_06_36_30");
        assert_eq!(utc_stamp(951_782_400), "2000_02_29_00_00_00");
    }
}
