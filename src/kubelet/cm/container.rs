//! The resources kubelet sends with CreateContainer and RunPodSandbox
//! (kuberuntime_container_linux.go generateLinuxContainerResources and
//! kuberuntime_sandbox_linux.go calculateSandboxResources), as plain data from the pod and
//! the node's facts.

use std::collections::HashMap;
use std::path::Path;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::helpers::{QUOTA_PERIOD, milli_cpu_to_quota, milli_cpu_to_shares};
use super::policy::container_oom_score_adj;
use super::qos::{get, pod_limits, pod_overhead, pod_requests};
use super::quantity::{Amount, list};
use crate::cgroups::Layout;

/// What kubelet knows about the node when it builds a container's resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Bytes of memory (machine capacity).
    pub memory_capacity: u64,
    pub cpu_capacity_millis: i64,
    /// false without CAP_SYS_RESOURCE: a negative oom_score_adj would fail, so scores are
    /// clamped to 0 and up.
    pub can_lower_oom_score_adj: bool,
    /// Pure cgroup v2 (the unified map is sent only there).
    pub cgroup_v2: bool,
    /// The memory controller can limit swap (v1 memory.memsw.*, v2 memory.swap.max).
    pub swap_controller: bool,
    /// The huge page sizes the kernel offers, as `2MB`, `1GB` ([`hugepage_sizes`]).
    pub hugepage_sizes: Vec<String>,
}

/// `size` bytes as a page size name (HugePageUnitSizeFromByteSize): `2MB`, `1GB`, ...
pub(super) fn unit_size(mut size: u64) -> Option<String> {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut i = 0;
    while size > 0 && size.is_multiple_of(1024) && i < UNITS.len() - 1 {
        size /= 1024;
        i += 1;
    }
    (size <= 1024 || i == UNITS.len() - 1).then(|| format!("{size}{}", UNITS[i]))
}

/// The huge page sizes under `<sys_root>/kernel/mm/hugepages` (`hugepages-2048kB`, ...),
/// as runc's HugePageSizes names them, sorted. `sys_root` is `/sys` on a node.
pub fn hugepage_sizes(sys_root: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(sys_root.join("kernel/mm/hugepages")) else {
        return vec![];
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            unit_size(kb.checked_mul(1024)?)
        })
        .collect();
    out.sort();
    out
}

/// Whether the memory controller limits swap: v1 `memory.memsw.limit_in_bytes` at the
/// memory hierarchy's root; v2 `memory.swap.max` in the cgroup kubelet itself runs in
/// (`self_cgroup`: its path in the unified tree, from /proc/self/cgroup's `0::` line), as
/// kubelet checks.
pub fn swap_controller_available(layout: &Layout, self_cgroup: &str) -> bool {
    if layout.is_v2_only() {
        return layout.unified().is_some_and(|u| {
            u.mount
                .join(self_cgroup.trim_start_matches('/'))
                .join("memory.swap.max")
                .exists()
        });
    }
    layout
        .v1("memory")
        .is_some_and(|h| h.mount.join("memory.memsw.limit_in_bytes").exists())
}

/// `hugepages-<size>` resource limits as page size name -> bytes.
fn hugepage_requests(
    limits: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
) -> HashMap<String, u64> {
    list(limits)
        .into_iter()
        .filter_map(|(k, v)| {
            let size = Amount::parse(k.strip_prefix("hugepages-")?)?.value();
            let name = unit_size(u64::try_from(size).ok()?)?;
            Some((name, u64::try_from(v.value()).unwrap_or(0)))
        })
        .collect()
}

/// GetHugepageLimitsFromResources: 0 for every size the host offers, the container's own
/// limit where it sets one.
fn hugepage_limits(c: &Container, node: &NodeFacts) -> Vec<cri::HugepageLimit> {
    let wanted = hugepage_requests(c.resources.as_ref().and_then(|r| r.limits.as_ref()));
    node.hugepage_sizes
        .iter()
        .map(|size| cri::HugepageLimit {
            page_size: size.clone(),
            limit: wanted.get(size).copied().unwrap_or(0),
        })
        .collect()
}

/// calculateLinuxResources: shares from the cpu request (the limit when there is no
/// request), quota over the 100 ms period from the limit (0 = none), the memory limit,
/// and on cgroup v2 `memory.oom.group` (kubelet's singleProcessOOMKill defaults to false
/// there: the whole container goes on OOM).
fn linux_resources(
    cpu_request: Option<Amount>,
    cpu_limit: Amount,
    memory_limit: Amount,
    node: &NodeFacts,
) -> cri::LinuxContainerResources {
    let shares = milli_cpu_to_shares(cpu_request.unwrap_or(cpu_limit).milli_value());
    let mut r = cri::LinuxContainerResources {
        cpu_shares: i64::try_from(shares).unwrap_or(i64::MAX),
        memory_limit_in_bytes: memory_limit.value(),
        cpu_period: QUOTA_PERIOD,
        cpu_quota: milli_cpu_to_quota(cpu_limit.milli_value(), QUOTA_PERIOD),
        ..Default::default()
    };
    if node.cgroup_v2 {
        r.unified.insert("memory.oom.group".into(), "1".into());
    }
    r
}

