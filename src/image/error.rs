//! The image subsystem's error: every variant names the object it failed on.

use std::path::PathBuf;

/// An error from pulling, importing, storing, unpacking or collecting images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{object}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        object: String,
        expected: String,
        actual: String,
    },
    #[error("{object}: content is {actual} bytes, expected {expected}")]
    SizeMismatch {
        object: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest { value: String, reason: String },
    #[error("{object}: {reason}")]
    Invalid { object: String, reason: String },
    #[error("{object}: unsupported {what}")]
    Unsupported { object: String, what: String },
    #[error("registry {registry}: {url} answered {status}: {body}")]
    Registry {
        registry: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "registry {registry}: authentication failed: {reason} (check the credentials for this registry)"
    )]
    Auth { registry: String, reason: String },
    #[error("registry {registry}: request to {url} failed: {source}")]
    Http {
        registry: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    UnsafeLayer {
        layer: String,
        entry: String,
        reason: String,
    },
    #[error("layer {layer}: entry {entry:?}: {op}: {source}")]
    Unpack {
        layer: String,
        entry: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{object}: the image unpacks to more than {cap} bytes, the cap on an image's unpacked size (--max-unpacked-size); the layer was discarded"
    )]
    TooLarge { object: String, cap: u64 },
    #[error("no image matches {what:?}")]
    NotFound { what: String },
    #[error("{what:?} is ambiguous: it matches {matches}")]
    Ambiguous { what: String, matches: String },
    #[error("image {image} is in use by container(s) {containers}")]
    InUse { image: String, containers: String },
    #[error("mount overlay at {target}: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{object}: {source}")]
    Json {
        object: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("background task for {object} failed: {reason}")]
    Task { object: String, reason: String },
}

/// The image subsystem's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }

    pub(crate) fn invalid(object: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            object: object.into(),
            reason: reason.into(),
        }
    }
}
