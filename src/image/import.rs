//! Import of OCI image layouts (a directory, or a tar of one) and `docker save`
//! tarballs, so a node runs with no registry at all. Every blob is verified against its
//! digest on the way into the content store; layers are unpacked like pulled ones.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use oci_spec::image::Descriptor;
use serde::Deserialize;

use super::content::MAX_JSON_BLOB;
use super::digest::Digest;
use super::error::{Error, Result};
use super::layer::{commit_chain, prepare_from_blob};
use super::manifest::{self, DOCKER_LAYER, DOCKER_MANIFEST, Document};
use super::metadata::ImageRecord;
use super::progress::Progress;
use super::reference::Reference;
use super::store::ImageStore;

/// `docker save`'s manifest.json entries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An import source's files: blobs by digest, small JSON files by path.
struct Source {
    /// tar path -> digest of the file's bytes (tar sources; every file is ingested).
    by_path: HashMap<String, Digest>,
    json: HashMap<String, Vec<u8>>,
    dir: Option<std::path::PathBuf>,
}

impl Source {
    fn file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        if let Some(dir) = &self.dir {
            let p = dir.join(name);
            return match std::fs::read(&p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("read", p)(e)),
            };
        }
        Ok(self.json.get(name).cloned())
    }

    /// Makes sure `d` is in the content store (copying it from a layout dir, verified).
    fn ensure(&self, store: &ImageStore, d: &Digest, size: Option<u64>) -> Result<()> {
        if store.content.has(d) {
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            return Err(Error::invalid(
                d.to_string(),
                "blob referenced but not in the archive",
            ));
        };
        let p = dir.join("blobs/sha256").join(d.hex());
        let mut f = std::fs::File::open(&p).map_err(Error::io("open blob", &p))?;
        let _lock = store.locks.lock_blocking(&format!("blob-{}", d.hex()))?;
        store
            .content
            .copy_in(d, size, &mut f, &p.display().to_string())
    }
}

/// Imports every image in the layout or archive at `path`. `name` (a repository such as
/// `example.com/app`) names images whose layout gives only a tag.
pub async fn import(
    store: &Arc<ImageStore>,
    path: &Path,
    name: Option<&str>,
    progress: &Progress,
) -> Result<Vec<ImageRecord>> {
    let _gc = store.locks.gc_shared().await?;
    let s = store.clone();
    let p = path.to_path_buf();
    let pr = progress.clone();
    let source = tokio::task::spawn_blocking(move || read_source(&s, &p, &pr))
        .await
        .map_err(|e| Error::Task {
            object: path.display().to_string(),
            reason: e.to_string(),
        })??;
    let object = path.display().to_string();
    let mut out = Vec::new();
    if let Some(save) = source.file("manifest.json")? {
        let entries: Vec<SaveEntry> =
            serde_json::from_slice(&save).map_err(|source| Error::Json {
                object: format!("{object}: manifest.json"),
                source,
            })?;
        for e in entries {
            let (manifest_bytes, tags) = docker_save_manifest(store, &source, &e, &object)?;
            let md = store.content.put(&manifest_bytes, &object)?;
            out.push(
                store_image(store, &source, md, &manifest_bytes, tags, &object, progress).await?,
            );
        }
        return Ok(out);
    }
    let index = source.file("index.json")?.ok_or_else(|| {
        Error::invalid(
            &object,
            "neither an OCI image layout (index.json) nor a docker save archive (manifest.json)",
        )
    })?;
    let Document::Index(index) = manifest::parse(&index, None, &format!("{object}: index.json"))?
    else {
        return Err(Error::invalid(&object, "index.json is not an image index"));
    };
    for desc in index.manifests() {
        let tags = layout_tags(desc, name);
        let mut d = Digest::try_from(desc.digest())?;
        source.ensure(store, &d, Some(desc.size()))?;
        let mut bytes = store.content.read(&d)?;
        if let Document::Index(nested) = manifest::parse(
            &bytes,
            Some(desc.media_type().as_ref()),
            &format!("{object}: {d}"),
        )? {
            let (os, arch) = manifest::host_platform();
            let (chosen, size) = manifest::select(&nested, os, arch, &format!("{object}: {d}"))?;
            source.ensure(store, &chosen, Some(size))?;
            d = chosen;
            bytes = store.content.read(&d)?;
        }
        out.push(store_image(store, &source, d, &bytes, tags, &object, progress).await?);
    }
    Ok(out)
}

fn layout_tags(desc: &Descriptor, name: Option<&str>) -> Vec<String> {
    let ann = desc.annotations().clone().unwrap_or_default();
    let full = ann.get("io.containerd.image.name").cloned();
    let refname = ann.get("org.opencontainers.image.ref.name").cloned();
    let candidate = match (full, refname, name) {
        (Some(f), _, _) => Some(f),
        (None, Some(r), _) if r.contains('/') => Some(r),
        (None, Some(r), Some(n)) => Some(format!("{n}:{r}")),
        (None, None, Some(n)) => Some(n.to_string()),
        _ => None,
    };
    candidate
        .and_then(|c| Reference::parse(&c).ok())
        .and_then(|r| r.tagged())
        .into_iter()
        .collect()
}

