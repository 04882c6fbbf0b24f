//! The CRI: berth's RuntimeService and ImageService traits with the CRI v1 shape
//! ([`api`]), the in-process image service over `src/image` ([`images`]), the sandbox and
//! container calls over the in-process runtime `src/runtime` ([`pods`]), the runtime's
//! Version/Status/RuntimeConfig ([`runtime_info`]), the gRPC adapter ([`grpc`]), the
//! root-only socket it is served on ([`server`], `berth cri`) and the client of a remote
//! CRI runtime ([`remote`]).
//!
//! This module owns the translation between CRI messages and berth's subsystems and the
//! socket file; it must not reach into the image store's files itself (it goes through
//! `ImageStore`), except to measure their disk use.

pub mod api;
pub mod authority;
pub mod cli;
pub mod error;
pub mod grpc;
pub mod image_pull;
pub mod imagefs;
pub mod images;
pub mod inprocess;
pub mod limits;
pub mod metrics;
pub mod pods;
pub mod remote;
pub mod runtime_info;
pub mod server;
pub mod streams;

pub use api::{CriFuture, ImageApi, PodApi, RuntimeApi, StreamApi};
pub use error::CriError;
pub use images::Images;
pub use pods::Pods;
pub use remote::RemoteRuntime;
pub use runtime_info::RuntimeInfo;
pub use streams::Streams;
