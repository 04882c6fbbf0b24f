//! Kernel seams: narrow traits over kernel interfaces, each with its Linux implementation
//! and a recording fake, so the logic above them is tested without root.

pub mod clone;
pub mod fds;
pub mod mount;
pub mod overlay;
pub mod sysctl;
pub mod tty;
