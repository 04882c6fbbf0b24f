//! CRI LinuxContainerResources into OCI linux.resources and process.oomScoreAdj, as
//! containerd's WithResources and WithOOMScoreAdj do, with the values checked here so
//! that a bad one is named before any cgroup exists.

use std::collections::HashMap;

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxResources,
};

use super::error::{Result, SpecError};

/// The CRI resource fields (0 / empty = not set, as in CRI).
#[derive(Debug, Clone, Default)]
pub struct ResourcesRequest {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// (page_size such as "2MB", limit in bytes)
    pub hugepage_limits: Vec<(String, u64)>,
    pub unified: HashMap<String, String>,
}

/// What the host's cgroups offer.
#[derive(Debug, Clone, Copy, Default)]
pub struct CgroupFacts {
    /// Only cgroup v2 is mounted (containerd's isUnifiedCgroupsMode).
    pub unified: bool,
    /// memory.memsw.* (v1) or memory.swap.max (v2) exists.
    pub swap: bool,
    pub hugetlb: bool,
}

impl ResourcesRequest {
    /// The CRI message's fields.
    pub fn from_cri(r: &cri_proto::v1::LinuxContainerResources) -> Self {
        Self {
            cpu_period: r.cpu_period,
            cpu_quota: r.cpu_quota,
            cpu_shares: r.cpu_shares,
            memory_limit_in_bytes: r.memory_limit_in_bytes,
            memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
            oom_score_adj: r.oom_score_adj,
            cpuset_cpus: r.cpuset_cpus.clone(),
            cpuset_mems: r.cpuset_mems.clone(),
            hugepage_limits: r
                .hugepage_limits
                .iter()
                .map(|h| (h.page_size.clone(), h.limit))
                .collect(),
            unified: r.unified.clone(),
        }
    }
}

/// UpdateContainerResources: the new limits of a running container, without device rules
/// (those do not change), as containerd's updateOCIResource applies WithResources.
pub fn update_resources(
    object: &str,
    r: &cri_proto::v1::LinuxContainerResources,
    facts: &CgroupFacts,
    warnings: &mut Vec<String>,
) -> Result<LinuxResources> {
    let mut res = resources(
        object,
        &ResourcesRequest::from_cri(r),
        facts,
        vec![],
        warnings,
    )?;
    res.set_devices(None);
    Ok(res)
}

const FIELD: &str = "linux.resources";

