//! The in-process container runtime behind berth's CRI: pod sandboxes held by a per-pod
//! holder process, the containers in them, their logs and exit codes, the streaming
//! server behind Exec, Attach and PortForward, and what the CRI service needs to find
//! them all again after a restart.
//!
//! This module only declares its parts; each part's doc says what it owns.

pub mod container;
pub mod error;
pub mod events;
#[cfg(test)]
pub(crate) mod fakes;
pub mod holder;
pub mod meta;
pub mod sandbox;
pub mod sessions;
pub mod spec;
pub mod stats;
pub mod streaming;
