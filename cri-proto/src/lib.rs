//! The Kubernetes Container Runtime Interface, package `runtime.v1`.
//!
//! This crate owns the wire types of the CRI: the RuntimeService and ImageService
//! messages and their gRPC client and server, generated at build time from the published
//! `api.proto`. It holds no logic; berth's `cri` module implements the services.
