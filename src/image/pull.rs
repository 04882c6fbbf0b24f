//! Registry pull: resolve the reference to a manifest (choosing this platform from an
//! index), fetch the config, then every layer in parallel. Each layer streams from the
//! network through one pass that writes the blob into the content store and, at the same
//! time, decompresses and unpacks it into a temp snapshot; the snapshot is committed only
//! once both the blob digest and the diff ID verified. A blob left half-written by an
//! interrupted pull is resumed with a range request.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use super::content::Ingest;
use super::digest::Digest;
use super::error::{Error, Result};
use super::layer::{LayerJob, Prepared, commit_chain, settle, unpack_layer, unpack_stored};
use super::manifest::{self, Document};
use super::metadata::ImageRecord;
use super::progress::Progress;
use super::reference::Reference;
use super::registry::client::range_start;
use super::registry::{Credentials, RegistryClient, RegistryHosts};
use super::store::ImageStore;

/// Layers downloaded at once by default. Each running download holds up to about 1 MiB
/// of HTTP read buffers (hyper's adaptive buffer, which reqwest cannot cap), so this
/// bounds a pull's memory. Two trades speed for memory: in the image bench, 3 (as
/// containerd) took about 20% less time but peaked about 0.4 MiB higher, level with
/// containerd's own growth. `--max-concurrent-downloads` raises it.
pub const DEFAULT_MAX_CONCURRENT: u16 = 2;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub credentials: Option<Credentials>,
    /// `(os, architecture)` to select from an index.
    pub platform: (String, String),
    /// Layers downloaded at once.
    pub max_concurrent: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        let (os, arch) = manifest::host_platform();
        Self {
            credentials: None,
            platform: (os.into(), arch.into()),
            max_concurrent: DEFAULT_MAX_CONCURRENT.into(),
        }
    }
}

/// Pulls `reference` into the store and records it.
pub async fn pull(
    store: &Arc<ImageStore>,
    hosts: &RegistryHosts,
    reference: &str,
    opts: &PullOptions,
    progress: &Progress,
) -> Result<ImageRecord> {
    let r = Reference::parse(reference)?;
    super::alloc::pin_mmap_threshold();
    let _gc = store.locks.gc_shared().await?;
    let client = Arc::new(RegistryClient::new(
        hosts,
        &r.registry,
        &r.repository,
        opts.credentials.clone(),
    )?);
    let object = r.to_string();

    let top = client.manifest(&r.manifest_ref()).await?;
    let repo_digest = top.digest.clone();
    store.content.write(&top.digest, &top.bytes, &object)?;
    let (md, mbytes) = match manifest::parse(&top.bytes, top.content_type.as_deref(), &object)? {
        Document::Manifest(_) => (top.digest, top.bytes),
        Document::Index(index) => {
            let (chosen, _) =
                manifest::select(&index, &opts.platform.0, &opts.platform.1, &object)?;
            let m = client.manifest(chosen.as_str()).await?;
            store.content.write(&m.digest, &m.bytes, &object)?;
            (m.digest, m.bytes)
        }
    };
    let Document::Manifest(m) = manifest::parse(&mbytes, None, &format!("{object} manifest {md}"))?
    else {
        return Err(Error::invalid(
            &object,
            format!("{md} is an index inside an index"),
        ));
    };
    let cd = Digest::try_from(m.config().digest())?;
    let config = if store.content.has(&cd) {
        store.content.read(&cd)?
    } else {
        let b = client.small_blob(&cd).await?;
        store.content.write(&cd, &b, &object)?;
        b
    };
    let plan = manifest::plan(md, mbytes.len() as u64, &m, &config, &object)?;

    progress.set_total(plan.jobs.iter().filter_map(|j| j.size).sum());
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent.max(1)));
    let mut tasks = Vec::new();
    for job in plan.jobs.clone() {
        let (s, c, sem, p) = (store.clone(), client.clone(), sem.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| Error::Task {
                object: job.object.clone(),
                reason: e.to_string(),
            })?;
            fetch_layer(&s, &c, job, &p).await
        }));
    }
    let mut prepared = Vec::new();
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok(p)) => prepared.push(p),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::Task {
                    object: object.clone(),
                    reason: e.to_string(),
                });
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    commit_chain(store, prepared).await?;
    let rec = store
        .record(
            &plan,
            r.tagged().into_iter().collect(),
            vec![format!("{}@{repo_digest}", r.name())],
        )
        .await?;
    progress.finish();
    Ok(rec)
}

/// Fetches and unpacks one layer, resuming and retrying transfers that break.
async fn fetch_layer(
    store: &Arc<ImageStore>,
    client: &Arc<RegistryClient>,
    job: LayerJob,
    progress: &Progress,
) -> Result<Prepared> {
    let guard = store
        .locks
        .lock(&format!("chain-{}", job.chain.hex()))
        .await?;
    if store.snapshots.has(&job.chain) {
        progress.inc(job.size.unwrap_or(0));
        progress.step(&format!("{}: already present", job.object));
        return Ok(Prepared {
            chain: job.chain,
            tmp: None,
            fetched: 0,
        });
    }
    let _blob = store
        .locks
        .lock(&format!("blob-{}", job.blob.hex()))
        .await?;
    if store.content.has(&job.blob) {
        progress.inc(job.size.unwrap_or(0));
        return unpack_stored(store, job, guard).await;
    }
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match stream_layer(store, client, &job, progress).await {
            Ok(prepared) => {
                drop(guard);
                let fetched = prepared.fetched;
                progress.step(&format!("{}: done ({fetched} bytes)", job.object));
                return Ok(prepared);
            }
            Err(Failure::Retry(e)) if attempt < 4 => {
                tracing::warn!(layer = %job.object, attempt, "download interrupted, resuming: {e}");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            Err(Failure::Retry(e) | Failure::Fatal(e)) => return Err(e),
        }
    }
}

