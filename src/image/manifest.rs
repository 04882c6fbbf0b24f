//! Manifests, indexes and configs as registries and layouts serve them: OCI and Docker
//! schema 2 media types, platform selection from an index or manifest list, and the plan
//! (layer jobs with diff and chain IDs) an image manifest and its config make.

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use super::digest::{Digest, chain_ids};
use super::error::{Error, Result};
use super::layer::LayerJob;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// What the `Accept` header of a manifest request lists.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A parsed manifest document.
#[derive(Debug)]
pub enum Document {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Parses a manifest or index, by its declared media type (the header, else the
/// document's own `mediaType`, else its shape).
pub fn parse(bytes: &[u8], content_type: Option<&str>, object: &str) -> Result<Document> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|source| Error::Json {
        object: object.into(),
        source,
    })?;
    if probe.schema_version != Some(2) {
        return Err(Error::Unsupported {
            object: object.into(),
            what: format!(
                "manifest schemaVersion {:?} (only schema 2 and OCI)",
                probe.schema_version
            ),
        });
    }
    let declared = probe
        .media_type
        .as_deref()
        .or(content_type.map(|c| c.split(';').next().unwrap_or(c).trim()));
    let is_index = match declared {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        _ => probe.manifests.is_some(),
    };
    let inval = |e: oci_spec::OciSpecError| Error::invalid(object, e.to_string());
    if is_index {
        ImageIndex::from_reader(bytes)
            .map(|i| Document::Index(Box::new(i)))
            .map_err(inval)
    } else {
        ImageManifest::from_reader(bytes)
            .map(|m| Document::Manifest(Box::new(m)))
            .map_err(inval)
    }
}

/// The Go names of this machine's architecture, as image platforms spell them.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

/// Picks the manifest for `os/arch` from an index: the first entry whose platform
/// matches; entries without a platform match only if nothing else does.
pub fn select(index: &ImageIndex, os: &str, arch: &str, object: &str) -> Result<(Digest, u64)> {
    let matching = index.manifests().iter().find(|d| {
        d.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch)
    });
    let chosen = matching.or_else(|| index.manifests().iter().find(|d| d.platform().is_none()));
    match chosen {
        Some(d) => Ok((Digest::try_from(d.digest())?, d.size())),
        None => {
            let have: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| {
                    d.platform()
                        .as_ref()
                        .map(|p| format!("{}/{}", p.os(), p.architecture()))
                })
                .collect();
            Err(Error::invalid(
                object,
                format!(
                    "no manifest for {os}/{arch} (index has: {})",
                    have.join(", ")
                ),
            ))
        }
    }
}

/// An image manifest with its verified config, ready to fetch or unpack.
#[derive(Debug)]
pub struct Plan {
    pub manifest_digest: Digest,
    pub manifest_size: u64,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    pub config_size: u64,
    pub jobs: Vec<LayerJob>,
}

/// Checks a manifest's layers against its config and derives the layer jobs.
pub fn plan(
    manifest_digest: Digest,
    manifest_size: u64,
    manifest: &ImageManifest,
    config_bytes: &[u8],
    object: &str,
) -> Result<Plan> {
    let config_digest = Digest::try_from(manifest.config().digest())?;
    let config = ImageConfiguration::from_reader(config_bytes)
        .map_err(|e| Error::invalid(format!("{object} config"), e.to_string()))?;
    let diff_ids: Vec<Digest> = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<_>>()?;
    let layers = manifest.layers();
    if layers.len() != diff_ids.len() {
        return Err(Error::invalid(
            object,
            format!(
                "manifest has {} layers but its config lists {} diff IDs",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let chains = chain_ids(&diff_ids);
    let unpacked = std::sync::Arc::default();
    let mut jobs = Vec::with_capacity(layers.len());
    for ((l, diff_id), chain) in layers.iter().zip(diff_ids).zip(chains) {
        let mt = l.media_type().to_string();
        if !(mt.contains("tar") || mt.contains("layer")) || mt.contains("encrypted") {
            return Err(Error::Unsupported {
                object: object.into(),
                what: format!("layer media type {mt}"),
            });
        }
        let blob = Digest::try_from(l.digest())?;
        jobs.push(LayerJob {
            object: format!("{object} layer {}", blob.short()),
            blob,
            size: Some(l.size()),
            diff_id,
            chain,
            unpacked: std::sync::Arc::clone(&unpacked),
        });
    }
    Ok(Plan {
        manifest_digest,
        manifest_size,
        config_size: config_bytes.len() as u64,
        config_digest,
        config,
        jobs,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn selects_linux_amd64_from_an_index() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let idx = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": d('a'), "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": OCI_MANIFEST, "digest": d('b'), "size": 2, "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        });
        let bytes = serde_json::to_vec(&idx).unwrap();
        let Document::Index(i) = parse(&bytes, None, "t").unwrap() else {
            panic!("not an index")
        };
        let (got, size) = select(&i, "linux", "amd64", "t").unwrap();
        assert_eq!((got.to_string(), size), (d('b'), 2));
        assert!(select(&i, "linux", "s390x", "t").is_err());
    }

    #[test]
    fn schema1_is_refused() {
        let b = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(matches!(
            parse(b, None, "t"),
            Err(Error::Unsupported { .. })
        ));
    }
}
