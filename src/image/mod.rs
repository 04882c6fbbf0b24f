//! Images: registry pull, OCI-layout and docker-save import, the content store, layer
//! snapshots unpacked once by chain ID, overlay rootfs mounts, image metadata and GC.
//!
//! Everything lives under one root directory (default `/var/lib/berth/images`):
//! `content/` (blobs), `snapshots/` (unpacked layers), `rootfs/` (container upper dirs),
//! `views/` (read-only image volumes), `meta/` (image records) and `locks/`. This module owns that tree and must not touch
//! anything outside it, except the overlay mounts it is asked to make.

pub mod alloc;
pub mod content;
pub mod digest;
pub mod error;
pub mod locks;
pub mod reference;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use reference::Reference;
pub mod gc;
pub mod layer;
pub mod manifest;
pub mod metadata;
pub mod rootfs;
pub mod snapshot;
pub mod store;
pub mod view;

pub use store::ImageStore;
pub mod cli;
pub mod import;
pub mod inroot;
pub mod lower_links;
pub mod progress;
pub mod pull;
pub mod registry;
