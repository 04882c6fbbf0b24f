//! Kernel seams: narrow traits over kernel interfaces, each with its Linux implementation
//! and a recording fake, so the logic above them is tested without root.

pub mod clone;
pub mod fs;
pub mod link;
pub mod mount;
pub mod ns;
pub mod overlay;
pub mod record;
pub mod root;
pub mod sysctl;
