//! The certificate store under --cert-dir (client-go certificate_store.go): each pair is
//! one file `kubelet-client-<timestamp>.pem` holding the certificate then the key, and
//! `kubelet-client-current.pem` is a symlink to the pair in use.
//!
//! Pair files are written whole (temp, fsync, rename; mode 0600) and the symlink is
//! swapped by renaming a new link over it, so a reader or a restart after a crash sees
//! the old pair or the new one, never a torn file or a missing link. The store owns
//! only these names in the directory.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::CertError;
use super::pair::CertPair;
use crate::store::{Durability, write_file};

/// The pair name prefix kubelet uses for its API client certificate.
pub const CLIENT_PAIR_PREFIX: &str = "kubelet-client";

/// The store of one pair name under one directory.
#[derive(Debug, Clone)]
pub struct CertStore {
    dir: PathBuf,
    prefix: String,
}

impl CertStore {
    /// Opens the store, creating `dir` with mode 0700 when missing.
    pub fn open(dir: &Path, prefix: &str) -> Result<Self, CertError> {
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| CertError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let dir = std::path::absolute(dir).map_err(|source| CertError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir,
            prefix: prefix.to_string(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<prefix>-current.pem`, the path kubeconfigs point at.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(format!("{}-current.pem", self.prefix))
    }

    /// Where bootstrap keeps its key until the CSR is issued (upstream
    /// kubelet-client.key.tmp), so a restart reuses the key and its CSR name.
    pub fn pending_key_path(&self) -> PathBuf {
        self.dir.join(format!("{}.key.tmp", self.prefix))
    }

    /// The pair the current link points at; None when there is no link yet.
    pub fn current(&self) -> Result<Option<CertPair>, CertError> {
        let path = self.current_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CertError::Io { path, source }),
        };
        CertPair::from_pem(&bytes, &bytes)
            .map(Some)
            .map_err(|reason| CertError::Pem {
                what: "certificate pair",
                path,
                reason,
            })
    }

    /// Stores a new pair as a timestamped file and points the current link at it.
    pub fn update(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        now: SystemTime,
    ) -> Result<CertPair, CertError> {
        let pair = CertPair::from_pem(cert_pem, key_pem).map_err(|reason| CertError::Store {
            dir: self.dir.clone(),
            reason: format!("refusing the new pair: {reason}"),
        })?;
        let name = pair_file_name(&self.prefix, now);
        let path = self.dir.join(&name);
        let mut bytes = cert_pem.to_vec();
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(key_pem);
        write_file(&path, &bytes, Durability::Durable).map_err(|source| CertError::Io {
            path: path.clone(),
            source,
        })?;
        self.point_current_at(&path)?;
        Ok(pair)
    }

    /// Swaps the current link: a new link under a temporary name, renamed over the old.
    fn point_current_at(&self, target: &Path) -> Result<(), CertError> {
        let current = self.current_path();
        match std::fs::symlink_metadata(&current) {
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(CertError::Store {
                    dir: self.dir.clone(),
                    reason: format!(
                        "expected {} to be a symlink but it is a file",
                        current.display()
                    ),
                });
            }
            _ => {}
        }
        let updated = self.dir.join(format!("{}-updated.pem", self.prefix));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CertError::Io { path, source }
        };
        match std::fs::remove_file(&updated) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&updated)(e)),
        }
        std::os::unix::fs::symlink(target, &updated).map_err(io(&updated))?;
        std::fs::rename(&updated, &current).map_err(io(&current))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))
    }
}

/// `<prefix>-YYYY-MM-DD-HH-MM-SS.pem` in UTC (upstream's layout "2006-01-02-15-04-05").
pub fn pair_file_name(prefix: &str, now: SystemTime) -> String {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(0))
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    format!("{prefix}-{}.pem", t.strftime("%Y-%m-%d-%H-%M-%S"))
}

/// Mode bits of a path, for tests and checks.
pub fn mode_of(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
