//! One reading of a pod and its containers for the metrics calls, as plain data: who
//! they are (the labels) and what their cgroups, /proc and writable layers say.
//! [`crate::cri::metrics`] turns it into cAdvisor-named metrics.

use std::path::{Path, PathBuf};

use crate::cgroups::Cgroup;

use super::{
    Detail, DeviceIo, FdCounts, FsUsage, InterfaceCounters, LayerCache, StatsError, count_fds,
    device_name, layer_usage, max_open_files_soft, read_detail,
};

/// Where the kernel's file views are (a test points them at fixtures).
#[derive(Debug, Clone)]
pub struct Sources {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
        }
    }
}

/// Who a container is, as the metrics label it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerIdentity {
    pub id: String,
    /// The CRI metadata name (kubelet's container name).
    pub name: String,
    pub image: String,
    /// CreateContainer's time, ns since the epoch.
    pub created_at: i64,
}

/// What was read of one container; a part that could not be read is `None`.
#[derive(Debug, Clone, Default)]
pub struct ContainerSample {
    pub who: ContainerIdentity,
    /// The cgroup's path below the hierarchies' root, with a leading `/` (cAdvisor's `id`).
    pub cgroup_path: String,
    pub cgroup: Option<Detail>,
    pub fds: Option<FdCounts>,
    pub max_open_files: Option<i64>,
    pub fs: Option<FsUsage>,
    /// Block I/O per named device.
    pub io: Vec<(String, DeviceIo)>,
}

/// What was read of one pod.
#[derive(Debug, Clone, Default)]
pub struct PodSample {
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// The pod's cgroup parent ("" when it has none).
    pub cgroup_path: String,
    /// The pod network namespace's interfaces, loopback left out.
    pub interfaces: Vec<InterfaceCounters>,
    pub containers: Vec<ContainerSample>,
    /// When the reading was taken, ns since the epoch.
    pub timestamp: i64,
}

/// Reads one container: its cgroup (`None` once it has exited), the descriptors of its
/// processes, its init's open-files limit and its writable layer at `upper` (walked
/// through `layers`).
pub fn read_container(
    who: ContainerIdentity,
    cgroup: Option<&Cgroup>,
    init_pid: Option<i32>,
    upper: Option<&Path>,
    src: &Sources,
    layers: &LayerCache,
) -> Result<ContainerSample, StatsError> {
    let mut s = ContainerSample {
        who,
        ..Default::default()
    };
    if let Some(cg) = cgroup {
        s.cgroup_path = format!("/{}", cg.path.display());
        let d = read_detail(cg)?;
        s.fds = d.pids.as_deref().map(|p| count_fds(&src.proc_root, p));
        if let Some(io) = &d.io {
            s.io = io
                .iter()
                .filter(|i| i.read_bytes + i.write_bytes + i.reads + i.writes > 0)
                .filter_map(|i| {
                    device_name(&src.sys_root, &src.proc_root, i.major, i.minor)
                        .map(|n| (n, i.clone()))
                })
                .collect();
        }
        s.cgroup = Some(d);
        s.max_open_files = init_pid
            .filter(|p| *p > 0)
            .and_then(|p| max_open_files_soft(&src.proc_root, p));
    }
    s.fs = upper.and_then(|u| layer_usage(u, &src.sys_root, &src.proc_root, layers));
    Ok(s)
}
