//! Snapshots: each layer unpacked once into `snapshots/<chain-id hex>/`, the overlay lower
//! dir of every image that shares that chain. A snapshot is built in `snapshots/tmp-*`
//! and renamed into place only when its layer verified, so a chain-ID dir that exists is
//! complete; leftovers of a killed unpack are removed when the store opens.

use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

/// A snapshot being unpacked; removed on drop unless committed.
#[derive(Debug)]
pub struct TmpSnapshot {
    path: Option<PathBuf>,
}

impl TmpSnapshot {
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TmpSnapshot {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Snapshots {
    /// Opens `root/snapshots`, removing temp dirs whose writer process is gone.
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("snapshots");
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let s = Self { dir };
        s.clean_stale()?;
        Ok(s)
    }

    fn clean_stale(&self) -> Result<()> {
        for e in std::fs::read_dir(&self.dir)
            .map_err(Error::io("list", &self.dir))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("tmp-") else {
                continue;
            };
            let pid = rest.split('-').next().and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                tracing::info!(dir = %e.path().display(), "removing an unpack left by a killed process");
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(())
    }

    pub fn path(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex())
    }

    pub fn has(&self, chain: &Digest) -> bool {
        self.path(chain).is_dir()
    }

    pub fn temp(&self) -> Result<TmpSnapshot> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = self.dir.join(format!("tmp-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).map_err(Error::io("create", &p))?;
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(Error::io("chmod", &p))?;
        Ok(TmpSnapshot { path: Some(p) })
    }

    /// Moves a finished unpack into place as `chain`.
    pub fn commit(&self, mut tmp: TmpSnapshot, chain: &Digest) -> Result<()> {
        let Some(from) = tmp.path.take() else {
            return Ok(());
        };
        let to = self.path(chain);
        if to.exists() {
            let _ = std::fs::remove_dir_all(&from);
            return Ok(());
        }
        match std::fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            // Another process committed the same chain a moment ago: same content.
            Err(_) if to.is_dir() => {
                let _ = std::fs::remove_dir_all(&from);
                Ok(())
            }
            Err(e) => Err(Error::io("commit snapshot", &to)(e)),
        }
    }

    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd = std::fs::read_dir(&self.dir).map_err(Error::io("list", &self.dir))?;
        Ok(rd
            .flatten()
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    pub fn remove(&self, chain: &Digest) -> Result<()> {
        let p = self.path(chain);
        match std::fs::remove_dir_all(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove snapshot", &p)(e))
            }
            _ => Ok(()),
        }
    }

    /// Bytes used by a snapshot (apparent sizes of its files).
    pub fn disk_usage(&self, chain: &Digest) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.path(chain))
    }
}
