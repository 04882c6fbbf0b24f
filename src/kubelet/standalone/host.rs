//! What the standalone kubelet reads of its host: its name, addresses and capacity.

use std::path::Path;

use crate::cgroups::Layout;
use crate::kubelet::cm::{NodeFacts, hugepage_sizes, swap_controller_available};

/// The hostname, as kubelet names its node by default.
pub fn hostname() -> anyhow::Result<String> {
    let h = nix::unistd::gethostname()?;
    Ok(h.to_string_lossy().to_lowercase())
}

/// The node's addresses: the first interface that is up and not loopback, IPv4 first.
pub fn node_ips() -> Vec<String> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return vec![];
    };
    let mut v4 = vec![];
    let mut v6 = vec![];
    for a in addrs {
        if a.flags
            .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK)
            || !a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP)
        {
            continue;
        }
        let Some(addr) = a.address else { continue };
        if let Some(s) = addr.as_sockaddr_in() {
            v4.push(s.ip().to_string());
        } else if let Some(s) = addr.as_sockaddr_in6() {
            let ip = s.ip();
            // Link-local addresses are no node address.
            if ip.segments()[0] & 0xffc0 != 0xfe80 {
                v6.push(ip.to_string());
            }
        }
    }
    v4.into_iter()
        .take(1)
        .chain(v6.into_iter().take(1))
        .collect()
}

/// The cgroup this process runs in on the unified tree (`0::` of /proc/self/cgroup).
fn self_cgroup() -> String {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(String::from))
        })
        .unwrap_or_else(|| "/".into())
}

/// Memory and CPUs of the node, its cgroup kind, swap control and huge page sizes, and
/// whether a negative oom_score_adj can be set.
pub fn node_facts(layout: &Layout) -> NodeFacts {
    let memory_capacity = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    NodeFacts {
        memory_capacity,
        cpu_capacity_millis: i64::try_from(cpus).unwrap_or(1) * 1000,
        can_lower_oom_score_adj: crate::runtime::spec::HostFacts::detect().can_lower_oom_score_adj,
        cgroup_v2: layout.is_v2_only(),
        swap_controller: swap_controller_available(layout, &self_cgroup()),
        hugepage_sizes: hugepage_sizes(Path::new("/sys")),
    }
}
