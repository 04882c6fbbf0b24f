//! The ground berth's privileged tests stand on.
//!
//! Every test that touches the kernel builds a [`TestEnv`]: its own network namespaces
//! (a "host" and its "pods"), a private mount namespace, a temp dir and a cgroup parent
//! named `berth-test-<random>` in every hierarchy. Guards tear all of it down on success,
//! failure and panic, and [`leak`] proves afterwards that nothing was left on the machine.
//!
//! The harness never touches the machine's own network, nftables ruleset or root cgroups:
//! links and rules live in namespaces it made, and cgroups under its own parent.

pub mod apifront;
pub mod apiserver;
pub mod berth_cri;
pub mod cgroup;
pub mod containerd;
pub mod cri;
pub mod env;
pub mod fixtures;
pub mod gate;
pub mod kubelet;
pub mod leak;
pub mod netns;
pub mod netns_runtime;
pub mod registry;
pub mod terminal;
pub mod util;

pub use env::TestEnv;
pub use netns::NetNs;
