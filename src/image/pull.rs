//! Registry pull: resolve the reference to a manifest (choosing this platform from an
//! index), fetch the config, then every layer in parallel. Each layer streams from the
//! network through one pass that writes the blob into the content store and, at the same
//! time, decompresses and unpacks it into a temp snapshot; the snapshot is committed only
//! once both the blob digest and the diff ID verified. A blob left half-written by an
//! interrupted pull is resumed with a range request.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::content::Ingest;
use super::digest::Digest;
use super::error::{Error, Result};
use super::layer::{LayerJob, Prepared, commit_chain, prepare_from_blob, unpack_layer};
use super::manifest::{self, Document};
use super::metadata::ImageRecord;
use super::progress::Progress;
use super::reference::Reference;
use super::registry::client::range_start;
use super::registry::{Credentials, RegistryClient, RegistryHosts};
use super::store::ImageStore;

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
            max_concurrent: 4,
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
            guard: None,
            fetched: 0,
        });
    }
    let _blob = store
        .locks
        .lock(&format!("blob-{}", job.blob.hex()))
        .await?;
    if store.content.has(&job.blob) {
        drop(guard);
        progress.inc(job.size.unwrap_or(0));
        return prepare_from_blob(store, job).await;
    }
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match stream_layer(store, client, &job, progress).await {
            Ok((tmp, links, fetched)) => {
                progress.step(&format!("{}: done ({fetched} bytes)", job.object));
                return Ok(Prepared {
                    chain: job.chain,
                    tmp: Some((tmp, links)),
                    guard: Some(guard),
                    fetched,
                });
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

type Chunk = std::result::Result<Bytes, String>;

async fn stream_layer(
    store: &Arc<ImageStore>,
    client: &RegistryClient,
    job: &LayerJob,
    progress: &Progress,
) -> std::result::Result<
    (
        super::snapshot::TmpSnapshot,
        Vec<super::unpack::LowerLink>,
        u64,
    ),
    Failure,
> {
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
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(64);
    let s = store.clone();
    let j = job.clone();
    let unpacker = tokio::task::spawn_blocking(move || -> (Result<_>, bool) {
        let tmp = match s.snapshots.temp() {
            Ok(t) => t,
            Err(e) => return (Err(e), false),
        };
        let mut tee = match Tee::new(ingest, rx) {
            Ok(t) => t,
            Err(e) => return (Err(e), false),
        };
        let unpacked = unpack_layer(&mut tee, &tmp, &j, s.unpack);
        let network_failed = tee.network_failed;
        let (ingest, rest) = tee.finish();
        match (unpacked, rest) {
            (Ok(links), Ok(())) => match ingest.commit() {
                Ok(()) => (Ok((tmp, links)), false),
                Err(e) => (Err(e), false),
            },
            (Err(e), _) | (_, Err(e)) if network_failed => (Err(e), true),
            (Err(e), _) | (_, Err(e)) => {
                // Wrong bytes usually break decompression or the tar first; the whole
                // blob has been read by now, so name the root cause when it is the digest.
                let checked = ingest.check();
                ingest.discard();
                (Err(checked.err().unwrap_or(e)), false)
            }
        }
    });
    let mut fetched = 0u64;
    let mut net_err = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                fetched += c.len() as u64;
                progress.inc(c.len() as u64);
                if tx.send(Ok(c)).await.is_err() {
                    break; // the unpacker stopped: its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                net_err = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let (res, network_failed) = unpacker.await.map_err(|e| Error::Task {
        object: job.object.clone(),
        reason: e.to_string(),
    })?;
    match res {
        Ok((tmp, links)) => Ok((tmp, links, fetched)),
        Err(e) if network_failed => Err(Failure::Retry(match net_err {
            Some(source) => Error::Http {
                registry: client.registry().into(),
                url: job.blob.to_string(),
                source,
            },
            None => e,
        })),
        Err(e) => Err(Failure::Fatal(e)),
    }
}

/// Replays the bytes an interrupted download left in the ingest, then passes network
/// chunks through to the reader while appending them to the ingest.
struct Tee {
    ingest: Ingest,
    prefix: Option<std::fs::File>,
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    pending: Bytes,
    network_failed: bool,
}

impl Tee {
    fn new(ingest: Ingest, rx: tokio::sync::mpsc::Receiver<Chunk>) -> Result<Self> {
        let prefix = if ingest.offset() > 0 {
            let p = ingest.path().to_path_buf();
            Some(std::fs::File::open(&p).map_err(Error::io("open ingest", &p))?)
        } else {
            None
        };
        Ok(Self {
            ingest,
            prefix,
            rx,
            pending: Bytes::new(),
            network_failed: false,
        })
    }

    /// Reads the rest of the stream into the ingest (the compressed tail after the tar).
    fn finish(mut self) -> (Ingest, Result<()>) {
        let mut sink = [0u8; 64 << 10];
        let r = loop {
            match self.read(&mut sink) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(Error::io("download", self.ingest.path())(e)),
            }
        };
        (self.ingest, r)
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(f) = &mut self.prefix {
            let n = f.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.prefix = None;
        }
        while self.pending.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => {
                    self.ingest.write(&c).map_err(std::io::Error::other)?;
                    self.pending = c;
                }
                Some(Err(e)) => {
                    self.network_failed = true;
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        e,
                    ));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        let _ = self.pending.split_to(n);
        Ok(n)
    }
}
