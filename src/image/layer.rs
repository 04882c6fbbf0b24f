//! One layer from compressed blob bytes to an uncommitted snapshot: sniff the
//! compression (gzip, zstd or none, by magic bytes, since registries and tools mislabel),
//! decompress, hash the tar stream for the diff ID, unpack. The caller commits the
//! snapshots of an image in chain order once every layer verified.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::{Error, Result};
use super::locks::LockGuard;
use super::lower_links::resolve_lower_links;
use super::snapshot::TmpSnapshot;
use super::store::ImageStore;
use super::unpack::{LowerLink, UnpackOptions, unpack};

/// What is known about a layer before it is fetched or unpacked.
#[derive(Debug, Clone)]
pub struct LayerJob {
    /// The blob digest (compressed, as the manifest names it).
    pub blob: Digest,
    pub size: Option<u64>,
    /// The uncompressed digest the image config promises.
    pub diff_id: Digest,
    pub chain: Digest,
    /// For messages: `image layer <blob>`.
    pub object: String,
    /// Uncompressed bytes unpacked so far by every layer of this image (shared by the
    /// jobs of one plan), held against [`UnpackOptions::max_image_bytes`].
    pub unpacked: Arc<AtomicU64>,
}

/// A verified layer: committed already (`tmp` is `None`), or waiting in `tmp` for its
/// parents because it has hardlinks into them.
#[derive(Debug)]
pub struct Prepared {
    pub chain: Digest,
    pub tmp: Option<(TmpSnapshot, Vec<LowerLink>)>,
    /// Compressed bytes fetched for this layer (0 when nothing was fetched).
    pub fetched: u64,
}

/// Commits a verified unpack at once when it needs nothing from its parents (the common
/// case), so the chain lock is held only for this layer's own work: a task never waits
/// for another layer's lock while holding one, and concurrent pulls cannot deadlock.
/// Blocking; callers run it on a blocking thread while they hold the chain lock.
pub fn settle(
    store: &ImageStore,
    chain: Digest,
    tmp: TmpSnapshot,
    links: Vec<LowerLink>,
    fetched: u64,
) -> Result<Prepared> {
    if !links.is_empty() {
        return Ok(Prepared {
            chain,
            tmp: Some((tmp, links)),
            fetched,
        });
    }
    store.sync_snapshots()?;
    store.snapshots.commit(tmp, &chain)?;
    Ok(Prepared {
        chain,
        tmp: None,
        fetched,
    })
}

/// Reads through `inner` and hashes what passes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> std::fmt::Debug for HashingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashingReader")
    }
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }
    pub fn digest(self) -> Digest {
        Digest::from_hasher(self.hasher)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Decompresses `source` by its magic bytes, unpacks it into `tmp` and checks the
/// uncompressed digest against the job's diff ID. Reads `source` to its end.
pub fn unpack_layer(
    source: &mut dyn Read,
    tmp: &TmpSnapshot,
    job: &LayerJob,
    opts: UnpackOptions,
) -> Result<Vec<LowerLink>> {
    let mut br = BufReader::with_capacity(64 << 10, source);
    let magic = br.fill_buf().map_err(|e| io_err(job, "read layer", e))?;
    let decompressed: Box<dyn Read + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(br))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(br)
                .map_err(|e| Error::invalid(&job.object, format!("zstd: {e}")))?,
        )
    } else {
        Box::new(br)
    };
    let mut capped = Capped {
        inner: decompressed,
        total: &job.unpacked,
        cap: opts.max_image_bytes,
        added: 0,
        over: false,
    };
    let mut hashed = HashingReader::new(&mut capped);
    let out = unpack(&mut hashed, tmp.path(), &job.object, opts).and_then(|out| {
        // The tar end-of-archive padding belongs to the diff ID too.
        std::io::copy(&mut hashed, &mut std::io::sink())
            .map_err(|e| io_err(job, "read layer", e))?;
        Ok(out)
    });
    let actual = hashed.digest();
    if out.is_err() && !capped.over {
        // A download that broke is tried again: its bytes will be counted again.
        job.unpacked.fetch_sub(capped.added, Ordering::Relaxed);
    }
    if capped.over {
        // The caller drops `tmp`, and with it everything this layer wrote.
        return Err(Error::TooLarge {
            object: job.object.clone(),
            cap: opts.max_image_bytes.unwrap_or(0),
        });
    }
    let out = out?;
    if actual != job.diff_id {
        return Err(Error::DigestMismatch {
            object: format!("{} (uncompressed layer, diff ID)", job.object),
            expected: job.diff_id.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(out.lower_links)
}

/// Counts the uncompressed bytes of an image's layers and fails the read that passes the
/// cap, so a decompression bomb stops at the cap instead of filling the disk.
struct Capped<'a, R> {
    inner: R,
    total: &'a AtomicU64,
    cap: Option<u64>,
    /// What this layer's read added to `total`.
    added: u64,
    over: bool,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.added += n as u64;
        let total = self.total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if self.cap.is_some_and(|cap| total > cap) {
            self.over = true;
            return Err(std::io::Error::other("past the cap on the unpacked size"));
        }
        Ok(n)
    }
}

fn io_err(job: &LayerJob, op: &'static str, source: std::io::Error) -> Error {
    Error::Unpack {
        layer: job.object.clone(),
        entry: "<stream>".into(),
        op,
        source,
    }
}

/// Unpacks a layer whose blob is already in the content store.
pub async fn prepare_from_blob(store: &Arc<ImageStore>, job: LayerJob) -> Result<Prepared> {
    let guard = store
        .locks
        .lock(&format!("chain-{}", job.chain.hex()))
        .await?;
    if store.snapshots.has(&job.chain) {
        return Ok(Prepared {
            chain: job.chain,
            tmp: None,
            fetched: 0,
        });
    }
    unpack_stored(store, job, guard).await
}

