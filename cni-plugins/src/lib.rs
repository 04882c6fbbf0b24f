//! berth's CNI plugins (CNI spec 1.1), each a binary named `berth-<plugin>`.
//!
//! The library holds what the plugins share: the spec's types, its error JSON and codes,
//! and the plugin entry point that reads the CNI environment and stdin. Each plugin lives
//! in its own module; the binaries under `src/bin/` only call [`entry::run`].
//!
//! The plugins never touch anything but the namespaces named by `CNI_NETNS` and the one
//! they run in, the nftables tables they own (`berth-bridge`, `berth-portmap`) and their
//! own state directories.

pub mod bridge;
pub mod entry;
pub mod error;
pub mod hostlocal;
pub mod ipam;
pub mod loopback;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod portmap;
pub mod types;

pub use entry::{Command, Plugin, Request};
pub use error::{Code, Error};
