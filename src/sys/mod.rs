//! Kernel seams: narrow wrappers over the syscalls the subsystems use.

pub mod clone;
pub mod mount;
