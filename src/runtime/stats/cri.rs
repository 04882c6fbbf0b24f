//! Raw counters to CRI stats messages, as containerd's CRI plugin reports them.

use std::collections::HashMap;
use std::sync::Mutex;

use cri_proto::v1::{
    CpuUsage, MemoryUsage, NetworkInterfaceUsage, NetworkUsage, ProcessUsage, SwapUsage,
    UInt64Value,
};

use super::{InterfaceCounters, RawMemory};

fn val(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

/// Above this a limit means "none": the kernel rounds "unlimited" to a page multiple below
/// i64::MAX, so containerd (and cAdvisor) treat anything over 2^62 as unlimited.
const UNLIMITED: u64 = 1 << 62;

fn limited(limit: Option<u64>) -> Option<u64> {
    limit.filter(|l| *l != 0 && *l <= UNLIMITED)
}

/// The previous CPU sample of each container or sandbox, for the nano-cores rate.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuSampler {
    /// CPU usage of `id` now; `usage_nano_cores` is the rate since the previous sample of
    /// the same id (0 for the first one, as containerd reports it).
    pub fn sample(&self, id: &str, timestamp_ns: i64, usage_ns: u64) -> CpuUsage {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let rate = match last.get(id) {
            Some(&(t, u)) if timestamp_ns > t && usage_ns >= u => {
                ((usage_ns - u) as f64 / (timestamp_ns - t) as f64 * 1e9) as u64
            }
            _ => 0,
        };
        // A sample older than the stored one (concurrent callers) must not rewind it.
        if last.get(id).is_none_or(|&(t, _)| timestamp_ns > t) {
            last.insert(id.to_owned(), (timestamp_ns, usage_ns));
        }
        cpu_usage(timestamp_ns, usage_ns, rate)
    }

    /// Forgets a removed container or sandbox.
    pub fn forget(&self, id: &str) {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

pub fn cpu_usage(timestamp: i64, usage_ns: u64, nano_cores: u64) -> CpuUsage {
    CpuUsage {
        timestamp,
        usage_core_nano_seconds: val(usage_ns),
        usage_nano_cores: val(nano_cores),
        psi: None,
    }
}

pub fn memory_usage(timestamp: i64, m: &RawMemory) -> MemoryUsage {
    let working_set = m.usage.saturating_sub(m.inactive_file);
    MemoryUsage {
        timestamp,
        working_set_bytes: val(working_set),
        available_bytes: val(limited(m.limit).map_or(0, |l| l.saturating_sub(working_set))),
        usage_bytes: val(m.usage),
        rss_bytes: val(m.rss),
        page_faults: val(m.page_faults),
        major_page_faults: val(m.major_page_faults),
        psi: None,
    }
}

/// Swap, where the kernel accounts it.
pub fn swap_usage(timestamp: i64, m: &RawMemory) -> Option<SwapUsage> {
    let used = m.swap_usage?;
    Some(SwapUsage {
        timestamp,
        swap_available_bytes: val(limited(m.swap_limit).map_or(0, |l| l.saturating_sub(used))),
        swap_usage_bytes: val(used),
    })
}

pub fn process_usage(timestamp: i64, count: u64) -> ProcessUsage {
    ProcessUsage {
        timestamp,
        process_count: val(count),
    }
}

/// `eth0` is the pod's interface (CNI's default name); the others except loopback are
/// listed beside it.
pub fn network_usage(timestamp: i64, ifaces: &[InterfaceCounters]) -> NetworkUsage {
    let conv = |i: &InterfaceCounters| NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: val(i.rx_bytes),
        rx_errors: val(i.rx_errors),
        tx_bytes: val(i.tx_bytes),
        tx_errors: val(i.tx_errors),
    };
    NetworkUsage {
        timestamp,
        default_interface: ifaces.iter().find(|i| i.name == "eth0").map(conv),
        interfaces: ifaces
            .iter()
            .filter(|i| i.name != "eth0" && i.name != "lo")
            .map(conv)
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_is_the_rate_between_samples() {
        let s = CpuSampler::default();
        let first = s.sample("c", 1_000_000_000, 5_000_000_000);
        assert_eq!(first.usage_nano_cores.unwrap().value, 0);
        // 0.5 s of CPU in 1 s of wall time: half a core.
        let second = s.sample("c", 2_000_000_000, 5_500_000_000);
        assert_eq!(second.usage_nano_cores.unwrap().value, 500_000_000);
        assert_eq!(second.usage_core_nano_seconds.unwrap().value, 5_500_000_000);
        // An older sample does not rewind the stored one.
        s.sample("c", 1_500_000_000, 5_200_000_000);
        let third = s.sample("c", 3_000_000_000, 6_500_000_000);
        assert_eq!(third.usage_nano_cores.unwrap().value, 1_000_000_000);
        s.forget("c");
        assert_eq!(
            s.sample("c", 4_000_000_000, 7_000_000_000)
                .usage_nano_cores
                .unwrap()
                .value,
            0
        );
    }

    #[test]
    fn memory_follows_containerd() {
        let m = RawMemory {
            usage: 1000,
            limit: Some(4000),
            inactive_file: 300,
            rss: 500,
            page_faults: 9,
            major_page_faults: 1,
            swap_usage: None,
            swap_limit: None,
        };
        let u = memory_usage(7, &m);
        assert_eq!(u.working_set_bytes.unwrap().value, 700);
        assert_eq!(u.available_bytes.unwrap().value, 3300);
        assert_eq!(u.usage_bytes.unwrap().value, 1000);
        assert_eq!(u.rss_bytes.unwrap().value, 500);
        let unlimited = RawMemory {
            limit: Some(9_223_372_036_854_771_712),
            inactive_file: 5000,
            ..m
        };
        let u = memory_usage(7, &unlimited);
        assert_eq!(u.working_set_bytes.unwrap().value, 0);
        assert_eq!(u.available_bytes.unwrap().value, 0);
        assert!(swap_usage(7, &unlimited).is_none());
    }

    #[test]
    fn eth0_is_the_default_interface_and_lo_is_left_out() {
        let ifs = [
            InterfaceCounters {
                name: "lo".into(),
                ..Default::default()
            },
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 10,
                ..Default::default()
            },
            InterfaceCounters {
                name: "net1".into(),
                tx_bytes: 3,
                ..Default::default()
            },
        ];
        let n = network_usage(1, &ifs);
        assert_eq!(n.default_interface.unwrap().rx_bytes.unwrap().value, 10);
        assert_eq!(n.interfaces.len(), 1);
        assert_eq!(n.interfaces[0].name, "net1");
    }
}
