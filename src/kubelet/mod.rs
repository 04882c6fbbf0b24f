//! The kubelet: turns pod specs into running, probed, restarted and cleanly terminated
//! containers through the CRI-shaped traits of [`crate::cri::api`].
//!
//! Data flows one way (docs/ARCHITECTURE.md):
//!
//! ```text
//! config (sources: static dir, URL, files)  ->  desired pods keyed by UID
//!   -> pod workers (one task per UID, worker::state)  -> kuberuntime (computePodActions)
//!        -> Runtime (in-process berth runtime, or a remote CRI endpoint)
//!   <- pleg (GetContainerEvents)  <- prober (liveness, readiness, startup)
//!   -> status (the pod status as the API shows it)
//! ```
//!
//! The kubelet reaches the runtime only through [`Runtime`]; it never touches berth's
//! runtime internals, so the same code drives containerd.

pub mod certificate;
pub mod cm;
pub mod config;
pub mod envvars;
pub mod events;
pub mod kuberuntime;
pub mod lifecycle;
pub mod mirror;
pub mod node;
pub mod nodelease;
pub mod nodestatus;
pub mod objects;
pub mod parts;
pub mod pleg;
pub mod prober;
pub mod reject;
pub mod runtime;
pub mod standalone;
pub mod status;
pub mod sync;
pub mod sync_loop;
pub mod token;
pub mod volumes;
pub mod worker;

pub use events::{Event, EventKind, Recorder};
pub use objects::Objects;
pub use runtime::Runtime;
