//! The error of the OCI runtime's boundary: which container, which field, what to do.

use std::path::PathBuf;

/// What failed while creating or operating a container.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The spec asks for something invalid; `field` is its JSON path.
    #[error("container {id}: config field {field}: {reason}")]
    Spec {
        id: String,
        field: String,
        reason: String,
    },
    #[error("container {id}: {op} {path}: {source}")]
    Io {
        id: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: {op}: {source}")]
    Sys {
        id: String,
        op: String,
        #[source]
        source: nix::Error,
    },
    #[error("container {id}: cgroup: {source}")]
    Cgroup {
        id: String,
        #[source]
        source: crate::cgroups::CgroupError,
    },
    /// The container's init process failed while setting itself up.
    #[error("container {id}: init: {message}")]
    Init { id: String, message: String },
    /// The process's program cannot be executed (missing, not executable, its arguments
    /// too long): the container could be made, its program cannot run. `message` is
    /// runc's (`exec: "<args[0]>": <why>`).
    #[error("container {id}: {message}")]
    Exec { id: String, message: String },
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} already exists")]
    Exists { id: String },
    /// An operation the OCI lifecycle forbids in the container's current state.
    #[error("container {id} is {status}: cannot {op}")]
    State {
        id: String,
        status: String,
        op: &'static str,
    },
    #[error("container {id}: hook {hook}: {reason}")]
    Hook {
        id: String,
        hook: String,
        reason: String,
    },
    #[error("invalid container id {id:?}: {reason}")]
    BadId { id: String, reason: &'static str },
    #[error("container {id}: state file {path}: {reason}")]
    StateFile {
        id: String,
        path: PathBuf,
        reason: String,
    },
}

impl OciError {
    pub(crate) fn spec(id: &str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Spec {
            id: id.to_string(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, OciError>;
