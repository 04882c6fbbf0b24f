//! The content store: sha256-addressed blobs under `content/blobs/sha256/<hex>`.
//!
//! Bytes arrive through an [`Ingest`], which hashes them as they are written into
//! `content/ingest/<hex>`; only a blob whose digest and size match is fsynced and renamed
//! into place, so a blob file, once it exists, always holds exactly its digest's bytes.
//! An ingest left by an interrupted pull is resumed (its bytes re-hashed, the rest
//! fetched); one whose bytes turn out wrong is removed. This module owns those two
//! directories and nothing else.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::{Error, Result};

/// The largest manifest, index or config berth reads into memory.
pub const MAX_JSON_BLOB: u64 = 8 << 20;

#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store under `root/content`.
    pub fn open(root: &Path) -> Result<Self> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        for d in [&blobs, &ingest] {
            std::fs::create_dir_all(d).map_err(Error::io("create", d))?;
        }
        Ok(Self { blobs, ingest })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.path(d).is_file()
    }

    /// Size of a stored blob.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        std::fs::metadata(self.path(d)).ok().map(|m| m.len())
    }

    /// Starts or resumes writing the blob `digest` of `size` bytes (when known).
    pub fn ingest(&self, digest: &Digest, size: Option<u64>, object: &str) -> Result<Ingest> {
        Ingest::open(self, digest.clone(), size, object.to_string())
    }

    /// Stores `bytes` as the blob `digest`, verifying them.
    pub fn write(&self, digest: &Digest, bytes: &[u8], object: &str) -> Result<()> {
        if self.has(digest) {
            return Ok(());
        }
        let actual = Digest::of(bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                object: object.to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        // A private temp file: concurrent writers of the same small blob never share
        // one, and the last rename wins with identical bytes.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .ingest
            .join(format!("small-{}-{}-{n}", digest.hex(), std::process::id()));
        let mut f = File::create(&tmp).map_err(Error::io("create ingest", &tmp))?;
        if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("write ingest", &tmp)(e));
        }
        let target = self.path(digest);
        std::fs::rename(&tmp, &target).map_err(Error::io("commit blob", &target))?;
        sync_dir(&self.blobs)
    }

    /// Stores `bytes` under their own digest and returns it.
    pub fn put(&self, bytes: &[u8], object: &str) -> Result<Digest> {
        let d = Digest::of(bytes);
        self.write(&d, bytes, object)?;
        Ok(d)
    }

    /// Stores whatever `reader` yields under the digest of those bytes.
    pub fn write_unknown(&self, reader: &mut dyn Read, object: &str) -> Result<(Digest, u64)> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .ingest
            .join(format!("unknown-{}-{n}", std::process::id()));
        let mut f = File::create(&tmp).map_err(Error::io("create ingest", &tmp))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let k = reader.read(&mut buf).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::io("read", object)(e)
            })?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            f.write_all(&buf[..k])
                .map_err(Error::io("write ingest", &tmp))?;
            size += k as u64;
        }
        let d = Digest::from_hasher(h);
        if self.has(&d) {
            let _ = std::fs::remove_file(&tmp);
            return Ok((d, size));
        }
        f.sync_all().map_err(Error::io("fsync ingest", &tmp))?;
        let target = self.path(&d);
        std::fs::rename(&tmp, &target).map_err(Error::io("commit blob", &target))?;
        sync_dir(&self.blobs)?;
        Ok((d, size))
    }

    /// Copies `reader` in as the blob `digest`, verifying it on the way.
    pub fn copy_in(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
        object: &str,
    ) -> Result<()> {
        if self.has(digest) {
            return Ok(());
        }
        let mut w = self.ingest(digest, size, object)?;
        w.restart()?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let k = reader
                .read(&mut buf)
                .map_err(|e| Error::io("read", object)(e))?;
            if k == 0 {
                break;
            }
            w.write(&buf[..k])?;
        }
        w.commit()
    }

    /// Reads a small blob (manifest, index, config) whole, re-verifying it.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.path(d);
        let f = File::open(&p).map_err(Error::io("open blob", &p))?;
        let mut buf = Vec::new();
        f.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut buf)
            .map_err(Error::io("read blob", &p))?;
        if buf.len() as u64 > MAX_JSON_BLOB {
            return Err(Error::invalid(
                d.to_string(),
                "blob too large to read as JSON",
            ));
        }
        let actual = Digest::of(&buf);
        if &actual != d {
            return Err(Error::DigestMismatch {
                object: p.display().to_string(),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(buf)
    }

    /// Every stored blob digest.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let rd = std::fs::read_dir(&self.blobs).map_err(Error::io("list", &self.blobs))?;
        Ok(rd
            .filter_map(|e| e.ok())
            .filter_map(|e| Digest::from_hex(&e.file_name().to_string_lossy()).ok())
            .collect())
    }

    /// Re-hashes every blob; returns the ones whose bytes do not match their name.
    pub fn verify(&self) -> Result<Vec<Digest>> {
        let mut bad = Vec::new();
        for d in self.list()? {
            let p = self.path(&d);
            let mut f = File::open(&p).map_err(Error::io("open blob", &p))?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h).map_err(Error::io("read blob", &p))?;
            if Digest::from_hasher(h) != d {
                bad.push(d);
            }
        }
        Ok(bad)
    }

    pub fn remove(&self, d: &Digest) -> Result<()> {
        let p = self.path(d);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove blob", &p)(e))
            }
            _ => Ok(()),
        }
    }

    /// Ingests that are not being written (for GC: an interrupted pull's leftovers).
    pub fn ingests(&self) -> Result<Vec<PathBuf>> {
        let rd = std::fs::read_dir(&self.ingest).map_err(Error::io("list", &self.ingest))?;
        Ok(rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
    }
}

