//! linux.resources -> the cgroup files to write, as plain data.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::{CgroupError, Layout, Result};

/// One write of `value` into `file` of the cgroup directory for `controller` (a v1
/// controller or `unified`); `field` names the spec field it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWrite {
    pub controller: String,
    pub file: String,
    pub value: String,
    pub field: String,
}

struct Planner<'a> {
    layout: &'a Layout,
    out: Vec<FileWrite>,
}

impl Planner<'_> {
    /// Where `controller` is: the v1 hierarchy's key, or `unified`.
    fn target(&self, controller: &str, field: &str) -> Result<(String, bool)> {
        match self.layout.controller(controller) {
            Some(false) => Ok((controller.to_string(), false)),
            Some(true) => Ok(("unified".to_string(), true)),
            None => Err(CgroupError::MissingController {
                field: field.to_string(),
                controller: controller.to_string(),
                version: if self.layout.is_v2_only() { "v2" } else { "v1" },
            }),
        }
    }

    /// [`Planner::target`] for a value that asks for no limit (`unlimited`): on a host
    /// without the controller there is nothing to enforce, so nothing is planned (`None`)
    /// rather than an error. kubelet sends a huge-page limit of 0 for every page size the
    /// kernel offers, whether or not the host has a hugetlb controller; runc's v1 manager
    /// and containerd's CRI plugin skip what the host cannot apply in the same way.
    fn target_unless_unlimited(
        &self,
        controller: &str,
        field: &str,
        unlimited: bool,
    ) -> Result<Option<(String, bool)>> {
        match self.target(controller, field) {
            Err(CgroupError::MissingController { .. }) if unlimited => Ok(None),
            r => r.map(Some),
        }
    }

    fn push(&mut self, controller: &str, file: &str, value: String, field: &str) {
        self.out.push(FileWrite {
            controller: controller.to_string(),
            file: file.to_string(),
            value,
            field: field.to_string(),
        });
    }
}

/// Converts cpu shares (v1, 2..262144) to cpu.weight (v2, 1..10000) as runc and crun do.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

