//! The daemon's side of the pod holders (the holder itself is `berth-holder`, see
//! [`crate::holder`]): the zygote handle that starts them, the client that calls them,
//! and what the daemon reads from a pod whose holder died.
//!
//! Only the holder's public protocol is reachable from here ([`crate::holder`]'s `proto`,
//! `launch`, `fdpass`, [`PodDir`] and the error type); its internals are private to it.

pub mod client;
pub mod dead;
mod zygote;

use std::path::PathBuf;

pub use crate::holder::{
    AttachStart, ContainerEvent, ContainerInfo, ContainerState, ErrorCode, EventKind, ExecResult,
    ExecStart, ExitInfo, HolderError, HolderInfo, PodDir, PodOptions, Result, WireError, fdpass,
    launch, now_ns, proto,
};
pub use client::{Client, Events, SpawnOptions};
pub use zygote::Zygote;

/// The holder binary's name: the daemon finds it next to its own executable unless told
/// otherwise (`berth cri --holder-path`).
pub const BINARY: &str = "berth-holder";

/// `berth-holder` next to this process's executable.
pub fn default_binary() -> std::io::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(BINARY))
}
