//! Named locks that de-duplicate concurrent work on the same blob, layer or metadata
//! file: an in-process async mutex (tasks of one daemon) plus an flock on a lock file
//! (separate processes, such as two `berth image pull` runs on one root).

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};

use super::error::{Error, Result};

/// The lock table of one store root.
#[derive(Debug)]
pub struct Locks {
    dir: PathBuf,
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while the named work runs; dropping it releases both locks.
#[derive(Debug)]
pub struct LockGuard {
    _file: Flock<File>,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Locks {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for the lock named `key` (a file-name-safe string).
    pub async fn lock(&self, key: &str) -> Result<LockGuard> {
        let local = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.retain(|_, m| Arc::strong_count(m) > 1 || m.try_lock().is_err());
            held.entry(key.to_string()).or_default().clone()
        };
        let local = local.lock_owned().await;
        let path = self.dir.join(format!("{key}.lock"));
        let file = tokio::task::spawn_blocking(move || lock_file(path))
            .await
            .map_err(|e| Error::Task {
                object: format!("lock {key}"),
                reason: e.to_string(),
            })??;
        Ok(LockGuard {
            _file: file,
            _local: local,
        })
    }

    /// Blocking form for code already on a blocking thread (no in-process de-duplication
    /// beyond the flock, which also serialises threads of one process on separate opens).
    pub fn lock_blocking(&self, key: &str) -> Result<Flock<File>> {
        lock_file(self.dir.join(format!("{key}.lock")))
    }
}

fn lock_file(path: PathBuf) -> Result<Flock<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("open lock file", &path))?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| Error::Io {
        op: "flock",
        path,
        source: errno.into(),
    })
}

impl Locks {
    /// Held by every pull and import while it stores content not yet recorded in an
    /// image; garbage collection takes it exclusively ([`Locks::gc_exclusive`]).
    pub async fn gc_shared(&self) -> Result<Flock<File>> {
        self.flock_async("gc", FlockArg::LockShared).await
    }

    pub async fn gc_exclusive(&self) -> Result<Flock<File>> {
        self.flock_async("gc", FlockArg::LockExclusive).await
    }

    async fn flock_async(&self, key: &'static str, arg: FlockArg) -> Result<Flock<File>> {
        let path = self.dir.join(format!("{key}.lock"));
        tokio::task::spawn_blocking(move || {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(Error::io("open lock file", &path))?;
            Flock::lock(file, arg).map_err(|(_, errno)| Error::Io {
                op: "flock",
                path,
                source: errno.into(),
            })
        })
        .await
        .map_err(|e| Error::Task {
            object: format!("lock {key}"),
            reason: e.to_string(),
        })?
    }
}
