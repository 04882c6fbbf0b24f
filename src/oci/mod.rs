//! Containers from an OCI runtime spec, created in-process.
//!
//! A long-lived process calls [`Runtime`] to create, start, signal and delete containers
//! with no runtime binary exec'd per container; `berth oci` ([`cli`]) is a runc-compatible
//! command line over the same calls. The flow of a create:
//!
//! ```text
//! parent: validate spec -> plan (seccomp compiled, fields checked) -> state "creating"
//!         -> cgroup -> fork
//! intermediate: join namespaces by path, unshare user (parent maps it), unshare the rest
//!         -> clone(CLONE_PARENT) the init, report its pid, exit
//! init:   (createRuntime hooks) -> mounts, /dev -> pivot_root -> masked/readonly paths,
//!         hostname, sysctl -> rlimits, user, capabilities -> "ready"
//!         -> block on exec.fifo until `start` -> no_new_privs, seccomp -> exec
//! ```
//!
//! This module owns container state under its root dir and the containers' own cgroups;
//! it never touches cgroups, mounts or namespaces it did not create.

pub mod cli;
pub mod console;
pub mod create;
pub mod error;
pub mod hooks;
pub(crate) mod init;
pub mod lifecycle;
pub mod plan;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod seccomp_default;
pub mod spec;
pub mod state;

pub use create::{CreateOptions, Runtime};
pub use error::OciError;
pub use lifecycle::{ExecOptions, Exit, parse_signal, wait};
pub use plan::PlanOptions;
pub use state::{State, Status};
