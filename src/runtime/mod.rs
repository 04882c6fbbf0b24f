//! berth's in-process CRI runtime: pod sandboxes (one holder process per pod), the
//! containers in them, and what the CRI service needs to drive both.
//!
//! This module only declares its parts; each part's doc says what it owns.

pub mod spec;
