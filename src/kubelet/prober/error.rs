//! The prober's error: a probe that could not be run at all (upstream's "probe errored"),
//! as opposed to a probe that ran and failed.

use crate::cri::error::CriError;

/// Why a probe could not run. Each names the pod (namespace/name), the container and the
/// probe field.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe's spec cannot be acted on (a named port the container does not have, a
    /// port out of range, no handler).
    #[error("pod {pod} container {container}: {field}: {reason}")]
    Spec {
        pod: String,
        container: String,
        field: String,
        reason: String,
    },
    /// The runtime refused the ExecSync call for a reason other than its timeout.
    #[error("pod {pod} container {container}: {field}: {source}")]
    Exec {
        pod: String,
        container: String,
        field: String,
        #[source]
        source: CriError,
    },
    /// The HTTP client could not be built (TLS backend).
    #[error("pod {pod} container {container}: {field}: http client: {reason}")]
    HttpClient {
        pod: String,
        container: String,
        field: String,
        reason: String,
    },
}
