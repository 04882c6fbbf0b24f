//! berth: one daemon that makes a Linux machine a Kubernetes worker node.
//!
//! The library holds every subsystem (see docs/ARCHITECTURE.md); `main.rs` only wires the
//! parts together with their real kernel seams and runs them.

pub mod cgroups;
pub mod cri;
pub mod holder;
pub mod image;
pub mod kubelet;
pub mod net;
pub mod oci;
pub mod runtime;
pub mod store;
pub mod sys;
pub mod version;
