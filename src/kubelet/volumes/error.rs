//! The one error type of kubelet::volumes.

use std::io;
use std::path::PathBuf;

use super::{PayloadError, WriteError};

/// Why a volume or a mount could not be made; each names the pod (namespace/name or
/// uid), the volume or container, and the path where one is involved.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("pod {pod}: metadata.uid is missing or not a plain name")]
    BadUid { pod: String },
    #[error("pod {pod} volume {volume}: {path}: {source}")]
    Io {
        pod: String,
        volume: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("pod {pod} volume {volume}: mount tmpfs on {path}: {source}")]
    Mount {
        pod: String,
        volume: String,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("pod {pod} volume {volume}: hostPath type {kind:?}: {reason}")]
    HostPathType {
        pod: String,
        volume: String,
        kind: String,
        reason: String,
    },
    #[error("pod {pod} volume {volume}: {source}")]
    Payload {
        pod: String,
        volume: String,
        source: PayloadError,
    },
    #[error("pod {pod} volume {volume}: {source}")]
    Write {
        pod: String,
        volume: String,
        source: WriteError,
    },
    #[error("pod {pod} volume {volume}: {what} is not supported")]
    Unsupported {
        pod: String,
        volume: String,
        what: String,
    },
    #[error("pod {pod} container {container}: cannot find volume {volume:?} to mount")]
    UnknownVolume {
        pod: String,
        container: String,
        volume: String,
    },
    #[error("pod {pod} container {container} volumeMount {volume}: {reason}")]
    VolumeMount {
        pod: String,
        container: String,
        volume: String,
        reason: String,
    },
    #[error("pod {pod} container {container}: {path}: {source}")]
    ContainerFile {
        pod: String,
        container: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("pod {uid}: teardown left {}", errors.join("; "))]
    Teardown { uid: String, errors: Vec<String> },
    #[error("{path}: {source}")]
    Root { path: PathBuf, source: io::Error },
}
