//! The OCI distribution client: hosts (TLS, plain HTTP, mirrors) from berth's config,
//! credentials (CRI AuthConfig, docker config files), token and basic auth, retries.

pub mod auth;
pub mod client;
pub mod hosts;

pub use auth::{AuthConfig, Credentials};
pub use client::RegistryClient;
pub use hosts::{HostConfig, RegistryHosts};