/// Unpacks a stored blob into a temp snapshot, under the chain lock the caller holds.
pub async fn unpack_stored(
    store: &Arc<ImageStore>,
    job: LayerJob,
    guard: LockGuard,
) -> Result<Prepared> {
    let s = store.clone();
    let chain = job.chain.clone();
    let prepared = tokio::task::spawn_blocking(move || -> Result<_> {
        let path = s.content.path(&job.blob);
        let mut f = std::fs::File::open(&path).map_err(Error::io("open blob", &path))?;
        let tmp = s.snapshots.temp()?;
        let links = unpack_layer(&mut f, &tmp, &job, s.unpack)?;
        settle(&s, job.chain, tmp, links, 0)
    })
    .await
    .map_err(|e| Error::Task {
        object: chain.to_string(),
        reason: e.to_string(),
    })??;
    drop(guard);
    Ok(prepared)
}

/// Commits the layers left waiting, bottom-up: their hardlinks into lower layers are
/// resolved against the parents (in place by now), the files flushed, then each temp dir
/// renamed to its chain ID (a concurrent pull that got there first wins).
pub async fn commit_chain(store: &Arc<ImageStore>, prepared: Vec<Prepared>) -> Result<()> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        if prepared.iter().any(|p| p.tmp.is_some()) {
            s.sync_snapshots()?;
        }
        let chains: Vec<Digest> = prepared.iter().map(|p| p.chain.clone()).collect();
        for (i, p) in prepared.into_iter().enumerate() {
            if let Some((tmp, links)) = p.tmp {
                if !links.is_empty() {
                    let parents: Vec<_> = chains[..i]
                        .iter()
                        .rev()
                        .map(|c| s.snapshots.path(c))
                        .collect();
                    resolve_lower_links(tmp.path(), &parents, &links, p.chain.as_str())?;
                }
                s.snapshots.commit(tmp, &p.chain)?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::Task {
        object: "commit snapshots".into(),
        reason: e.to_string(),
    })?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::snapshot::Snapshots;

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(6);
        h.set_uid(nix::unistd::geteuid().as_raw().into());
        h.set_gid(nix::unistd::getegid().as_raw().into());
        b.append_data(&mut h, "dir/file", &b"hello\n"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn gzip_zstd_and_plain_layers_unpack_and_verify() {
        let root = std::env::temp_dir().join(format!("berth-unit-layer-{}", std::process::id()));
        let snaps = Snapshots::open(&root).unwrap();
        let tar = tar_bytes();
        let diff_id = Digest::of(&tar);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            &tar[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        for (name, blob) in [
            ("gzip", gz.finish().unwrap()),
            ("zstd", zst),
            ("plain", tar.clone()),
        ] {
            let job = LayerJob {
                blob: Digest::of(&blob),
                size: Some(blob.len() as u64),
                diff_id: diff_id.clone(),
                chain: diff_id.clone(),
                object: name.into(),
                unpacked: Arc::default(),
            };
            let tmp = snaps.temp().unwrap();
            unpack_layer(&mut &blob[..], &tmp, &job, UnpackOptions::default()).unwrap();
            assert_eq!(
                std::fs::read(tmp.path().join("dir/file")).unwrap(),
                b"hello\n",
                "{name}"
            );
            let wrong = LayerJob {
                diff_id: Digest::of(b"other"),
                ..job
            };
            let tmp = snaps.temp().unwrap();
            let err = unpack_layer(&mut &blob[..], &tmp, &wrong, UnpackOptions::default());
            assert!(
                matches!(err, Err(Error::DigestMismatch { .. })),
                "{name}: {err:?}"
            );
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_layer_past_the_cap_is_refused_and_leaves_nothing() {
        let root = std::env::temp_dir().join(format!("berth-unit-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let snaps = Snapshots::open(&root).unwrap();
        // 4 MiB of zeros: a few KiB gzipped, a decompression bomb in miniature.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(4 << 20);
        h.set_uid(nix::unistd::geteuid().as_raw().into());
        h.set_gid(nix::unistd::getegid().as_raw().into());
        b.append_data(&mut h, "zeros", std::io::repeat(0).take(4 << 20))
            .unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let blob = gz.finish().unwrap();
        assert!(blob.len() < 64 << 10);
        let job = LayerJob {
            blob: Digest::of(&blob),
            size: Some(blob.len() as u64),
            diff_id: Digest::of(&tar),
            chain: Digest::of(&tar),
            object: "example.com/bomb:1 layer 1234".into(),
            unpacked: Arc::default(),
        };
        let capped = UnpackOptions {
            max_image_bytes: Some(1 << 20),
            ..Default::default()
        };
        let tmp = snaps.temp().unwrap();
        let err = unpack_layer(&mut &blob[..], &tmp, &job, capped).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::TooLarge { cap: 1048576, .. }), "{msg}");
        assert!(msg.contains("example.com/bomb:1 layer 1234") && msg.contains("1048576"));
        drop(tmp);
        let left: Vec<_> = std::fs::read_dir(root.join("snapshots")).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");

        // The same layer under a cap it fits, counted afresh for another image.
        let fits = UnpackOptions {
            max_image_bytes: Some(8 << 20),
            ..Default::default()
        };
        let job = LayerJob {
            unpacked: Arc::default(),
            ..job
        };
        let tmp = snaps.temp().unwrap();
        unpack_layer(&mut &blob[..], &tmp, &job, fits).unwrap();
        // A second layer of the same image counts on top of the first.
        let tmp2 = snaps.temp().unwrap();
        let err = unpack_layer(&mut &blob[..], &tmp2, &job, fits).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
