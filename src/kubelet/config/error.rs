//! The errors of the pod sources: a rejected document ([`ManifestError`], collected into
//! `Desired.errors`, never fatal) and a source that cannot start at all ([`ConfigError`]).

use std::fmt;

/// One rejected document (or a whole file that could not be read or parsed), as the user
/// sees it: `web.yaml: Pod "web": spec.containers[0].image: Required value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The file path or URL the document came from.
    pub file: String,
    /// `Pod "web"`, `Secret "kube-system/token"`, or `document 2` for an object without a
    /// name; empty when the whole file failed.
    pub object: String,
    /// What is wrong, led by the field path when there is one.
    pub detail: String,
}

impl ManifestError {
    pub fn new(file: &str, object: &str, detail: impl Into<String>) -> Self {
        ManifestError {
            file: file.to_string(),
            object: object.to_string(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if !self.object.is_empty() {
            write!(f, ": {}", self.object)?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl std::error::Error for ManifestError {}

/// A source that cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("node name is empty: static pods are named and hashed after the node")]
    EmptyNodeName,
    #[error("the pod sources run as tokio tasks: start them within a tokio runtime")]
    NoRuntime,
    #[error("manifest URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("HTTP client for manifest URLs: {0}")]
    HttpClient(#[source] reqwest::Error),
}
