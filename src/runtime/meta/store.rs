//! One directory of record files per kind (`<dir>/<id>.json`), each replaced whole and
//! fsynced (crate::store), read back in full when the daemon starts.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MetaError;
use crate::store::{Durability, write_file};

/// What [`RecordStore::load_all`] found: the records by id (sorted), and the files that
/// did not decode.
#[derive(Debug)]
pub struct Loaded<T> {
    pub good: Vec<(String, T)>,
    pub bad: Vec<MetaError>,
}

/// Records of one kind.
#[derive(Debug, Clone)]
pub struct RecordStore<T> {
    dir: PathBuf,
    _t: PhantomData<fn() -> T>,
}

/// Ids become file names: only what [`super::generate_id`] makes (and test ids of the same
/// alphabet) is accepted, so a damaged record can never name a path outside the store.
fn check_id(id: &str, dir: &Path) -> Result<(), MetaError> {
    if id.is_empty()
        || id.len() > 128
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(MetaError::Corrupt {
            path: dir.to_owned(),
            reason: format!("invalid record id {id:?}"),
        });
    }
    Ok(())
}

impl<T: Serialize + DeserializeOwned> RecordStore<T> {
    /// The store in `dir`, created (0700) if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, MetaError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = dir.into();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| MetaError::Io {
                op: "create",
                path: dir.clone(),
                source,
            })?;
        Ok(Self {
            dir,
            _t: PhantomData,
        })
    }

    fn path(&self, id: &str) -> Result<PathBuf, MetaError> {
        check_id(id, &self.dir)?;
        Ok(self.dir.join(format!("{id}.json")))
    }

    /// Writes the record of `id`, durable when this returns.
    pub fn save(&self, id: &str, record: &T) -> Result<(), MetaError> {
        self.save_with(id, record, Durability::Durable)
    }

    /// Writes the record of `id` replaced whole; `Durability::Replace` for a step that
    /// only matters while the machine is up (it survives a crash of the daemon, not a
    /// power loss, after which the processes it describes are gone too).
    pub fn save_with(&self, id: &str, record: &T, durability: Durability) -> Result<(), MetaError> {
        let path = self.path(id)?;
        let bytes = serde_json::to_vec(record).map_err(|e| MetaError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_file(&path, &bytes, durability).map_err(|source| MetaError::Io {
            op: "write",
            path,
            source,
        })
    }

    /// Removes the record of `id`; a missing record is not an error.
    pub fn remove(&self, id: &str) -> Result<(), MetaError> {
        let path = self.path(id)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(MetaError::Io {
                op: "remove",
                path,
                source,
            }),
        }
    }

    /// Every record, with the files that did not decode reported separately (they are
    /// left on disk for an operator to look at; one bad file must not hide the others).
    /// The temp file of a write another process was killed in is removed: it is never
    /// renamed now, and only one daemon uses a store (load at start, before it serves).
    pub fn load_all(&self) -> Result<Loaded<T>, MetaError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| MetaError::Io {
            op: "read",
            path: self.dir.clone(),
            source,
        })?;
        let mut good = vec![];
        let mut bad = vec![];
        for entry in entries {
            let entry = entry.map_err(|source| MetaError::Io {
                op: "read",
                path: self.dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Leftover temp files of an interrupted write start with '.'.
            if stale_temp(&name) {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "remove a stale temp file");
                }
                continue;
            }
            let Some(id) = name
                .strip_suffix(".json")
                .filter(|_| !name.starts_with('.'))
            else {
                continue;
            };
            let path = entry.path();
            let parsed = check_id(id, &self.dir).and_then(|()| {
                let bytes = std::fs::read(&path).map_err(|source| MetaError::Io {
                    op: "read",
                    path: path.clone(),
                    source,
                })?;
                serde_json::from_slice::<T>(&bytes).map_err(|e| MetaError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            });
            match parsed {
                Ok(r) => good.push((id.to_owned(), r)),
                Err(e) => bad.push(e),
            }
        }
        good.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Loaded { good, bad })
    }
}

/// Whether `name` is the temp file of a [`crate::store::write_file`] by another process
/// (`.<name>.tmp-<pid>-<seq>`).
fn stale_temp(name: &str) -> bool {
    let Some((_, rest)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")) else {
        return false;
    };
    rest.split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct R {
        n: u32,
    }

    #[test]
    fn saves_loads_and_removes_and_reports_damage_separately() {
        let dir = std::env::temp_dir().join(format!("berth-meta-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s: RecordStore<R> = RecordStore::open(&dir).unwrap();
        s.save("b2", &R { n: 2 }).unwrap();
        s.save("a1", &R { n: 1 }).unwrap();
        std::fs::write(dir.join("c3.json"), b"{not json").unwrap();
        std::fs::write(dir.join(".a1.json.tmp-1-1"), b"partial").unwrap();
        let Loaded { good, bad } = s.load_all().unwrap();
        assert_eq!(
            good,
            vec![("a1".into(), R { n: 1 }), ("b2".into(), R { n: 2 })]
        );
        assert_eq!(bad.len(), 1);
        assert!(bad[0].to_string().contains("c3.json"), "{}", bad[0]);
        s.remove("a1").unwrap();
        s.remove("a1").unwrap();
        assert!(s.save("../escape", &R { n: 0 }).is_err());
        assert!(
            !dir.join(".a1.json.tmp-1-1").exists(),
            "a killed writer's temp file is removed"
        );
        assert_eq!(s.load_all().unwrap().good.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