/// A cpuset list such as `0-3,8,10-11`.
pub fn valid_cpuset(s: &str) -> bool {
    s.split(',').all(|part| {
        let mut it = part.splitn(2, '-');
        let a = it.next().and_then(|x| x.parse::<u32>().ok());
        match (a, it.next()) {
            (Some(_), None) => true,
            (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
            _ => false,
        }
    })
}

fn valid_page_size(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["KB", "MB", "GB", "TB", "PB"].contains(&unit)
}

/// The resources section: `devices` is the device cgroup list (containerd's default deny
/// plus the container's device rules); warnings say what the host made berth skip.
pub fn resources(
    object: &str,
    r: &ResourcesRequest,
    facts: &CgroupFacts,
    devices: Vec<LinuxDeviceCgroup>,
    warnings: &mut Vec<String>,
) -> Result<LinuxResources> {
    let bad = |f: &str, reason: String| SpecError::invalid(object, format!("{FIELD}.{f}"), reason);
    let mut cpu = LinuxCpu::default();
    if r.cpu_period != 0 {
        if !(1000..=1_000_000).contains(&r.cpu_period) {
            return Err(bad(
                "cpu_period",
                format!("{} is outside 1000..1000000 microseconds", r.cpu_period),
            ));
        }
        cpu.set_period(Some(r.cpu_period as u64));
    }
    if r.cpu_quota != 0 {
        if r.cpu_quota != -1 && r.cpu_quota < 1000 {
            return Err(bad(
                "cpu_quota",
                format!(
                    "{} is below 1000 microseconds (-1 means no limit)",
                    r.cpu_quota
                ),
            ));
        }
        cpu.set_quota(Some(r.cpu_quota));
    }
    if r.cpu_shares != 0 {
        if r.cpu_shares < 0 {
            return Err(bad("cpu_shares", format!("{} is negative", r.cpu_shares)));
        }
        cpu.set_shares(Some(r.cpu_shares as u64));
    }
    if !r.cpuset_cpus.is_empty() {
        if !valid_cpuset(&r.cpuset_cpus) {
            return Err(bad(
                "cpuset_cpus",
                format!("{:?} is not a CPU list such as 0-3,8", r.cpuset_cpus),
            ));
        }
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
    }
    if !r.cpuset_mems.is_empty() {
        if !valid_cpuset(&r.cpuset_mems) {
            return Err(bad(
                "cpuset_mems",
                format!("{:?} is not a memory node list such as 0-1", r.cpuset_mems),
            ));
        }
        cpu.set_mems(Some(r.cpuset_mems.clone()));
    }
    let mut mem = LinuxMemory::default();
    let limit = r.memory_limit_in_bytes;
    if limit < 0 {
        return Err(bad("memory_limit_in_bytes", format!("{limit} is negative")));
    }
    if limit != 0 {
        mem.set_limit(Some(limit));
        // Swap equal to the limit: no swapping by default.
        if r.memory_swap_limit_in_bytes == 0 && facts.swap {
            mem.set_swap(Some(limit));
        }
    }
    let swap = r.memory_swap_limit_in_bytes;
    if swap != 0 {
        if swap < -1 || (swap > 0 && limit > 0 && swap < limit) {
            return Err(bad(
                "memory_swap_limit_in_bytes",
                format!("{swap} must be -1 (unlimited) or at least memory_limit_in_bytes {limit}"),
            ));
        }
        if facts.swap {
            mem.set_swap(Some(swap));
        } else {
            warnings.push(format!(
                "{object}: memory_swap_limit_in_bytes ignored: this host has no swap accounting"
            ));
        }
    }
    let mut res = LinuxResources::default();
    if cpu != LinuxCpu::default() {
        res.set_cpu(Some(cpu));
    }
    if mem != LinuxMemory::default() {
        res.set_memory(Some(mem));
    }
    let mut huge = vec![];
    for (i, (size, l)) in r.hugepage_limits.iter().enumerate() {
        if !valid_page_size(size) {
            return Err(bad(
                &format!("hugepage_limits[{i}].page_size"),
                format!("{size:?} is not a page size such as 2MB or 1GB"),
            ));
        }
        let Ok(limit) = i64::try_from(*l) else {
            return Err(bad(
                &format!("hugepage_limits[{i}].limit"),
                format!("{l} is beyond what a cgroup takes"),
            ));
        };
        if !facts.hugetlb {
            // kubelet sends a limit of 0 for every page size the kernel offers, hugetlb
            // controller or not (containerd's tolerate_missing_hugetlb_controller drops
            // them all): without the controller there is nothing to apply. A pod that
            // asks for huge pages gets a real limit, which this host cannot enforce.
            if limit != 0 {
                return Err(SpecError::unsupported(
                    object,
                    format!("{FIELD}.hugepage_limits[{i}].limit"),
                    format!(
                        "a limit of {limit} bytes of {size} pages needs the hugetlb cgroup \
                         controller, which this host does not mount or enable for its cgroups"
                    ),
                ));
            }
            continue;
        }
        let mut h = LinuxHugepageLimit::default();
        h.set_page_size(size.clone());
        h.set_limit(limit);
        huge.push(h);
    }
    if !huge.is_empty() {
        res.set_hugepage_limits(Some(huge));
    }
    if !r.unified.is_empty() {
        if !facts.unified {
            return Err(SpecError::unsupported(
                object,
                format!("{FIELD}.unified"),
                "cgroup v2 settings need a cgroup v2 host; this one uses cgroup v1",
            ));
        }
        res.set_unified(Some(r.unified.clone()));
    }
    let mut deny = LinuxDeviceCgroup::default();
    deny.set_allow(false);
    deny.set_access(Some("rwm".into()));
    let mut all = vec![deny];
    all.extend(devices);
    res.set_devices(Some(all));
    Ok(res)
}

/// The container's oom_score_adj. CRI's value is computed by kubelet from the pod's QoS
/// class (-997 Guaranteed, 1000 BestEffort, 2..999 Burstable), never typed by a user, so
/// when it is below this process's own value and the host cannot lower it (no
/// CAP_SYS_RESOURCE) it is raised to that value with a warning, as containerd does with
/// `restrict_oom_score_adj`. `restrict` forces that even on a host that could lower it.
pub fn oom_score_adj(
    object: &str,
    requested: i64,
    current: i32,
    can_lower: bool,
    restrict: bool,
    warnings: &mut Vec<String>,
) -> Result<i32> {
    if !(-1000..=1000).contains(&requested) {
        return Err(SpecError::invalid(
            object,
            "linux.resources.oom_score_adj",
            format!("{requested} is outside -1000..1000"),
        ));
    }
    let adj = requested as i32;
    if adj < current && (restrict || !can_lower) {
        warnings.push(format!(
            "{object}: oom_score_adj {adj} raised to {current}: lowering it below berth's own \
             value needs CAP_SYS_RESOURCE"
        ));
        return Ok(current);
    }
    Ok(adj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> CgroupFacts {
        CgroupFacts {
            unified: false,
            swap: true,
            hugetlb: true,
        }
    }

    // containerd customopts.WithResources
    #[test]
    fn resources_map_to_oci() {
        let r = ResourcesRequest {
            cpu_period: 100000,
            cpu_quota: 50000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![("2MB".into(), 4 << 20)],
            ..Default::default()
        };
        let mut w = vec![];
        let res = resources("c", &r, &facts(), vec![], &mut w).expect("res");
        let cpu = res.cpu().clone().expect("cpu");
        assert_eq!(cpu.period(), Some(100000));
        assert_eq!(cpu.quota(), Some(50000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        let mem = (*res.memory()).expect("mem");
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(64 << 20), "swap = limit by default");
        assert_eq!(res.hugepage_limits().as_ref().map(Vec::len), Some(1));
        let devs = res.devices().clone().expect("devices");
        assert!(!devs[0].allow() && devs[0].access().as_deref() == Some("rwm"));
        assert!(w.is_empty());

        let empty =
            resources("c", &ResourcesRequest::default(), &facts(), vec![], &mut w).expect("empty");
        assert!(empty.cpu().is_none() && empty.memory().is_none());
    }

    #[test]
    fn swap_and_hugetlb_depend_on_the_host() {
        let r = ResourcesRequest {
            memory_limit_in_bytes: 100,
            memory_swap_limit_in_bytes: 200,
            hugepage_limits: vec![("1GB".into(), 1 << 30)],
            ..Default::default()
        };
        let mut w = vec![];
        let res = resources("c", &r, &facts(), vec![], &mut w).expect("res");
        assert_eq!(res.memory().as_ref().and_then(|m| m.swap()), Some(200));
        let bare = CgroupFacts::default();
        // a real huge-page limit on a host without hugetlb names the field
        let e = resources("c", &r, &bare, vec![], &mut w).expect_err("hugetlb");
        assert!(
            e.to_string()
                .contains("linux.resources.hugepage_limits[0].limit"),
            "{e}"
        );
        // kubelet's zero limits for every page size are nothing to apply there
        let kubelet = ResourcesRequest {
            hugepage_limits: vec![("2MB".into(), 0), ("1GB".into(), 0)],
            ..r.clone()
        };
        w.clear();
        let res = resources("c", &kubelet, &bare, vec![], &mut w).expect("res");
        assert_eq!(res.memory().as_ref().and_then(|m| m.swap()), None);
        assert!(res.hugepage_limits().is_none());
        assert_eq!(w.len(), 1, "only swap is warned about: {w:?}");
        let res = resources("c", &kubelet, &facts(), vec![], &mut w).expect("res");
        assert_eq!(res.hugepage_limits().as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn bad_resources_name_the_field() {
        let cases: Vec<(ResourcesRequest, &str)> = vec![
            (
                ResourcesRequest {
                    cpu_period: 10,
                    ..Default::default()
                },
                "cpu_period",
            ),
            (
                ResourcesRequest {
                    cpu_quota: 5,
                    ..Default::default()
                },
                "cpu_quota",
            ),
            (
                ResourcesRequest {
                    cpu_shares: -2,
                    ..Default::default()
                },
                "cpu_shares",
            ),
            (
                ResourcesRequest {
                    cpuset_cpus: "0-x".into(),
                    ..Default::default()
                },
                "cpuset_cpus",
            ),
            (
                ResourcesRequest {
                    cpuset_mems: "3-1".into(),
                    ..Default::default()
                },
                "cpuset_mems",
            ),
            (
                ResourcesRequest {
                    memory_limit_in_bytes: -5,
                    ..Default::default()
                },
                "memory_limit_in_bytes",
            ),
            (
                ResourcesRequest {
                    memory_limit_in_bytes: 100,
                    memory_swap_limit_in_bytes: 50,
                    ..Default::default()
                },
                "memory_swap_limit_in_bytes",
            ),
            (
                ResourcesRequest {
                    hugepage_limits: vec![("2M".into(), 1)],
                    ..Default::default()
                },
                "hugepage_limits[0].page_size",
            ),
            (
                ResourcesRequest {
                    unified: [("memory.high".to_string(), "1G".to_string())].into(),
                    ..Default::default()
                },
                "linux.resources.unified",
            ),
        ];
        for (r, want) in cases {
            let e = resources("ctr", &r, &facts(), vec![], &mut vec![]).expect_err(want);
            assert!(e.to_string().contains(want), "{e}");
        }
        let v2 = CgroupFacts {
            unified: true,
            ..facts()
        };
        let r = ResourcesRequest {
            unified: [("memory.high".to_string(), "1G".to_string())].into(),
            ..quota_minus_one()
        };
        let res = resources("c", &r, &v2, vec![], &mut vec![]).expect("v2");
        assert!(res.unified().is_some());
        assert_eq!(res.cpu().as_ref().and_then(|c| c.quota()), Some(-1));
    }

    fn quota_minus_one() -> ResourcesRequest {
        ResourcesRequest {
            cpu_quota: -1,
            ..Default::default()
        }
    }

    #[test]
    fn update_keeps_device_rules_out() {
        let r = cri_proto::v1::LinuxContainerResources {
            cpu_quota: 20000,
            cpu_period: 100000,
            memory_limit_in_bytes: 1 << 30,
            hugepage_limits: vec![cri_proto::v1::HugepageLimit {
                page_size: "2MB".into(),
                limit: 1 << 21,
            }],
            ..Default::default()
        };
        let res = update_resources("c", &r, &facts(), &mut vec![]).expect("update");
        assert!(res.devices().is_none());
        assert_eq!(res.cpu().as_ref().and_then(|c| c.quota()), Some(20000));
        assert_eq!(res.hugepage_limits().as_ref().map(Vec::len), Some(1));
        let bad = cri_proto::v1::LinuxContainerResources {
            cpu_period: 5,
            ..Default::default()
        };
        let e = update_resources("c", &bad, &facts(), &mut vec![]).expect_err("bad");
        assert!(e.to_string().contains("linux.resources.cpu_period"), "{e}");
    }

    // containerd customopts.WithOOMScoreAdj / restrictOOMScoreAdj
    #[test]
    fn oom_score_adj_clamps_kubelet_defaults() {
        let cases: &[(i64, i32, bool, bool, i32, usize)] = &[
            (-997, 0, false, false, 0, 1),
            (-997, 0, true, false, -997, 0),
            (-997, 0, true, true, 0, 1),
            (1000, 0, false, false, 1000, 0),
            (500, 600, false, false, 600, 1),
            (2, -999, false, false, 2, 0),
        ];
        for (req, cur, can, restrict, want, warns) in cases {
            let mut w = vec![];
            let got = oom_score_adj("c", *req, *cur, *can, *restrict, &mut w).expect("adj");
            assert_eq!(got, *want, "{req} {cur} {can} {restrict}");
            assert_eq!(w.len(), *warns);
        }
        let e = oom_score_adj("c", 1001, 0, true, false, &mut vec![]).expect_err("range");
        assert!(
            e.to_string().contains("linux.resources.oom_score_adj"),
            "{e}"
        );
    }
}
