//! The pod network as berth's runtime sees it.
//!
//! `cni` runs CNI plugin chains (berth's own from cni-plugins/, or any conformant ones)
//! for pod sandboxes. This module owns no kernel state itself: the plugins program links,
//! addresses and nftables; it only keeps its result cache under its state dir.

pub mod cni;
