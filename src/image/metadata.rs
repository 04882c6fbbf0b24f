//! Image records: what was pulled or imported, under which repo tags and digests, its
//! config summary and layer chain. Kept in `meta/images.json`, rewritten atomically under
//! the `meta` lock. Lookups take a tag, a repo digest, an image ID or an ID prefix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::content::write_atomic;
use super::digest::Digest;
use super::error::{Error, Result};
use super::reference::Reference;

/// The parts of an image config a runtime needs to start a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuntimeConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: String,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: String,
}

impl RuntimeConfig {
    pub fn from_oci(c: &oci_spec::image::ImageConfiguration) -> Self {
        let Some(c) = c.config() else {
            return Self::default();
        };
        let mut ports = c.exposed_ports().clone().unwrap_or_default();
        ports.sort();
        let mut volumes = c.volumes().clone().unwrap_or_default();
        volumes.sort();
        Self {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
            exposed_ports: ports,
            volumes,
            stop_signal: c.stop_signal().clone().unwrap_or_default(),
        }
    }
}

/// One stored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The config digest: the image ID.
    pub id: Digest,
    pub manifest: Digest,
    /// `registry/repo:tag` names.
    pub repo_tags: Vec<String>,
    /// `registry/repo@sha256:...` names.
    pub repo_digests: Vec<String>,
    /// Layer blobs as the manifest lists them (compressed digests).
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
    pub chain_ids: Vec<Digest>,
    /// Bytes of manifest, config and layer blobs.
    pub size: u64,
    #[serde(default)]
    pub created: Option<String>,
    pub platform: String,
    pub config: RuntimeConfig,
    /// Unix seconds when first stored.
    pub stored_at: u64,
    /// Unix seconds when last pulled, imported or used by a container.
    pub last_used: u64,
}

impl ImageRecord {
    /// The top of its snapshot chain (the lower dir overlay stacks first).
    pub fn top_chain(&self) -> Option<&Digest> {
        self.chain_ids.last()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    images: Vec<ImageRecord>,
}

/// The image records of one store root.
#[derive(Debug, Clone)]
pub struct MetaStore {
    path: PathBuf,
}

impl MetaStore {
    pub fn open(root: &Path) -> Result<Self> {
        let dir = root.join("meta");
        std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        Ok(Self {
            path: dir.join("images.json"),
        })
    }

    pub fn load(&self) -> Result<Vec<ImageRecord>> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice::<File>(&b)
                .map(|f| f.images)
                .map_err(|source| Error::Json {
                    object: self.path.display().to_string(),
                    source,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read", &self.path)(e)),
        }
    }

    /// Rewrites the records; callers hold the `meta` lock.
    pub fn save(&self, images: Vec<ImageRecord>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&File { images }).map_err(|source| Error::Json {
            object: self.path.display().to_string(),
            source,
        })?;
        write_atomic(&self.path, &bytes)
    }
}

/// Adds or refreshes `new` in `images`: its tags move to it from any other image (a tag
/// names one image), its digests and tags merge with what it already had.
pub fn upsert(images: &mut Vec<ImageRecord>, mut new: ImageRecord) {
    for other in images.iter_mut().filter(|i| i.id != new.id) {
        other.repo_tags.retain(|t| !new.repo_tags.contains(t));
    }
    if let Some(old) = images.iter_mut().find(|i| i.id == new.id) {
        for t in old.repo_tags.drain(..) {
            if !new.repo_tags.contains(&t) {
                new.repo_tags.push(t);
            }
        }
        for d in old.repo_digests.drain(..) {
            if !new.repo_digests.contains(&d) {
                new.repo_digests.push(d);
            }
        }
        new.stored_at = old.stored_at;
        *old = new;
    } else {
        images.push(new);
    }
    images.sort_by(|a, b| {
        a.repo_tags
            .first()
            .cmp(&b.repo_tags.first())
            .then(a.id.cmp(&b.id))
    });
}

/// Finds the one image `query` names: a tag (`busybox`, `reg/x:1`), a repo digest
/// (`reg/x@sha256:...`), an image ID (`sha256:...`) or an unambiguous ID prefix.
pub fn find<'a>(images: &'a [ImageRecord], query: &str) -> Result<&'a ImageRecord> {
    let q = query.trim();
    let by_id = q.strip_prefix("sha256:").unwrap_or(q);
    let is_hex = !by_id.is_empty()
        && by_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if let Ok(r) = Reference::parse(q) {
        let hits: Vec<_> = images
            .iter()
            .filter(|i| match (&r.digest, r.tagged()) {
                (Some(d), _) => {
                    i.repo_digests.contains(&format!("{}@{d}", r.name()))
                        || (&i.manifest == d && q.contains('/'))
                }
                (None, Some(t)) => i.repo_tags.contains(&t),
                (None, None) => false,
            })
            .collect();
        if let [one] = hits.as_slice() {
            return Ok(one);
        }
    }
    if is_hex {
        let hits: Vec<_> = images
            .iter()
            .filter(|i| i.id.hex().starts_with(by_id))
            .collect();
        match hits.as_slice() {
            [one] => return Ok(one),
            [] => {}
            many => {
                return Err(Error::Ambiguous {
                    what: query.to_string(),
                    matches: many
                        .iter()
                        .map(|i| i.id.short())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Err(Error::NotFound {
        what: query.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(id: &[u8], tag: &str) -> ImageRecord {
        ImageRecord {
            id: Digest::of(id),
            manifest: Digest::of(&[id, b"m"].concat()),
            repo_tags: vec![tag.to_string()],
            repo_digests: vec![],
            layers: vec![],
            diff_ids: vec![],
            chain_ids: vec![],
            size: 0,
            created: None,
            platform: "linux/amd64".into(),
            config: RuntimeConfig::default(),
            stored_at: 0,
            last_used: 0,
        }
    }

    #[test]
    fn finds_by_tag_id_and_prefix() {
        let mut images = Vec::new();
        upsert(&mut images, rec(b"a", "docker.io/library/busybox:latest"));
        upsert(&mut images, rec(b"b", "reg.local:5000/x:1"));
        let a = Digest::of(b"a");
        assert_eq!(find(&images, "busybox").unwrap().id, a);
        assert_eq!(find(&images, a.as_str()).unwrap().id, a);
        assert_eq!(find(&images, &a.hex()[..6]).unwrap().id, a);
        assert_eq!(
            find(&images, "reg.local:5000/x:1").unwrap().id,
            Digest::of(b"b")
        );
        assert!(matches!(
            find(&images, "nothing"),
            Err(Error::NotFound { .. })
        ));
    }

    #[test]
    fn a_tag_moves_to_the_newest_image() {
        let mut images = Vec::new();
        upsert(&mut images, rec(b"a", "docker.io/r/x:1"));
        upsert(&mut images, rec(b"b", "docker.io/r/x:1"));
        assert!(
            images
                .iter()
                .find(|i| i.id == Digest::of(b"a"))
                .unwrap()
                .repo_tags
                .is_empty()
        );
        assert_eq!(find(&images, "r/x:1").unwrap().id, Digest::of(b"b"));
    }
}
