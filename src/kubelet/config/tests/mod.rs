//! Unit tests of the pod sources: no root, temp dirs and a local HTTP server only.

mod merge;
mod parse;
mod sources;
mod validate;

use super::{ManifestError, Parsed, parse_manifests};

pub(super) const NODE: &str = "node1";

pub(super) fn parse(file: &str, yaml: &str) -> Parsed {
    parse_manifests(file, yaml.as_bytes(), NODE)
}

pub(super) fn messages(errors: &[ManifestError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// A directory under the system temp dir, removed on drop.
pub(super) struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("berth-kcfg-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
