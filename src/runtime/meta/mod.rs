//! What the runtime knows about its sandboxes and containers besides the kernel: ids,
//! the CRI names they were created under, their configs, and the records that let a
//! restarted daemon find every one of them again.
//!
//! Plain data and pure logic, plus one directory of record files per kind; no process,
//! mount or network work happens here (the holder and CNI own that).

mod error;
mod filter;
mod id;
mod index;
mod names;
mod record;
mod store;

pub use error::MetaError;
pub use filter::{container_matches, labels_match, sandbox_matches, stats_matches};
pub use id::generate_id;
pub use index::IdIndex;
pub use names::{NameRegistrar, container_name, sandbox_name};
pub use record::{ContainerRecord, Phase, ProcessUser, SandboxRecord};
pub use store::{Loaded, RecordStore};
