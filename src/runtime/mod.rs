//! The in-process container runtime: pod sandboxes held by a per-pod holder process, the
//! containers in them, their logs and exit codes.

pub mod holder;