/// Plans every write `r` asks for on `layout`. A field the host cannot honour is an error
/// naming it; a field left out asks for nothing.
pub fn plan(layout: &Layout, r: &LinuxResources) -> Result<Vec<FileWrite>> {
    let mut p = Planner {
        layout,
        out: Vec::new(),
    };
    if let Some(cpu) = r.cpu() {
        let need = cpu.shares().is_some()
            || cpu.quota().is_some()
            || cpu.period().is_some()
            || cpu.realtime_runtime().is_some()
            || cpu.realtime_period().is_some()
            || cpu.idle().is_some()
            || cpu.burst().is_some();
        if need {
            let (c, v2) = p.target("cpu", "linux.resources.cpu")?;
            if v2 {
                if let Some(s) = cpu.shares().filter(|s| *s > 0) {
                    let f = "linux.resources.cpu.shares";
                    p.push(&c, "cpu.weight", shares_to_weight(s).to_string(), f);
                }
                if cpu.quota().is_some() || cpu.period().is_some() {
                    let q = match cpu.quota() {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".into(),
                    };
                    let per = cpu.period().unwrap_or(100_000);
                    p.push(
                        &c,
                        "cpu.max",
                        format!("{q} {per}"),
                        "linux.resources.cpu.quota",
                    );
                }
                if let Some(b) = cpu.burst() {
                    p.push(
                        &c,
                        "cpu.max.burst",
                        b.to_string(),
                        "linux.resources.cpu.burst",
                    );
                }
                if let Some(i) = cpu.idle() {
                    p.push(&c, "cpu.idle", i.to_string(), "linux.resources.cpu.idle");
                }
            } else {
                if let Some(s) = cpu.shares().filter(|s| *s > 0) {
                    p.push(
                        &c,
                        "cpu.shares",
                        s.to_string(),
                        "linux.resources.cpu.shares",
                    );
                }
                // The period goes first: a quota is checked against the current period.
                if let Some(per) = cpu.period().filter(|v| *v > 0) {
                    let f = "linux.resources.cpu.period";
                    p.push(&c, "cpu.cfs_period_us", per.to_string(), f);
                }
                if let Some(q) = cpu.quota().filter(|v| *v != 0) {
                    let f = "linux.resources.cpu.quota";
                    p.push(&c, "cpu.cfs_quota_us", q.to_string(), f);
                }
                if let Some(b) = cpu.burst() {
                    p.push(
                        &c,
                        "cpu.cfs_burst_us",
                        b.to_string(),
                        "linux.resources.cpu.burst",
                    );
                }
                if let Some(v) = cpu.realtime_period() {
                    let f = "linux.resources.cpu.realtimePeriod";
                    p.push(&c, "cpu.rt_period_us", v.to_string(), f);
                }
                if let Some(v) = cpu.realtime_runtime() {
                    let f = "linux.resources.cpu.realtimeRuntime";
                    p.push(&c, "cpu.rt_runtime_us", v.to_string(), f);
                }
            }
        }
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            let (c, v2) = p.target("cpuset", "linux.resources.cpu.cpus")?;
            let _ = v2;
            let pre = "cpuset.";
            if let Some(s) = cpu.cpus().as_ref().filter(|s| !s.is_empty()) {
                p.push(
                    &c,
                    &format!("{pre}cpus"),
                    s.clone(),
                    "linux.resources.cpu.cpus",
                );
            }
            if let Some(s) = cpu.mems().as_ref().filter(|s| !s.is_empty()) {
                p.push(
                    &c,
                    &format!("{pre}mems"),
                    s.clone(),
                    "linux.resources.cpu.mems",
                );
            }
        }
    }
    if let Some(m) = r.memory() {
        let need = m.limit().is_some()
            || m.reservation().is_some()
            || m.swap().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer().is_some();
        if need {
            let (c, v2) = p.target("memory", "linux.resources.memory")?;
            let val = |v: i64| {
                if v < 0 {
                    "-1".to_string()
                } else {
                    v.to_string()
                }
            };
            if let (Some(l), Some(s)) = (m.limit(), m.swap())
                && s > 0
                && l > 0
                && s < l
            {
                return Err(CgroupError::Invalid {
                    field: "linux.resources.memory.swap".into(),
                    reason: format!("{s} is below memory.limit {l} (swap is memory+swap)"),
                });
            }
            if v2 {
                let max = |v: i64| {
                    if v < 0 {
                        "max".to_string()
                    } else {
                        v.to_string()
                    }
                };
                if let Some(l) = m.limit() {
                    p.push(&c, "memory.max", max(l), "linux.resources.memory.limit");
                }
                if let Some(r) = m.reservation() {
                    let f = "linux.resources.memory.reservation";
                    p.push(&c, "memory.low", max(r), f);
                }
                if let Some(s) = m.swap() {
                    // The spec's swap is memory+swap; v2 limits swap alone.
                    let v = match (s, m.limit()) {
                        (s, _) if s < 0 => "max".to_string(),
                        (s, Some(l)) if l > 0 => (s - l).max(0).to_string(),
                        (s, _) => s.to_string(),
                    };
                    p.push(&c, "memory.swap.max", v, "linux.resources.memory.swap");
                }
                if m.disable_oom_killer() == Some(true) {
                    return Err(CgroupError::Invalid {
                        field: "linux.resources.memory.disableOOMKiller".into(),
                        reason: "cgroup v2 has no way to disable the OOM killer".into(),
                    });
                }
            } else {
                if let Some(l) = m.limit() {
                    let f = "linux.resources.memory.limit";
                    p.push(&c, "memory.limit_in_bytes", val(l), f);
                }
                if let Some(r) = m.reservation() {
                    let f = "linux.resources.memory.reservation";
                    p.push(&c, "memory.soft_limit_in_bytes", val(r), f);
                }
                if let Some(s) = m.swap() {
                    let f = "linux.resources.memory.swap";
                    p.push(&c, "memory.memsw.limit_in_bytes", val(s), f);
                }
                if let Some(s) = m.swappiness() {
                    if s > 100 {
                        return Err(CgroupError::Invalid {
                            field: "linux.resources.memory.swappiness".into(),
                            reason: format!("{s} is above 100"),
                        });
                    }
                    let f = "linux.resources.memory.swappiness";
                    p.push(&c, "memory.swappiness", s.to_string(), f);
                }
                if m.disable_oom_killer() == Some(true) {
                    let f = "linux.resources.memory.disableOOMKiller";
                    p.push(&c, "memory.oom_control", "1".into(), f);
                }
            }
        }
    }
    if let Some(pids) = r.pids()
        && let Some((c, _)) =
            p.target_unless_unlimited("pids", "linux.resources.pids", pids.limit() <= 0)?
    {
        let v = if pids.limit() > 0 {
            pids.limit().to_string()
        } else {
            "max".into()
        };
        p.push(&c, "pids.max", v, "linux.resources.pids.limit");
    }
    if let Some(b) = r.block_io() {
        if let Some(w) = b.weight() {
            let (c, v2) = p.target(
                if layout.controller("io") == Some(true) {
                    "io"
                } else {
                    "blkio"
                },
                "linux.resources.blockIO.weight",
            )?;
            if v2 {
                // blkio weight 10..1000 -> io.weight 1..10000
                let v = 1 + (u64::from(w).clamp(10, 1000) - 10) * 9999 / 990;
                p.push(
                    &c,
                    "io.weight",
                    format!("default {v}"),
                    "linux.resources.blockIO.weight",
                );
            } else {
                p.push(
                    &c,
                    "blkio.weight",
                    w.to_string(),
                    "linux.resources.blockIO.weight",
                );
            }
        }
        let throttles = [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "rbps",
                "throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "wbps",
                "throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "riops",
                "throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "wiops",
                "throttleWriteIOPSDevice",
            ),
        ];
        for (list, v1file, v2key, name) in throttles {
            for d in list.iter().flatten() {
                let field = format!("linux.resources.blockIO.{name}");
                let (c, v2) = p.target(
                    if layout.controller("io") == Some(true) {
                        "io"
                    } else {
                        "blkio"
                    },
                    &field,
                )?;
                if v2 {
                    let v = format!("{}:{} {v2key}={}", d.major(), d.minor(), d.rate());
                    p.push(&c, "io.max", v, &field);
                } else {
                    let v = format!("{}:{} {}", d.major(), d.minor(), d.rate());
                    p.push(&c, v1file, v, &field);
                }
            }
        }
        for d in b.weight_device().iter().flatten() {
            let field = "linux.resources.blockIO.weightDevice";
            let (c, v2) = p.target(
                if layout.controller("io") == Some(true) {
                    "io"
                } else {
                    "blkio"
                },
                field,
            )?;
            if let Some(w) = d.weight() {
                let (file, v) = if v2 {
                    ("io.weight", format!("{}:{} {}", d.major(), d.minor(), w))
                } else {
                    (
                        "blkio.weight_device",
                        format!("{}:{} {}", d.major(), d.minor(), w),
                    )
                };
                p.push(&c, file, v, field);
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        let field = format!("linux.resources.hugepageLimits[{}]", h.page_size());
        // A limit of 0 is kubelet's default for every page size (and below 0 means none):
        // without a hugetlb controller nothing can use huge pages under a limit anyway.
        let Some((c, v2)) = p.target_unless_unlimited("hugetlb", &field, h.limit() <= 0)? else {
            continue;
        };
        let size = h.page_size();
        if v2 {
            p.push(
                &c,
                &format!("hugetlb.{size}.max"),
                h.limit().to_string(),
                &field,
            );
        } else {
            let f = format!("hugetlb.{size}.limit_in_bytes");
            p.push(&c, &f, h.limit().to_string(), &field);
        }
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            let (c, _) = p.target("net_cls", "linux.resources.network.classID")?;
            p.push(
                &c,
                "net_cls.classid",
                id.to_string(),
                "linux.resources.network.classID",
            );
        }
        for prio in n.priorities().iter().flatten() {
            let f = "linux.resources.network.priorities";
            let (c, _) = p.target("net_prio", f)?;
            let v = format!("{} {}", prio.name(), prio.priority());
            p.push(&c, "net_prio.ifpriomap", v, f);
        }
    }
    if let Some(devs) = r.devices().as_ref().filter(|d| !d.is_empty()) {
        match layout.controller("devices") {
            Some(false) => {
                for (i, d) in devs.iter().enumerate() {
                    let field = format!("linux.resources.devices[{i}]");
                    let file = if d.allow() {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    p.push("devices", file, device_rule(d, &field)?, &field);
                }
                // The devices every container gets under /dev stay usable, as in runc.
                for rule in DEFAULT_DEVICE_ALLOWS {
                    p.push(
                        "devices",
                        "devices.allow",
                        (*rule).into(),
                        "linux.devices (defaults)",
                    );
                }
            }
            // v2: a BPF program, built from device_rules() by the caller at create
            _ if layout.is_v2_only() => {
                for (i, d) in devs.iter().enumerate() {
                    device_rule(d, &format!("linux.resources.devices[{i}]"))?;
                }
            }
            _ => {
                return Err(CgroupError::MissingController {
                    field: "linux.resources.devices".into(),
                    controller: "devices".into(),
                    version: "v1",
                });
            }
        }
    }
    if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        if layout.unified().is_none() {
            return Err(CgroupError::Invalid {
                field: "linux.resources.unified".into(),
                reason: "this host has no cgroup2 mount".into(),
            });
        }
        let mut keys: Vec<_> = u.iter().collect();
        keys.sort();
        for (k, v) in keys {
            if k.contains('/') || k.starts_with('.') {
                return Err(CgroupError::Invalid {
                    field: format!("linux.resources.unified[{k}]"),
                    reason: "not a cgroup file name".into(),
                });
            }
            p.push(
                "unified",
                k,
                v.clone(),
                &format!("linux.resources.unified[{k}]"),
            );
        }
    }
    Ok(p.out)
}

