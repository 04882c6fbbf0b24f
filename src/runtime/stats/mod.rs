//! Container and sandbox statistics for the CRI stats RPCs, read from the cgroup files
//! and /proc the moment they are asked for (no collector runs in the background).
//!
//! The numbers follow containerd's CRI plugin field for field (`container_stats_list`
//! and `sandbox_stats` on Linux), which in turn follow cAdvisor: the working set is usage
//! minus inactive file pages, available memory is the limit minus the working set unless
//! the limit is effectively unlimited, and CPU nano-cores is the usage rate between two
//! samples. The metrics calls read more of the same files ([`detail`]), plus /proc
//! ([`procs`]) and the writable layer ([`fs`]), into a [`PodSample`].

mod cgroup;
mod cri;
pub mod detail;
pub mod fs;
mod net;
pub mod procs;
mod sample;

pub use cgroup::{RawMemory, RawStats, StatsError, read_cgroup};
pub use cri::{CpuSampler, cpu_usage, memory_usage, network_usage, process_usage, swap_usage};
pub use detail::{CpuSpec, Detail, DeviceIo, MemoryDetail, Throttling, read_detail};
pub use fs::{FsUsage, LAYER_TTL, LayerCache, device_name, layer_usage};
pub use net::{InterfaceCounters, parse_net_dev, read_net_dev};
pub use procs::{FdCounts, count_fds, max_open_files_soft};
pub use sample::{ContainerIdentity, ContainerSample, PodSample, Sources, read_container};