/// generateLinuxContainerResources for `container` of `pod`: shares, quota, memory limit,
/// oom_score_adj, huge page limits and (NoSwap, kubelet's default swap behaviour) swap
/// set to none.
pub fn container_resources(
    pod: &Pod,
    container: &Container,
    node: &NodeFacts,
) -> cri::LinuxContainerResources {
    let res = container.resources.as_ref();
    let requests = list(res.and_then(|r| r.requests.as_ref()));
    let limits = list(res.and_then(|r| r.limits.as_ref()));
    let mut r = linux_resources(
        requests.get("cpu").copied(),
        get(&limits, "cpu"),
        get(&limits, "memory"),
        node,
    );
    let mut adj = container_oom_score_adj(pod, container, node.memory_capacity);
    if !node.can_lower_oom_score_adj {
        adj = adj.max(0);
    }
    r.oom_score_adj = adj;
    r.hugepage_limits = hugepage_limits(container, node);
    if node.swap_controller {
        if node.cgroup_v2 {
            r.unified.insert("memory.swap.max".into(), "0".into());
        } else {
            // memory+swap equal to memory: no swap beyond the limit (ignored without one)
            r.memory_swap_limit_in_bytes = r.memory_limit_in_bytes;
        }
    }
    r
}

/// calculateSandboxResources, for LinuxPodSandboxConfig.resources: the pod's summed
/// requests and limits (pod-level ones where set), overhead excluded. Always `Some`:
/// kubelet sends them for every sandbox.
pub fn sandbox_resources(pod: &Pod, node: &NodeFacts) -> Option<cri::LinuxContainerResources> {
    let req = pod_requests(pod, false);
    let (lim, _, _) = pod_limits(pod, false);
    Some(linux_resources(
        req.get("cpu").copied(),
        get(&lim, "cpu"),
        get(&lim, "memory"),
        node,
    ))
}

/// convertOverheadToLinuxResources, for LinuxPodSandboxConfig.overhead: the pod's
/// overhead as requests equal to limits; `None` without one.
pub fn sandbox_overhead(pod: &Pod, node: &NodeFacts) -> Option<cri::LinuxContainerResources> {
    pod.spec.as_ref()?.overhead.as_ref()?;
    let o = pod_overhead(pod);
    let cpu = get(&o, "cpu");
    Some(linux_resources(Some(cpu), cpu, get(&o, "memory"), node))
}

#[cfg(test)]
mod tests {
    use super::super::qos::tests::{ctr, pod, rl};
    use super::*;

    fn node(v2: bool) -> NodeFacts {
        NodeFacts {
            memory_capacity: 4_000_000_000,
            cpu_capacity_millis: 2000,
            can_lower_oom_score_adj: true,
            cgroup_v2: v2,
            swap_controller: true,
            hugepage_sizes: vec!["1GB".into(), "2MB".into()],
        }
    }

    /// upstream TestGenerateLinuxContainerResources / calculateLinuxResources cases.
    #[test]
    fn cpu_and_memory_as_upstream() {
        let p = pod(
            vec![ctr(
                "a",
                &[("cpu", "1"), ("memory", "128Mi")],
                &[("cpu", "2"), ("memory", "256Mi")],
            )],
            vec![],
        );
        let r = container_resources(&p, &p.spec.as_ref().unwrap().containers[0], &node(false));
        assert_eq!(r.cpu_shares, 1024);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.cpu_quota, 200_000);
        assert_eq!(r.memory_limit_in_bytes, 256 << 20);
        assert_eq!(r.memory_swap_limit_in_bytes, 256 << 20);
        assert!(r.unified.is_empty(), "no unified map on v1");
        // burstable: 1000 - 1000 * 128Mi / 4e9 = 967
        assert_eq!(r.oom_score_adj, 967);

        // no request: shares from the limit
        let p = pod(vec![ctr("a", &[], &[("cpu", "500m")])], vec![]);
        let r = container_resources(&p, &p.spec.as_ref().unwrap().containers[0], &node(false));
        assert_eq!((r.cpu_shares, r.cpu_quota), (512, 50_000));

