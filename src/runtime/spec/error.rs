//! The error of the CRI-to-OCI translation: which object, which CRI field, why.

use std::path::PathBuf;

/// How the CRI service reports a [`SpecError`] (it maps these to gRPC status codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or contradicts itself (gRPC InvalidArgument).
    InvalidArgument,
    /// The request is well-formed but this host or runtime cannot honour it, or a
    /// policy refuses it (gRPC FailedPrecondition).
    FailedPrecondition,
    /// Looking something up on the host failed (gRPC Internal, or NotFound for a missing
    /// device node; see [`SpecError::kind`]).
    Host,
}

/// Why a CRI request cannot become an OCI spec or a sandbox plan.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A request field is invalid; `field` is its CRI path (e.g.
    /// `linux.security_context.capabilities.add_capabilities[1]`).
    #[error("{object}: field {field}: {reason}")]
    Invalid {
        object: String,
        field: String,
        reason: String,
    },
    /// A valid request this host or berth cannot honour (no AppArmor, no SELinux, ...).
    #[error("{object}: field {field}: {reason}")]
    Unsupported {
        object: String,
        field: String,
        reason: String,
    },
    /// The run-as-non-root policy refuses the container (kubelet's verifyRunAsNonRoot).
    #[error("{0}")]
    NonRoot(String),
    /// A host lookup for a field failed (a device node, a mount's propagation).
    #[error("{object}: field {field}: {path}: {source}")]
    Host {
        object: String,
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SpecError {
    pub(crate) fn invalid(
        object: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            object: object.to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn unsupported(
        object: &str,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Unsupported {
            object: object.to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The class of error, for the gRPC layer.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::InvalidArgument,
            Self::Unsupported { .. } | Self::NonRoot(_) => ErrorKind::FailedPrecondition,
            Self::Host { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::InvalidArgument
            }
            Self::Host { .. } => ErrorKind::Host,
        }
    }

    /// The CRI field the error names, when it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. }
            | Self::Unsupported { field, .. }
            | Self::Host { field, .. } => Some(field),
            Self::NonRoot(_) => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, SpecError>;