/// A failed layer transfer: `Retry` when the network broke (the ingest keeps what
/// arrived, and the next attempt resumes), `Fatal` when the bytes were wrong or hostile.
enum Failure {
    Retry(Error),
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match &e {
            Error::Http { .. } => Failure::Retry(e),
            Error::Registry { status, .. } if *status >= 500 || *status == 429 => Failure::Retry(e),
            _ => Failure::Fatal(e),
        }
    }
}

async fn stream_layer(
    store: &Arc<ImageStore>,
    client: &RegistryClient,
    job: &LayerJob,
    progress: &Progress,
) -> std::result::Result<Prepared, Failure> {
    let s = store.clone();
    let j = job.clone();
    let mut ingest =
        tokio::task::spawn_blocking(move || s.content.ingest(&j.blob, j.size, &j.object))
            .await
            .map_err(|e| Error::Task {
                object: job.object.clone(),
                reason: e.to_string(),
            })??;
    let mut offset = ingest.offset();
    let mut resp = client.blob(&job.blob, offset).await?;
    if offset > 0 {
        if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT
            && range_start(&resp) == Some(offset)
        {
            tracing::info!(layer = %job.object, offset, "resuming an interrupted download");
        } else {
            ingest.restart()?;
            offset = 0;
            if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
                resp = client.blob(&job.blob, 0).await?;
            }
        }
    }
    progress.inc(offset);
    // One blocking thread per layer reads the response itself (through the runtime's
    // handle), writes each chunk to the ingest and unpacks it, then drops it: one chunk
    // in flight per layer, so memory stays flat however slow the disk is.
    let s = store.clone();
    let j = job.clone();
    let p = progress.clone();
    let handle = tokio::runtime::Handle::current();
    let registry = client.registry().to_string();
    tokio::task::spawn_blocking(move || -> std::result::Result<_, Failure> {
        let tmp = s.snapshots.temp()?;
        let mut tee = Tee::new(ingest, resp, handle, p)?;
        let unpacked = unpack_layer(&mut tee, &tmp, &j, s.unpack);
        let (ingest, rest, net_err, fetched) = tee.finish();
        if let Some(source) = net_err {
            // The ingest keeps what arrived; the next attempt resumes from there.
            return Err(Failure::Retry(Error::Http {
                registry,
                url: j.blob.to_string(),
                source,
            }));
        }
        match (unpacked, rest) {
            (Ok(links), Ok(())) => {
                ingest.commit()?;
                Ok(settle(&s, j.chain.clone(), tmp, links, fetched)?)
            }
            (Err(e), _) | (_, Err(e)) => {
                // Wrong bytes usually break decompression or the tar first; the whole
                // blob has been read by now, so name the root cause when it is the digest.
                let checked = ingest.check();
                ingest.discard();
                Err(Failure::Fatal(checked.err().unwrap_or(e)))
            }
        }
    })
    .await
    .map_err(|e| {
        Failure::Fatal(Error::Task {
            object: job.object.clone(),
            reason: e.to_string(),
        })
    })?
}

/// Feeds the unpacker from the ingest file: what an interrupted download left first,
/// then each response chunk once it has been hashed and appended to the ingest. The
/// chunk is dropped as soon as it is written, so the HTTP client's buffer is freed at
/// once instead of living while the unpacker works through it; the unpacker reads the
/// same bytes back from the page cache (the diff ID check covers what it read).
struct Tee {
    ingest: Ingest,
    file: std::fs::File,
    resp: reqwest::Response,
    handle: tokio::runtime::Handle,
    progress: Progress,
    net_err: Option<reqwest::Error>,
    fetched: u64,
}

impl Tee {
    fn new(
        ingest: Ingest,
        resp: reqwest::Response,
        handle: tokio::runtime::Handle,
        progress: Progress,
    ) -> Result<Self> {
        let p = ingest.path().to_path_buf();
        let file = std::fs::File::open(&p).map_err(Error::io("open ingest", &p))?;
        Ok(Self {
            ingest,
            file,
            resp,
            handle,
            progress,
            net_err: None,
            fetched: 0,
        })
    }

    /// Reads the rest of the stream into the ingest (the compressed tail after the tar).
    fn finish(mut self) -> (Ingest, Result<()>, Option<reqwest::Error>, u64) {
        let mut sink = vec![0u8; 64 << 10];
        let r = loop {
            match self.read(&mut sink) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(Error::io("download", self.ingest.path())(e)),
            }
        };
        (self.ingest, r, self.net_err, self.fetched)
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            // A regular file reads 0 only at its current end; appending makes more readable.
            let n = self.file.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            if self.net_err.is_some() {
                return Err(std::io::Error::from(std::io::ErrorKind::ConnectionAborted));
            }
            match self.handle.block_on(self.resp.chunk()) {
                Ok(Some(c)) => {
                    self.ingest.write(&c).map_err(std::io::Error::other)?;
                    self.fetched += c.len() as u64;
                    self.progress.inc(c.len() as u64);
                }
                Ok(None) => return Ok(0),
                Err(e) => {
                    let msg = e.to_string();
                    self.net_err = Some(e);
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        msg,
                    ));
                }
            }
        }
    }
}
