//! The invoker's error: which network, plugin and attachment failed, and why.

use std::path::PathBuf;

/// What went wrong in a CNI operation.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("no network configuration in {dir} (*.conflist, *.conf or *.json)")]
    NoConfig { dir: PathBuf },
    #[error("network configuration {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("plugin {plugin:?} not found in {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("plugin {plugin} {verb} for {container}: timed out after {secs}s (killed)")]
    Timeout {
        plugin: String,
        verb: &'static str,
        container: String,
        secs: u64,
    },
    #[error("plugin {plugin} {verb} for {container}: error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Plugin {
        plugin: String,
        verb: &'static str,
        container: String,
        code: u64,
        msg: String,
        details: String,
    },
    #[error("plugin {plugin} {verb} for {container}: {reason}")]
    BadOutput {
        plugin: String,
        verb: &'static str,
        container: String,
        reason: String,
    },
    #[error("run plugin {plugin}: {source}")]
    Spawn {
        plugin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("result cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid attachment: {0}")]
    BadAttachment(String),
    #[error("invalid argument: {0}")]
    BadArgument(String),
    #[error("write output: {0}")]
    Output(#[source] std::io::Error),
    #[error("{first} (and {} more failures: {})", rest.len(), rest.join("; "))]
    Many {
        first: Box<CniError>,
        rest: Vec<String>,
    },
}

impl CniError {
    /// Folds teardown errors into one, or `Ok` when there were none.
    pub fn all(mut errors: Vec<CniError>) -> Result<(), CniError> {
        if errors.is_empty() {
            return Ok(());
        }
        let first = errors.remove(0);
        if errors.is_empty() {
            return Err(first);
        }
        Err(CniError::Many {
            first: Box::new(first),
            rest: errors.iter().map(ToString::to_string).collect(),
        })
    }
}
