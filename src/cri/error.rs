//! The CRI service's error, and how each kind becomes a gRPC status: a caller's mistake
//! is `InvalidArgument` naming the field, a missing object `NotFound`, a refusal by the
//! store's rules `FailedPrecondition`; the message always says which object failed.

use tonic::{Code, Status};

use crate::image;

/// An error from a CRI call.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The request itself is wrong: `field` is the request field's path, as the CRI
    /// names it (e.g. `image.image`, `auth.auth`).
    #[error("{rpc}: invalid {field}: {reason}")]
    InvalidArgument {
        rpc: &'static str,
        field: &'static str,
        reason: String,
    },
    /// The image subsystem failed on the object it names.
    #[error("{rpc} {object}: {source}")]
    Image {
        rpc: &'static str,
        object: String,
        #[source]
        source: image::Error,
    },
    /// An error carried as a code and a message: a coalesced pull's error, shared by
    /// every caller waiting on it.
    #[error("{rpc} {object}: {message}")]
    Failed {
        rpc: &'static str,
        object: String,
        code: Code,
        message: String,
    },
    /// The in-process runtime failed; the error names the sandbox or container and field.
    #[error("{rpc}: {source}")]
    Runtime {
        rpc: &'static str,
        #[source]
        source: crate::runtime::error::RuntimeError,
    },
    /// A remote runtime answered with this status (or could not be reached): the code
    /// and message as they came, handed on unchanged.
    #[error("{rpc}: {code:?}: {message}")]
    Remote {
        rpc: &'static str,
        code: Code,
        message: String,
    },
    /// A blocking task died before it answered.
    #[error("{rpc}: {what}: {reason}")]
    Internal {
        rpc: &'static str,
        what: String,
        reason: String,
    },
}

impl CriError {
    pub(crate) fn invalid(
        rpc: &'static str,
        field: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        CriError::InvalidArgument {
            rpc,
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn image(
        rpc: &'static str,
        object: impl Into<String>,
        source: image::Error,
    ) -> Self {
        CriError::Image {
            rpc,
            object: object.into(),
            source,
        }
    }

    pub(crate) fn runtime(rpc: &'static str, source: crate::runtime::error::RuntimeError) -> Self {
        CriError::Runtime { rpc, source }
    }

    /// The gRPC status code this error is answered with.
    pub fn code(&self) -> Code {
        match self {
            CriError::InvalidArgument { .. } => Code::InvalidArgument,
            CriError::Image { source, .. } => image_code(source),
            CriError::Failed { code, .. } | CriError::Remote { code, .. } => *code,
            CriError::Internal { .. } => Code::Internal,
            CriError::Runtime { source, .. } => {
                use crate::runtime::error::Code as R;
                match source.code() {
                    R::NotFound => Code::NotFound,
                    R::InvalidArgument => Code::InvalidArgument,
                    R::AlreadyExists => Code::AlreadyExists,
                    R::FailedPrecondition => Code::FailedPrecondition,
                    R::DeadlineExceeded => Code::DeadlineExceeded,
                    // containerd answers failures it does not classify (an exec that
                    // cannot start, a kernel refusal) UNKNOWN; clients match on it.
                    R::Internal => Code::Unknown,
                }
            }
        }
    }

    /// Whether the object the call named does not exist (gRPC NOT_FOUND).
    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NotFound
    }
}

/// The status code for an image subsystem error.
pub fn image_code(e: &image::Error) -> Code {
    use image::Error as E;
    match e {
        E::InvalidReference { .. } | E::InvalidDigest { .. } | E::Ambiguous { .. } => {
            Code::InvalidArgument
        }
        E::NotFound { .. } => Code::NotFound,
        E::Registry { status: 404, .. } => Code::NotFound,
        E::InUse { .. } => Code::FailedPrecondition,
        // The operator's cap on an image's unpacked size.
        E::TooLarge { .. } => Code::ResourceExhausted,
        // The registry refused the credentials given (or wanted some): not a CRI caller
        // authentication problem, so not UNAUTHENTICATED.
        E::Auth { .. }
        | E::Registry {
            status: 401 | 403, ..
        } => Code::PermissionDenied,
        E::Http { .. }
        | E::Registry {
            status: 429 | 500..,
            ..
        } => Code::Unavailable,
        E::Io { .. } | E::Mount { .. } | E::Task { .. } | E::Json { .. } => Code::Internal,
        E::DigestMismatch { .. }
        | E::SizeMismatch { .. }
        | E::UnsafeLayer { .. }
        | E::Unpack { .. }
        | E::Invalid { .. }
        | E::Unsupported { .. }
        | E::Registry { .. } => Code::Unknown,
    }
}

impl From<CriError> for Status {
    fn from(e: CriError) -> Self {
        let code = e.code();
        // A remote runtime's status is passed on as it came.
        if let CriError::Remote { message, .. } = &e {
            tracing::debug!(?code, "{e}");
            return Status::new(code, message.clone());
        }
        if code == Code::Internal {
            tracing::error!("{e}");
        } else {
            tracing::debug!(?code, "{e}");
        }
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_the_field_and_code() {
        let s: Status = CriError::invalid("PullImage", "image.image", "must not be empty").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("image.image"), "{}", s.message());
        let s: Status = CriError::image(
            "RemoveImage",
            "x",
            image::Error::InUse {
                image: "sha256:1".into(),
                containers: "c1".into(),
            },
        )
        .into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert!(s.message().contains("c1"));
    }
}
