//! The runtime's one error type: every failure names the sandbox or container and the
//! field, and carries the class the CRI layer turns into a gRPC status code.

use super::holder::{ErrorCode, HolderError};
use super::meta::MetaError;
use crate::net::cni::CniError;

/// What the caller may do about a failure; the CRI layer maps it to a gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NotFound,
    InvalidArgument,
    AlreadyExists,
    FailedPrecondition,
    DeadlineExceeded,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("sandbox {sandbox}: {source}")]
    Holder {
        sandbox: String,
        #[source]
        source: Box<HolderError>,
    },
    #[error("sandbox {sandbox}: network: {source}")]
    Network {
        sandbox: String,
        #[source]
        source: Box<CniError>,
    },
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error("image {image}: {reason}")]
    Image {
        image: String,
        reason: String,
        not_found: bool,
    },
    #[error("{kind} {id}: {op} {path}: {source}")]
    Io {
        kind: &'static str,
        id: String,
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {container} is not running")]
    NotRunning { container: String },
    #[error("sandbox {sandbox} is not ready: {reason}")]
    NotReady { sandbox: String, reason: String },
    #[error("{0}")]
    Internal(String),
    /// Several steps of one teardown failed; each ran regardless of the others.
    #[error("{first} (and {} more failures: {})", rest.len(), rest.join("; "))]
    Many {
        first: Box<RuntimeError>,
        rest: Vec<String>,
    },
}

impl RuntimeError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn holder(sandbox: impl Into<String>, source: HolderError) -> Self {
        Self::Holder {
            sandbox: sandbox.into(),
            source: Box::new(source),
        }
    }

    pub fn network(sandbox: impl Into<String>, source: CniError) -> Self {
        Self::Network {
            sandbox: sandbox.into(),
            source: Box::new(source),
        }
    }

    /// The failures of a teardown whose every step ran: none is success, one is itself,
    /// more are all named, the first one's class deciding the code.
    pub fn all(mut failed: Vec<RuntimeError>) -> Result<()> {
        if failed.is_empty() {
            return Ok(());
        }
        let first = failed.remove(0);
        if failed.is_empty() {
            return Err(first);
        }
        Err(Self::Many {
            first: Box::new(first),
            rest: failed.iter().map(ToString::to_string).collect(),
        })
    }

    /// Whether the connection to a pod's holder failed (it could not be reached, or
    /// went away mid-call), rather than the holder refusing the request.
    pub fn lost_holder(&self) -> bool {
        matches!(self, Self::Holder { source, .. } if matches!(
            **source,
            HolderError::Io { .. } | HolderError::Closed { .. } | HolderError::Frame { .. }
        ))
    }

    pub fn code(&self) -> Code {
        match self {
            Self::Invalid { .. } => Code::InvalidArgument,
            Self::Meta(MetaError::NotFound { .. }) => Code::NotFound,
            Self::Meta(MetaError::NameReserved { .. }) => Code::AlreadyExists,
            Self::Meta(MetaError::EmptyId { .. } | MetaError::MissingField { .. }) => {
                Code::InvalidArgument
            }
            Self::Meta(MetaError::Ambiguous { .. }) => Code::InvalidArgument,
            Self::Meta(_) => Code::Internal,
            Self::Holder { source, .. } => match source.code() {
                Some(ErrorCode::NotFound) => Code::NotFound,
                Some(ErrorCode::AlreadyExists) => Code::AlreadyExists,
                Some(ErrorCode::InvalidArgument) => Code::InvalidArgument,
                Some(ErrorCode::FailedPrecondition) => Code::FailedPrecondition,
                Some(ErrorCode::DeadlineExceeded) => Code::DeadlineExceeded,
                _ => Code::Internal,
            },
            Self::Spec(e) => match e.kind() {
                super::spec::ErrorKind::InvalidArgument => Code::InvalidArgument,
                super::spec::ErrorKind::FailedPrecondition => Code::FailedPrecondition,
                super::spec::ErrorKind::Host => Code::Internal,
            },
            Self::Image { not_found, .. } => {
                if *not_found {
                    Code::NotFound
                } else {
                    Code::Internal
                }
            }
            Self::Network { .. } | Self::Internal(_) | Self::Io { .. } => Code::Internal,
            Self::NotReady { .. } | Self::NotRunning { .. } => Code::FailedPrecondition,
            Self::Many { first, .. } => first.code(),
        }
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;
