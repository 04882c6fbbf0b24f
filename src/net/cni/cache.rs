//! The result cache: one file per attachment with the configuration it was made with and
//! the result it got, so DEL (which needs prevResult) and GC work after a restart, even if
//! the configuration on disk changed since.
//!
//! Files are written atomically (temp, fsync, rename, fsync of the directory) and are
//! root-only. An entry is written before ADD runs (without a result) and again after, so a
//! crash mid-ADD still leaves the configuration that DEL needs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::CniError;

/// What the cache keeps for one attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub kind: String,
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: Option<PathBuf>,
    pub cni_args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    /// The network list as it was when ADD ran: `{name, cniVersion, plugins, ...}`.
    pub config: Value,
    /// The chain's final ADD result; `None` while ADD is in flight.
    pub result: Option<Value>,
}

pub const KIND: &str = "berthCniCacheV1";

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<network>/<container>-<ifname>.json`; the parts are validated names.
    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join(network)
            .join(format!("{container_id}_{ifname}.json"))
    }

    fn err(path: &Path) -> impl FnOnce(std::io::Error) -> CniError + '_ {
        move |source| CniError::Cache {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes `e` atomically.
    pub fn put(&self, e: &CacheEntry) -> Result<(), CniError> {
        let path = self.path(&e.network, &e.container_id, &e.ifname);
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(Self::err(&dir))?;
        }
        let body = serde_json::to_vec(e).map_err(|err| CniError::Cache {
            path: path.clone(),
            source: std::io::Error::other(err),
        })?;
        // Replaced whole but not fsynced, as libcni writes its cache: after a power loss the
        // pod's record still names the attachment, and a DEL without a cached result is
        // valid CNI.
        crate::store::write_file(&path, &body, crate::store::Durability::Replace)
            .map_err(Self::err(&path))
    }

    /// The entry for an attachment on `network`, if cached.
    pub fn get(&self, network: &str, container_id: &str, ifname: &str) -> Option<CacheEntry> {
        let bytes = std::fs::read(self.path(network, container_id, ifname)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every cached entry (of every network); unreadable files are skipped with a warning.
    pub fn all(&self) -> Vec<CacheEntry> {
        let mut out = Vec::new();
        let Ok(nets) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for net in nets.flatten() {
            let Ok(files) = std::fs::read_dir(net.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                match std::fs::read(&p).map(|b| serde_json::from_slice::<CacheEntry>(&b)) {
                    Ok(Ok(e)) => out.push(e),
                    Ok(Err(err)) => {
                        tracing::warn!(path = %p.display(), "corrupt CNI cache entry: {err}")
                    }
                    Err(err) => {
                        tracing::warn!(path = %p.display(), "unreadable CNI cache entry: {err}")
                    }
                }
            }
        }
        out
    }

    /// Removes an entry; already gone is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), CniError> {
        let path = self.path(network, container_id, ifname);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_all_remove() {
        let dir = std::env::temp_dir().join(format!("berth-cni-cache-unit-{}", std::process::id()));
        let c = Cache::new(&dir);
        let e = CacheEntry {
            kind: KIND.into(),
            network: "pods".into(),
            container_id: "abc".into(),
            ifname: "eth0".into(),
            netns: Some("/proc/1/ns/net".into()),
            cni_args: vec![("K8S_POD_NAME".into(), "p".into())],
            capability_args: Map::new(),
            config: serde_json::json!({"name": "pods"}),
            result: None,
        };
        c.put(&e).expect("put");
        assert_eq!(c.get("pods", "abc", "eth0"), Some(e.clone()));
        assert_eq!(c.all(), vec![e]);
        c.remove("pods", "abc", "eth0").expect("remove");
        c.remove("pods", "abc", "eth0").expect("remove twice");
        assert!(c.all().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
