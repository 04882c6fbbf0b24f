//! CPU and memory arithmetic of pkg/kubelet/cm/helpers_linux.go: requests to CFS shares,
//! limits to CFS quota, and a pod's cgroup limits (ResourceConfigForPod), as plain data.

use k8s_openapi::api::core::v1::Pod;

use super::qos::{QosClass, get, pod_limits, pod_requests, qos_class};

pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
pub const SHARES_PER_CPU: i64 = 1024;
pub const MILLI_CPU_TO_CPU: i64 = 1000;
/// The CFS period kubelet uses (100 ms, in µs).
pub const QUOTA_PERIOD: i64 = 100_000;
/// The smallest quota kubelet sets (1 ms, in µs).
pub const MIN_QUOTA_PERIOD: i64 = 1000;

/// MilliCPUToShares: 1 cpu = 1024 shares, clamped to [2, 262144]; no request = 2.
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    let shares = milli.saturating_mul(SHARES_PER_CPU) / MILLI_CPU_TO_CPU;
    if shares < MIN_SHARES as i64 {
        MIN_SHARES
    } else {
        (shares as u64).min(MAX_SHARES)
    }
}

/// MilliCPUToQuota: the CFS quota for `milli` over `period`, at least 1 ms; no limit = 0.
pub fn milli_cpu_to_quota(milli: i64, period: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli.saturating_mul(period) / MILLI_CPU_TO_CPU).max(MIN_QUOTA_PERIOD)
}

/// The limits of a pod's cgroup (kubelet's ResourceConfig); `None` leaves a value alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceConfig {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// ResourceConfigForPod with CFS quota enforced and the default period: a Guaranteed pod
/// gets shares, quota and a memory limit; a Burstable one shares, and quota and memory
/// limit only when every container declares that limit; a BestEffort one 2 shares.
/// Overhead counts (it is what the runtime adds for the sandbox).
pub fn resource_config_for_pod(pod: &Pod) -> ResourceConfig {
    let reqs = pod_requests(pod, true);
    let (limits, cpu_declared, mem_declared) = pod_limits(pod, true);
    let shares = milli_cpu_to_shares(get(&reqs, "cpu").milli_value());
    let quota = milli_cpu_to_quota(get(&limits, "cpu").milli_value(), QUOTA_PERIOD);
    let memory = get(&limits, "memory").value();
    let period = QUOTA_PERIOD as u64;
    match qos_class(pod) {
        QosClass::Guaranteed => ResourceConfig {
            cpu_shares: Some(shares),
            cpu_quota: Some(quota),
            cpu_period: Some(period),
            memory: Some(memory),
            pids_limit: None,
        },
        QosClass::Burstable => ResourceConfig {
            cpu_shares: Some(shares),
            cpu_quota: cpu_declared.then_some(quota),
            cpu_period: cpu_declared.then_some(period),
            memory: mem_declared.then_some(memory),
            pids_limit: None,
        },
        QosClass::BestEffort => ResourceConfig {
            cpu_shares: Some(MIN_SHARES),
            ..Default::default()
        },
    }
}

/// The burstable tier's shares (qos_container_manager setCPUCgroupConfig): the sum of the
/// cpu requests of the Burstable pods among `pods`.
pub fn burstable_shares(pods: &[&Pod]) -> u64 {
    let milli: i64 = pods
        .iter()
        .filter(|p| qos_class(p) == QosClass::Burstable)
        .map(|p| get(&pod_requests(p, true), "cpu").milli_value())
        .sum();
    milli_cpu_to_shares(milli)
}

#[cfg(test)]
mod tests {
    use super::super::qos::tests::{ctr, pod};
    use super::*;

    /// upstream helpers_linux_test.go TestMilliCPUToQuota and the shares' bounds.
    #[test]
    fn shares_and_quota_as_upstream() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(500_000), 262_144);
        for (milli, period, quota) in [
            (0, 100_000, 0),
            (5, 100_000, 1000),
            (9, 100_000, 1000),
            (10, 100_000, 1000),
            (200, 100_000, 20_000),
            (500, 100_000, 50_000),
            (1000, 100_000, 100_000),
            (1500, 100_000, 150_000),
            (1500, 50_000, 75_000),
            (1, 5000, 1000),
        ] {
            assert_eq!(milli_cpu_to_quota(milli, period), quota, "{milli} {period}");
        }
    }

    /// upstream TestResourceConfigForPod, with enforced quota and the 100 ms period.
    #[test]
    fn pod_config_by_class() {
        let g = pod(
            vec![ctr(
                "a",
                &[("cpu", "100m"), ("memory", "100Mi")],
                &[("cpu", "100m"), ("memory", "100Mi")],
            )],
            vec![],
        );
        assert_eq!(
            resource_config_for_pod(&g),
            ResourceConfig {
                cpu_shares: Some(102),
                cpu_quota: Some(10_000),
                cpu_period: Some(100_000),
                memory: Some(100 << 20),
                pids_limit: None,
            }
        );
        let be = pod(vec![ctr("a", &[], &[])], vec![]);
        assert_eq!(
            resource_config_for_pod(&be),
            ResourceConfig {
                cpu_shares: Some(2),
                ..Default::default()
            }
        );
        // burstable, no limits: shares only
        let b = pod(
            vec![ctr("a", &[("cpu", "100m"), ("memory", "100Mi")], &[])],
            vec![],
        );
        assert_eq!(
            resource_config_for_pod(&b),
            ResourceConfig {
                cpu_shares: Some(102),
                ..Default::default()
            }
        );
        // burstable, limits on every container: quota and memory from the sums
        let b = pod(
            vec![
                ctr(
                    "a",
                    &[("cpu", "100m"), ("memory", "100Mi")],
                    &[("cpu", "200m"), ("memory", "200Mi")],
                ),
                ctr(
                    "b",
                    &[("cpu", "100m"), ("memory", "100Mi")],
                    &[("cpu", "200m"), ("memory", "200Mi")],
                ),
            ],
            vec![],
        );
        assert_eq!(
            resource_config_for_pod(&b),
            ResourceConfig {
                cpu_shares: Some(204),
                cpu_quota: Some(40_000),
                cpu_period: Some(100_000),
                memory: Some(400 << 20),
                pids_limit: None,
            }
        );
        // burstable, one container without limits: no quota, no memory limit
        let b = pod(
            vec![
                ctr(
                    "a",
                    &[("cpu", "100m"), ("memory", "100Mi")],
                    &[("cpu", "200m"), ("memory", "200Mi")],
                ),
                ctr("b", &[("cpu", "100m")], &[]),
            ],
            vec![],
        );
        assert_eq!(
            resource_config_for_pod(&b),
            ResourceConfig {
                cpu_shares: Some(204),
                ..Default::default()
            }
        );
    }

    #[test]
    fn burstable_tier_sums_burstable_pods_only() {
        let pods = [
            pod(vec![ctr("a", &[("cpu", "100m")], &[])], vec![]),
            pod(vec![ctr("a", &[("cpu", "250m")], &[("cpu", "1")])], vec![]),
            // guaranteed and best effort pods do not count
            pod(
                vec![ctr(
                    "a",
                    &[("cpu", "1"), ("memory", "1Gi")],
                    &[("cpu", "1"), ("memory", "1Gi")],
                )],
                vec![],
            ),
            pod(vec![ctr("a", &[], &[])], vec![]),
        ];
        assert_eq!(burstable_shares(&pods.iter().collect::<Vec<_>>()), 358);
        assert_eq!(burstable_shares(&[]), 2);
    }
}
