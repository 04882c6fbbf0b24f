//! The CNI invoker: reads the network configuration list, runs the plugins with the
//! spec's environment and stdin, bounded by a timeout, parses their results, and caches
//! each attachment's result and configuration so that DEL and GC work after a restart.
//!
//! ```text
//! ADD:  cache(config, no result) -> plugin 1..n ADD (prevResult chained) -> cache(result)
//!       a failing plugin: DEL of the whole chain (best effort), cache entry removed
//! DEL:  cached config + result (or the current list) -> plugin n..1 DEL -> uncache
//! GC:   DEL every cached attachment not in the valid list, then GC on each plugin
//! ```

pub mod cache;
pub mod cli;
pub mod conflist;
pub mod default;
pub mod error;
pub mod exec;
mod invoker;

pub use cache::{Cache, CacheEntry};
pub use conflist::NetworkList;
pub use error::CniError;
pub use invoker::{Attachment, Invoker, InvokerConfig};