        // nothing: minimum shares, no quota, no memory limit, best effort
        let p = pod(vec![ctr("a", &[], &[])], vec![]);
        let r = container_resources(&p, &p.spec.as_ref().unwrap().containers[0], &node(false));
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (2, 0, 100_000, 0, 1000)
        );
        // a tiny cpu limit still gets the 1 ms minimum quota
        let p = pod(vec![ctr("a", &[("cpu", "1m")], &[("cpu", "1m")])], vec![]);
        let r = container_resources(&p, &p.spec.as_ref().unwrap().containers[0], &node(false));
        assert_eq!((r.cpu_shares, r.cpu_quota), (2, 1000));
    }

    #[test]
    fn unified_map_on_v2() {
        let p = pod(vec![ctr("a", &[], &[("memory", "64Mi")])], vec![]);
        let r = container_resources(&p, &p.spec.as_ref().unwrap().containers[0], &node(true));
        let want: HashMap<String, String> = [
            ("memory.oom.group".to_string(), "1".to_string()),
            ("memory.swap.max".to_string(), "0".to_string()),
        ]
        .into();
        assert_eq!(r.unified, want);
        assert_eq!(r.memory_swap_limit_in_bytes, 0);
        let mut n = node(true);
        n.swap_controller = false;
        let r = container_resources(&p, &p.spec.as_ref().unwrap().containers[0], &n);
        assert_eq!(r.unified.len(), 1);
    }

    #[test]
    fn oom_score_clamped_without_cap_sys_resource() {
        let p = pod(
            vec![ctr(
                "a",
                &[("cpu", "1"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1Gi")],
            )],
            vec![],
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(container_resources(&p, c, &node(false)).oom_score_adj, -997);
        let mut n = node(false);
        n.can_lower_oom_score_adj = false;
        assert_eq!(container_resources(&p, c, &n).oom_score_adj, 0);
    }

    #[test]
    fn hugepages_zero_for_every_size_but_the_requested() {
        let p = pod(
            vec![ctr(
                "a",
                &[("memory", "1Gi")],
                &[("memory", "1Gi"), ("hugepages-2Mi", "4Mi")],
            )],
            vec![],
        );
        let r = container_resources(&p, &p.spec.as_ref().unwrap().containers[0], &node(false));
        assert_eq!(
            r.hugepage_limits,
            vec![
                cri::HugepageLimit {
                    page_size: "1GB".into(),
                    limit: 0
                },
                cri::HugepageLimit {
                    page_size: "2MB".into(),
                    limit: 4 << 20
                },
            ]
        );
    }

    #[test]
    fn page_sizes_from_sysfs() {
        let root = std::env::temp_dir().join(format!("berth-cm-huge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "hugepages-2048kB",
            "hugepages-1048576kB",
            "hugepages-64kB",
            "other",
        ] {
            std::fs::create_dir_all(root.join("kernel/mm/hugepages").join(d)).expect("mkdir");
        }
        assert_eq!(hugepage_sizes(&root), vec!["1GB", "2MB", "64KB"]);
        assert!(hugepage_sizes(&root.join("none")).is_empty());
        std::fs::remove_dir_all(&root).expect("rm");
        assert_eq!(unit_size(2 << 20).as_deref(), Some("2MB"));
        assert_eq!(unit_size(1 << 30).as_deref(), Some("1GB"));
        assert_eq!(
            unit_size(1536 << 10),
            None,
            "not a whole number of the largest unit"
        );
    }

    #[test]
    fn sandbox_resources_sum_the_pod() {
        let mut p = pod(
            vec![
                ctr(
                    "a",
                    &[("cpu", "250m")],
                    &[("cpu", "500m"), ("memory", "100Mi")],
                ),
                ctr(
                    "b",
                    &[("cpu", "250m")],
                    &[("cpu", "500m"), ("memory", "100Mi")],
                ),
            ],
            vec![],
        );
        p.spec.as_mut().unwrap().overhead = rl(&[("cpu", "100m"), ("memory", "10Mi")]);
        let r = sandbox_resources(&p, &node(false)).expect("resources");
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (512, 100_000, 100_000)
        );
        assert_eq!(
            r.memory_limit_in_bytes,
            200 << 20,
            "overhead is not part of it"
        );
        assert_eq!(r.oom_score_adj, 0);
        let o = sandbox_overhead(&p, &node(false)).expect("overhead");
        assert_eq!(
            (o.cpu_shares, o.cpu_quota, o.memory_limit_in_bytes),
            (102, 10_000, 10 << 20)
        );
        p.spec.as_mut().unwrap().overhead = None;
        assert!(sandbox_overhead(&p, &node(false)).is_none());
        // no cpu request anywhere: shares from the limit
        let p = pod(vec![ctr("a", &[], &[("cpu", "1")])], vec![]);
        assert_eq!(
            sandbox_resources(&p, &node(true)).expect("r").cpu_shares,
            1024
        );
    }
}