/// A blob being written: hashed as it goes, committed only when it verifies.
#[derive(Debug)]
pub struct Ingest {
    file: File,
    path: PathBuf,
    target: PathBuf,
    blobs: PathBuf,
    digest: Digest,
    size: Option<u64>,
    hasher: Sha256,
    written: u64,
    resumed_from: u64,
    object: String,
}

impl Ingest {
    fn open(
        store: &ContentStore,
        digest: Digest,
        size: Option<u64>,
        object: String,
    ) -> Result<Self> {
        let path = store.ingest.join(digest.hex());
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(Error::io("open ingest", &path))?;
        // Resume: re-hash what an earlier, interrupted writer left.
        let mut hasher = Sha256::new();
        let written =
            std::io::copy(&mut file, &mut hasher).map_err(Error::io("read ingest", &path))?;
        let mut w = Self {
            file,
            target: store.path(&digest),
            blobs: store.blobs.clone(),
            path,
            digest,
            size,
            hasher,
            written,
            resumed_from: written,
            object,
        };
        if size.is_some_and(|s| written > s) {
            w.restart()?;
        }
        Ok(w)
    }

    /// Bytes already present (from an interrupted earlier write).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// The file the bytes are being written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where this writer picked up.
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// Drops what an earlier writer left and starts from byte 0.
    pub fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(Error::io("truncate ingest", &self.path))?;
        self.hasher = Sha256::new();
        self.written = 0;
        self.resumed_from = 0;
        Ok(())
    }

    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.written += buf.len() as u64;
        if let Some(size) = self.size.filter(|s| self.written > *s) {
            let _ = std::fs::remove_file(&self.path);
            return Err(Error::SizeMismatch {
                object: self.object.clone(),
                expected: size,
                actual: self.written,
            });
        }
        self.hasher.update(buf);
        self.file
            .write_all(buf)
            .map_err(Error::io("write ingest", &self.path))
    }

    /// Whether the bytes so far are exactly the blob (size and digest).
    pub fn check(&self) -> Result<()> {
        if let Some(size) = self.size.filter(|s| *s != self.written) {
            return Err(Error::SizeMismatch {
                object: self.object.clone(),
                expected: size,
                actual: self.written,
            });
        }
        let actual = Digest::from_hasher(self.hasher.clone());
        if actual != self.digest {
            return Err(Error::DigestMismatch {
                object: self.object.clone(),
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// Verifies the bytes against the digest and size; on success the blob is durable
    /// in the store, on failure nothing of it is left.
    pub fn commit(self) -> Result<()> {
        let actual = Digest::from_hasher(self.hasher.clone());
        let fail = |e: Error| {
            let _ = std::fs::remove_file(&self.path);
            Err(e)
        };
        if let Some(size) = self.size.filter(|s| *s != self.written) {
            return fail(Error::SizeMismatch {
                object: self.object.clone(),
                expected: size,
                actual: self.written,
            });
        }
        if actual != self.digest {
            return fail(Error::DigestMismatch {
                object: self.object.clone(),
                expected: self.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        self.file
            .sync_all()
            .map_err(Error::io("fsync ingest", &self.path))?;
        std::fs::rename(&self.path, &self.target)
            .map_err(Error::io("commit blob", &self.target))?;
        sync_dir(&self.blobs)
    }

    /// Abandons the write and removes its bytes (a failed, non-resumable transfer).
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("fsync dir", dir))
}

/// Writes `bytes` to `path` atomically and durably (see [`crate::store`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::store::write_file(path, bytes, crate::store::Durability::Durable)
        .map_err(Error::io("write state file", path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("berth-unit-content-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn wrong_bytes_leave_nothing() {
        let root = tmp("wrong");
        let cs = ContentStore::open(&root).unwrap();
        let d = Digest::of(b"right");
        assert!(matches!(
            cs.write(&d, b"wrong", "t"),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(!cs.has(&d));
        assert!(cs.ingests().unwrap().is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn interrupted_ingest_resumes() {
        let root = tmp("resume");
        let cs = ContentStore::open(&root).unwrap();
        let data = vec![7u8; 10_000];
        let d = Digest::of(&data);
        let mut w = cs.ingest(&d, Some(10_000), "t").unwrap();
        w.write(&data[..4000]).unwrap();
        drop(w);
        let mut w = cs.ingest(&d, Some(10_000), "t").unwrap();
        assert_eq!(w.offset(), 4000);
        w.write(&data[4000..]).unwrap();
        w.commit().unwrap();
        assert!(cs.has(&d));
        assert!(cs.verify().unwrap().is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }
}
