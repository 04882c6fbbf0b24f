//! The node's container runtime as CRI sees it: pod sandboxes, containers and the streaming
//! server behind Exec, Attach and PortForward.

pub mod streaming;