fn docker_save_manifest(
    store: &ImageStore,
    source: &Source,
    e: &SaveEntry,
    object: &str,
) -> Result<(Vec<u8>, Vec<String>)> {
    let get = |p: &str| {
        source
            .by_path
            .get(p.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| {
                Error::invalid(
                    object,
                    format!("manifest.json names {p:?}, which is not in the archive"),
                )
            })
    };
    let config = get(&e.config)?;
    let mut layers = Vec::new();
    for l in &e.layers {
        let d = get(l)?;
        let size = store.content.size(&d).unwrap_or(0);
        layers.push(serde_json::json!({"mediaType": DOCKER_LAYER, "size": size, "digest": d}));
    }
    let config_size = store.content.size(&config).unwrap_or(0);
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config_size, "digest": config},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&m).map_err(|source| Error::Json {
        object: object.into(),
        source,
    })?;
    let tags = e
        .repo_tags
        .clone()
        .unwrap_or_default()
        .iter()
        .filter_map(|t| Reference::parse(t).ok().and_then(|r| r.tagged()))
        .collect();
    Ok((bytes, tags))
}

async fn store_image(
    store: &Arc<ImageStore>,
    source: &Source,
    md: Digest,
    bytes: &[u8],
    tags: Vec<String>,
    object: &str,
    progress: &Progress,
) -> Result<ImageRecord> {
    let Document::Manifest(m) = manifest::parse(bytes, None, &format!("{object}: {md}"))? else {
        return Err(Error::invalid(
            object,
            format!("{md} is not an image manifest"),
        ));
    };
    let cd = Digest::try_from(m.config().digest())?;
    source.ensure(store, &cd, Some(m.config().size()))?;
    let config = store.content.read(&cd)?;
    let plan = manifest::plan(md, bytes.len() as u64, &m, &config, object)?;
    let mut tasks = Vec::new();
    for job in &plan.jobs {
        source.ensure(store, &job.blob, job.size)?;
        let (s, j) = (store.clone(), job.clone());
        tasks.push(tokio::spawn(async move { prepare_from_blob(&s, j).await }));
    }
    let mut prepared = Vec::new();
    for t in tasks {
        prepared.push(t.await.map_err(|e| Error::Task {
            object: object.into(),
            reason: e.to_string(),
        })??);
        progress.step(&format!(
            "unpacked layer {}/{}",
            prepared.len(),
            plan.jobs.len()
        ));
    }
    commit_chain(store, prepared).await?;
    store.record(&plan, tags, Vec::new()).await
}

/// Reads a layout dir as is, or streams a (possibly gzipped) tar into the content store.
fn read_source(store: &ImageStore, path: &Path, progress: &Progress) -> Result<Source> {
    let meta = std::fs::metadata(path).map_err(Error::io("stat", path))?;
    if meta.is_dir() {
        return Ok(Source {
            by_path: HashMap::new(),
            json: HashMap::new(),
            dir: Some(path.to_path_buf()),
        });
    }
    let f = std::fs::File::open(path).map_err(Error::io("open", path))?;
    progress.set_total(meta.len());
    let mut br = BufReader::with_capacity(256 << 10, progress.wrap_read(f));
    let gz = br
        .fill_buf()
        .map_err(Error::io("read", path))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::bufread::MultiGzDecoder::new(br))
    } else {
        Box::new(br)
    };
    let mut archive = tar::Archive::new(reader);
    let mut src = Source {
        by_path: HashMap::new(),
        json: HashMap::new(),
        dir: None,
    };
    let object = path.display().to_string();
    for entry in archive.entries().map_err(Error::io("read tar", path))? {
        let mut entry = entry.map_err(Error::io("read tar entry", path))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes())
            .trim_start_matches("./")
            .to_string();
        let what = format!("{object}: {name}");
        if matches!(
            name.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            let mut b = Vec::new();
            (&mut entry)
                .take(MAX_JSON_BLOB)
                .read_to_end(&mut b)
                .map_err(Error::io("read", &what))?;
            src.json.insert(name, b);
            continue;
        }
        let d = match name.strip_prefix("blobs/sha256/").map(Digest::from_hex) {
            Some(Ok(d)) => {
                let size = entry.header().size().ok();
                let _lock = store.locks.lock_blocking(&format!("blob-{}", d.hex()))?;
                store.content.copy_in(&d, size, &mut entry, &what)?;
                d
            }
            _ => store.content.write_unknown(&mut entry, &what)?.0,
        };
        src.by_path.insert(name, d);
    }
    Ok(src)
}
