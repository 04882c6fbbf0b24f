//! The kubelet's container manager: a pod's QoS class, the pod cgroups below
//! `<cgroup-root>/kubepods` (cgroupfs driver, v1 and v2), and the resources kubelet sends
//! the runtime with each sandbox and container, as upstream pkg/kubelet/cm,
//! pkg/kubelet/qos and kuberuntime compute them.
//!
//! It owns the kubepods hierarchy and the pod cgroups; the containers' own cgroups below
//! a pod's are the runtime's, and it never writes outside `<cgroup-root>/kubepods`.
//! The pure parts ([`qos_class`], [`container_resources`], [`sandbox_resources`]) read
//! only the pod and [`NodeFacts`]; the host is reached through [`crate::cgroups`].

mod cgroup_manager;
mod container;
mod helpers;
mod policy;
mod qos;
pub mod quantity;

use std::path::PathBuf;

pub use cgroup_manager::CgroupManager;
pub use container::{
    NodeFacts, container_resources, hugepage_sizes, sandbox_overhead, sandbox_resources,
    swap_controller_available,
};
pub use helpers::{
    MIN_SHARES, QUOTA_PERIOD, ResourceConfig, milli_cpu_to_quota, milli_cpu_to_shares,
    resource_config_for_pod,
};
pub use policy::container_oom_score_adj;
pub use qos::{QosClass, pod_limits, pod_requests, qos_class};

/// What went wrong with the kubelet's cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CmError {
    /// The pod's cgroup (`cgroup`, as the CRI cgroup_parent names it) could not be
    /// created, limited or removed.
    #[error("pod {pod}: cgroup {cgroup}: {source}")]
    Pod {
        pod: String,
        cgroup: String,
        #[source]
        source: crate::cgroups::CgroupError,
    },
    /// A QoS tier (kubepods, burstable, besteffort) could not be created or limited.
    #[error("QoS cgroup {cgroup}: {source}")]
    Qos {
        cgroup: String,
        #[source]
        source: crate::cgroups::CgroupError,
    },
    /// The pod's UID cannot name its cgroup.
    #[error("pod {pod}: {reason}")]
    Uid { pod: String, reason: &'static str },
    /// A tier's directory could not be listed.
    #[error("list pod cgroups in {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
