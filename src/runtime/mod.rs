//! The in-process container runtime behind berth's CRI: pod sandboxes (one holder process
//! per pod), their containers, and what the CRI service needs to find them again after a
//! restart.

pub mod meta;
pub mod stats;
