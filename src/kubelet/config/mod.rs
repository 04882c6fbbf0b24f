//! The pod sources of the kubelet in standalone mode (pkg/kubelet/config): the static pod
//! directory and the files given on the command line (watched with inotify, re-read every
//! `file_period`), and manifest URLs (polled every `url_period`). Each source reads YAML
//! streams of v1 Pods, ConfigMaps and Secrets; pods are defaulted as the API server
//! defaults them, treated as kubelet treats static pods, validated, and merged into one
//! [`Desired`] snapshot published on a watch channel whenever it changes.
//!
//! Owns reading manifests and the tasks that watch them; never touches pods, containers or
//! the runtime. Bad input never stops a source: every rejected document is in
//! `Desired.errors`, the rest still loads.
//!
//! ```text
//! API server (list + watch) ------\
//! file / dir (inotify + period) --\
//! static pod dir (inotify + period) ---> SourceSet per source --> merge (SET per source,
//! URL (period) -------------------/       decode -> default ->     dedupe by UID and name)
//!                                          static pod -> validate    --> watch<Arc<Desired>>
//! ```

pub mod apiserver;
mod defaults;
mod error;
mod file;
mod manifest;
mod merge;
mod parse;
mod quantity;
mod static_pod;
mod url;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use super::objects::Objects;
pub use defaults::DEFAULT_VOLUME_MODE;
pub use error::{ConfigError, ManifestError};
pub use static_pod::{HASH_ANNOTATION, SEEN_ANNOTATION, SourceKind};

/// The annotation naming where a pod came from: "file" or "http".
pub const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

/// kubelet's default --file-check-frequency and --http-check-frequency.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(20);

/// Where the kubelet reads its pods from.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub node_name: String,
    /// The static pod directory, watched with inotify.
    pub manifest_dir: Option<PathBuf>,
    /// Files or directories given on the command line, watched too.
    pub paths: Vec<PathBuf>,
    /// Manifest URLs, polled.
    pub urls: Vec<String>,
    /// kubelet's --http-check-frequency.
    pub url_period: Duration,
    /// kubelet's --file-check-frequency: the full re-read behind inotify.
    pub file_period: Duration,
    /// The API server: the pods bound to this node.
    pub api: Option<ApiSource>,
}

/// The API server source's client, and where it publishes the API's view of the node's
/// pods (mirror pods and pods it will not run included).
#[derive(Clone)]
pub struct ApiSource {
    pub client: kube::Client,
    pub view: watch::Sender<Arc<apiserver::ApiView>>,
}

impl std::fmt::Debug for ApiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSource").finish_non_exhaustive()
    }
}

impl SourceConfig {
    /// No source yet, kubelet's default periods.
    pub fn new(node_name: impl Into<String>) -> Self {
        SourceConfig {
            node_name: node_name.into(),
            manifest_dir: None,
            paths: Vec::new(),
            urls: Vec::new(),
            url_period: DEFAULT_PERIOD,
            file_period: DEFAULT_PERIOD,
            api: None,
        }
    }
}

/// The merged desired state, a full snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// By metadata.uid, defaulted and validated; shared with the workers, which hold
    /// the same objects.
    pub pods: BTreeMap<String, Arc<Pod>>,
    /// ConfigMaps and Secrets from the same streams.
    pub objects: Objects,
    /// Every rejected document, with file, object and field.
    pub errors: Vec<ManifestError>,
}

/// What one stream holds, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub pods: Vec<Arc<Pod>>,
    pub objects: Objects,
    pub errors: Vec<ManifestError>,
}

/// Parses a manifest stream read from `source` (a file path, or an http(s) URL, which
/// decides the source annotation and the UID's hash) for the node `node_name`. Pure.
pub fn parse_manifests(source: &str, bytes: &[u8], node_name: &str) -> Parsed {
    let set = parse::parse_documents(source, bytes, node_name);
    let (pods, objects, errors) = parse::join([&set]);
    Parsed {
        pods,
        objects,
        errors,
    }
}

/// The running sources; dropping it stops them.
#[derive(Debug)]
pub struct PodConfig {
    tasks: Vec<JoinHandle<()>>,
}

impl PodConfig {
    /// Starts one task per source and the merge. The receiver's first value is an empty
    /// `Desired` that `changed()` does not report; the first reported one holds every
    /// source's first read. Must be called within a tokio runtime.
    pub fn start(
        cfg: SourceConfig,
    ) -> Result<(PodConfig, watch::Receiver<Arc<Desired>>), ConfigError> {
        if cfg.node_name.is_empty() {
            return Err(ConfigError::EmptyNodeName);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConfigError::NoRuntime)?;
        for url in &cfg.urls {
            let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            if !["http", "https"].contains(&parsed.scheme()) {
                let reason = "only http and https are fetched".to_string();
                return Err(ConfigError::BadUrl {
                    url: url.clone(),
                    reason,
                });
            }
        }
        let client = reqwest::Client::builder()
            .timeout(url::FETCH_TIMEOUT)
            .build()
            .map_err(ConfigError::HttpClient)?;
        let paths: Vec<PathBuf> = cfg.manifest_dir.iter().chain(&cfg.paths).cloned().collect();
        let (update_tx, update_rx) = mpsc::unbounded_channel();
        let (desired_tx, desired_rx) = watch::channel(Arc::new(Desired::default()));
        let sources = paths.len() + cfg.urls.len() + usize::from(cfg.api.is_some());
        if sources == 0 {
            // Nothing will ever arrive: publish the empty state as the complete one.
            desired_tx.send_replace(Arc::new(Desired::default()));
        }
        let mut tasks = vec![runtime.spawn(merge::run(
            merge::Merger::new(sources),
            update_rx,
            desired_tx,
        ))];
        for (id, path) in paths.into_iter().enumerate() {
            let task = file::run(
                path,
                cfg.node_name.clone(),
                cfg.file_period,
                id,
                update_tx.clone(),
            );
            tasks.push(runtime.spawn(task));
        }
        let first_url = sources - cfg.urls.len() - usize::from(cfg.api.is_some());
        for (i, u) in cfg.urls.into_iter().enumerate() {
            let task = url::run(
                u,
                cfg.node_name.clone(),
                cfg.url_period,
                client.clone(),
                first_url + i,
                update_tx.clone(),
            );
            tasks.push(runtime.spawn(task));
        }
        if let Some(api) = cfg.api {
            let task = apiserver::run(
                api.client,
                cfg.node_name.clone(),
                sources - 1,
                update_tx.clone(),
                api.view,
            );
            tasks.push(runtime.spawn(task));
        }
        Ok((PodConfig { tasks }, desired_rx))
    }
}

impl Drop for PodConfig {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
