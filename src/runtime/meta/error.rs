//! The one error type of the metadata layer.

use std::path::PathBuf;

/// A failed lookup, reservation or record read/write.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No sandbox or container has this id (or id prefix).
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// An id prefix matches more than one object.
    #[error("{kind} id prefix {prefix:?} is ambiguous: it matches {count} {kind}s")]
    Ambiguous {
        kind: &'static str,
        prefix: String,
        count: usize,
    },
    /// An empty id was given where one is required.
    #[error("{field} must not be empty")]
    EmptyId { field: &'static str },
    /// The CRI name is held by another sandbox or container.
    #[error("{kind} name {name:?} is reserved for {holder:?}")]
    NameReserved {
        kind: &'static str,
        name: String,
        holder: String,
    },
    /// A request lacks what the name is built from.
    #[error("{field} is required")]
    MissingField { field: &'static str },
    /// A record file could not be read, decoded or written.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record file exists but does not decode; it is left in place for inspection.
    #[error("record {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}