/// The rules of `r` (validated by [`plan`]) followed by the defaults and `extra` allows,
/// for the v2 device filter.
pub fn device_rules(r: &LinuxResources, extra: &[String]) -> Vec<super::devices::DeviceRule> {
    use super::devices::DeviceRule;
    let mut out: Vec<DeviceRule> = r
        .devices()
        .iter()
        .flatten()
        .filter_map(|d| {
            let line = device_rule(d, "").ok()?;
            DeviceRule::parse(d.allow(), &line)
        })
        .collect();
    out.extend(
        DEFAULT_DEVICE_ALLOWS
            .iter()
            .map(|l| (*l).to_string())
            .chain(extra.iter().cloned())
            .filter_map(|l| DeviceRule::parse(true, &l)),
    );
    out
}

/// null, zero, full, random, urandom, tty, console, ptmx, the pts and tun.
pub const DEFAULT_DEVICE_ALLOWS: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// A v1 devices.allow/deny line, e.g. `c 1:3 rwm`.
pub fn device_rule(d: &LinuxDeviceCgroup, field: &str) -> Result<String> {
    let t = match d.typ() {
        None | Some(LinuxDeviceType::A) => 'a',
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::P) => {
            return Err(CgroupError::Invalid {
                field: format!("{field}.type"),
                reason: "FIFOs are not device-cgroup controlled".into(),
            });
        }
    };
    let num = |v: Option<i64>| v.filter(|v| *v >= 0).map_or("*".into(), |v| v.to_string());
    let access = d.access().clone().unwrap_or_else(|| "rwm".into());
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::Invalid {
            field: format!("{field}.access"),
            reason: format!("{access:?} is not a combination of r, w and m"),
        });
    }
    if t == 'a' {
        return Ok(format!("a *:* {access}"));
    }
    Ok(format!(
        "{t} {}:{} {access}",
        num(d.major()),
        num(d.minor())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Hierarchy;
    use std::path::PathBuf;

    fn v1() -> Layout {
        let h = |c: &str| Hierarchy {
            mount: PathBuf::from(format!("/cg/{c}")),
            v2: false,
            controllers: vec![c.to_string()],
        };
        Layout {
            hierarchies: vec![h("cpu"), h("memory"), h("pids"), h("devices")],
        }
    }

    fn res(j: serde_json::Value) -> LinuxResources {
        serde_json::from_value(j).expect("resources")
    }

    #[test]
    fn v1_memory_and_pids() {
        let w = plan(
            &v1(),
            &res(
                serde_json::json!({"memory":{"limit":1048576},"pids":{"limit":10},
                "cpu":{"shares":512,"quota":20000,"period":100000}}),
            ),
        )
        .expect("plan");
        let files: Vec<_> = w
            .iter()
            .map(|w| (w.file.as_str(), w.value.as_str()))
            .collect();
        assert!(files.contains(&("memory.limit_in_bytes", "1048576")));
        assert!(files.contains(&("pids.max", "10")));
        let per = files.iter().position(|f| f.0 == "cpu.cfs_period_us");
        let quota = files.iter().position(|f| f.0 == "cpu.cfs_quota_us");
        assert!(per < quota);
    }

    #[test]
    fn missing_controller_names_field() {
        let e = plan(&v1(), &res(serde_json::json!({"blockIO":{"weight":500}})))
            .expect_err("no blkio here");
        assert!(
            e.to_string().contains("linux.resources.blockIO.weight"),
            "{e}"
        );
        // not asking for it is fine
        assert!(plan(&v1(), &res(serde_json::json!({"blockIO":{}}))).is_ok());
    }

    #[test]
    fn v2_conversions() {
        let l = Layout {
            hierarchies: vec![Hierarchy {
                mount: "/cg".into(),
                v2: true,
                controllers: ["cpu", "memory", "pids", "io"].map(String::from).to_vec(),
            }],
        };
        let w = plan(
            &l,
            &res(serde_json::json!({"memory":{"limit":1000,"swap":3000},
                "cpu":{"shares":1024,"quota":50000}})),
        )
        .expect("plan");
        let get = |f: &str| w.iter().find(|w| w.file == f).map(|w| w.value.clone());
        assert_eq!(get("memory.max").as_deref(), Some("1000"));
        assert_eq!(get("memory.swap.max").as_deref(), Some("2000"));
        assert_eq!(get("cpu.weight").as_deref(), Some("39"));
        assert_eq!(get("cpu.max").as_deref(), Some("50000 100000"));
    }

    /// kubelet's huge-page limits (0 for each size the kernel offers) on each layout.
    #[test]
    fn hugepage_limits_where_hugetlb_is_and_is_not() {
        let kubelet = res(serde_json::json!({"hugepageLimits": [
            {"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 0}]}));
        let real = res(serde_json::json!({"hugepageLimits": [
            {"pageSize": "2MB", "limit": 4194304}]}));
        // v1 without a hugetlb hierarchy (this machine: hugetlb only listed, not enabled,
        // at the cgroup2 root, so the layout does not count it)
        let mut hybrid = v1();
        hybrid.hierarchies.push(Hierarchy {
            mount: "/cg/unified".into(),
            v2: true,
            controllers: vec![],
        });
        assert_eq!(plan(&hybrid, &kubelet).expect("zero limits"), vec![]);
        let e = plan(&hybrid, &real).expect_err("a real limit");
        assert!(
            e.to_string()
                .contains("linux.resources.hugepageLimits[2MB]")
                && e.to_string().contains("hugetlb"),
            "{e}"
        );
        // v1 hugetlb hierarchy
        let mut with = v1();
        with.hierarchies.push(Hierarchy {
            mount: "/cg/hugetlb".into(),
            v2: false,
            controllers: vec!["hugetlb".into()],
        });
        let w = plan(&with, &kubelet).expect("plan");
        let files: Vec<_> = w
            .iter()
            .map(|w| (w.file.as_str(), w.value.as_str()))
            .collect();
        assert_eq!(
            files,
            vec![
                ("hugetlb.2MB.limit_in_bytes", "0"),
                ("hugetlb.1GB.limit_in_bytes", "0")
            ]
        );
        // pure v2 with hugetlb enabled
        let v2 = Layout {
            hierarchies: vec![Hierarchy {
                mount: "/cg".into(),
                v2: true,
                controllers: ["memory", "hugetlb"].map(String::from).to_vec(),
            }],
        };
        let w = plan(&v2, &real).expect("plan");
        assert_eq!(w[0].controller, "unified");
        assert_eq!(
            (w[0].file.as_str(), w[0].value.as_str()),
            ("hugetlb.2MB.max", "4194304")
        );
        // an unlimited pids limit where there is no pids controller asks for nothing
        let none = Layout::default();
        assert_eq!(
            plan(&none, &res(serde_json::json!({"pids": {"limit": 0}}))).expect("p"),
            vec![]
        );
        let e = plan(&none, &res(serde_json::json!({"pids": {"limit": 5}}))).expect_err("pids");
        assert!(e.to_string().contains("linux.resources.pids"), "{e}");
    }

    #[test]
    fn device_rules() {
        let w = plan(
            &v1(),
            &res(
                serde_json::json!({"devices":[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}),
            ),
        )
        .expect("plan");
        assert_eq!(w[0].value, "a *:* rwm");
        assert_eq!(w[0].file, "devices.deny");
        assert_eq!(w[1].value, "c 1:3 rw");
    }
}
