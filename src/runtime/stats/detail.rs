//! Everything the metrics calls report of one cgroup, each file read once: the counters
//! of [`RawStats`] plus CPU user/system time and CFS throttling, the memory counters
//! cAdvisor names (cache, mapped files, peak, failures, OOM kills), block I/O per
//! device, the limits set on the cgroup, and its processes and threads.
//!
//! A controller or file the host lacks leaves its field `None` (v2 has no failcnt, an
//! older kernel no `memory.peak`): the metric is then left out, never reported as 0.

use std::collections::HashMap;
use std::path::Path;

use crate::cgroups::Cgroup;

use super::cgroup::{parse_u64, read, read_kv, read_limit, read_u64};
use super::{RawMemory, RawStats, StatsError};

/// CFS bandwidth counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// The CPU limits set on the cgroup (cAdvisor's `spec` metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSpec {
    pub period_us: Option<u64>,
    /// `None` when no quota is set (-1 on v1, "max" on v2).
    pub quota_us: Option<u64>,
    /// v1 cpu.shares; on v2 cpu.weight mapped back to shares as cAdvisor does.
    pub shares: Option<u64>,
}

/// Memory counters beyond [`RawMemory`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryDetail {
    /// Page cache (v1 total_cache, v2 file).
    pub cache: u64,
    /// v1 total_mapped_file, v2 file_mapped.
    pub mapped_file: u64,
    /// v1 max_usage_in_bytes, v2 memory.peak (kernel 5.19+).
    pub max_usage: Option<u64>,
    /// Times the limit was hit: v1 memory.failcnt, v2 the `max` count of memory.events.
    pub failcnt: Option<u64>,
    /// Page faults of the cgroup's own tasks (v1 pgfault; v2 has only the hierarchy's).
    pub pgfault: u64,
    pub pgmajfault: u64,
    /// The soft limit (v1 soft_limit_in_bytes, v2 memory.low).
    pub reservation: Option<u64>,
    /// OOM kills in the cgroup (v1 memory.oom_control `oom_kill`, kernel 4.13+; v2
    /// memory.events `oom_kill`).
    pub oom_kills: Option<u64>,
}

/// Block I/O of one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// One full read of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    pub base: RawStats,
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    pub throttling: Option<Throttling>,
    pub cpu_spec: CpuSpec,
    pub memory: Option<MemoryDetail>,
    /// pids.max; `Some(None)` when unlimited.
    pub pids_max: Option<Option<u64>>,
    pub io: Option<Vec<DeviceIo>>,
    /// The processes in the cgroup (cgroup.procs) and its thread count.
    pub pids: Option<Vec<i32>>,
    pub threads: Option<u64>,
}

/// Reads all of `cg` that the metrics report.
pub fn read_detail(cg: &Cgroup) -> Result<Detail, StatsError> {
    let unified = cg.dirs.get("unified");
    let mut d = Detail::default();
    // v2 keeps usage, user/system time and throttling in one file.
    let cpu_stat_v2 = match unified {
        Some(dir) if !cg.dirs.contains_key("cpuacct") || !cg.dirs.contains_key("cpu") => {
            read_kv(&dir.join("cpu.stat"))?
        }
        _ => None,
    };

    if let Some(dir) = cg.dirs.get("cpuacct") {
        d.base.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"))?;
        d.cpu_user_ns = read_u64(&dir.join("cpuacct.usage_user"))?;
        d.cpu_system_ns = read_u64(&dir.join("cpuacct.usage_sys"))?;
    } else if let Some(stat) = &cpu_stat_v2 {
        let usec = |k: &str| stat.get(k).map(|u| u * 1000);
        d.base.cpu_usage_ns = usec("usage_usec");
        d.cpu_user_ns = usec("user_usec");
        d.cpu_system_ns = usec("system_usec");
    }

    if let Some(dir) = cg.dirs.get("cpu") {
        d.throttling = read_kv(&dir.join("cpu.stat"))?.map(|s| throttling(&s, "throttled_time", 1));
        d.cpu_spec = CpuSpec {
            period_us: read_u64(&dir.join("cpu.cfs_period_us"))?,
            quota_us: read_quota_v1(&dir.join("cpu.cfs_quota_us"))?,
            shares: read_u64(&dir.join("cpu.shares"))?,
        };
    } else if let Some(dir) = unified {
        // The throttling keys are there only where the cpu controller is enabled.
        d.throttling = cpu_stat_v2
            .as_ref()
            .filter(|s| s.contains_key("nr_periods"))
            .map(|s| throttling(s, "throttled_usec", 1000));
        if let Some((quota, period)) = read_cpu_max(&dir.join("cpu.max"))? {
            d.cpu_spec.quota_us = quota;
            d.cpu_spec.period_us = Some(period);
        }
        d.cpu_spec.shares = read_u64(&dir.join("cpu.weight"))?.map(weight_to_shares);
    }

    if let Some(dir) = cg.dirs.get("memory") {
        read_memory_v1(dir, &mut d)?;
    } else if let Some(dir) = unified {
        read_memory_v2(dir, &mut d)?;
    }

    if let Some(dir) = cg.dirs.get("pids").or(unified) {
        d.base.pids = read_u64(&dir.join("pids.current"))?;
        let max = dir.join("pids.max");
        d.pids_max = read(&max)?
            .map(|s| match s.trim() {
                "max" => Ok(None),
                v => parse_u64(&max, v).map(Some),
            })
            .transpose()?;
    }

    if let Some(dir) = cg.dirs.get("blkio") {
        let bytes = read(&dir.join("blkio.throttle.io_service_bytes_recursive"))?;
        let ops = read(&dir.join("blkio.throttle.io_serviced_recursive"))?;
        if let (Some(bytes), Some(ops)) = (bytes, ops) {
            d.io = Some(parse_blkio_v1(&bytes, &ops));
        }
    } else if let Some(dir) = unified
        && let Some(s) = read(&dir.join("io.stat"))?
    {
        d.io = Some(parse_io_stat(&s));
    }

    // Any v1 hierarchy lists the same tasks; v2 has them in the unified directory.
    let tasks = ["pids", "memory", "cpu", "cpuacct"]
        .iter()
        .find_map(|c| cg.dirs.get(*c))
        .map(|dir| (dir, "tasks"))
        .or(unified.map(|dir| (dir, "cgroup.threads")));
    if let Some((dir, threads)) = tasks {
        let procs = dir.join("cgroup.procs");
        d.pids = read(&procs)?
            .map(|s| {
                s.lines()
                    .map(|l| {
                        l.trim().parse().map_err(|_| StatsError::Parse {
                            path: procs.clone(),
                            what: l.to_owned(),
                        })
                    })
                    .collect::<Result<Vec<i32>, _>>()
            })
            .transpose()?;
        d.threads = read(&dir.join(threads))?.map(|s| s.lines().count() as u64);
    }
    Ok(d)
}

fn throttling(stat: &HashMap<String, u64>, time_key: &str, to_ns: u64) -> Throttling {
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    Throttling {
        periods: get("nr_periods"),
        throttled_periods: get("nr_throttled"),
        throttled_ns: get(time_key) * to_ns,
    }
}

/// cpu.cfs_quota_us: -1 for none.
fn read_quota_v1(path: &Path) -> Result<Option<u64>, StatsError> {
    match read(path)? {
        Some(s) if s.trim() == "-1" => Ok(None),
        Some(s) => parse_u64(path, &s).map(Some),
        None => Ok(None),
    }
}

/// cpu.max: "<quota|max> <period>".
fn read_cpu_max(path: &Path) -> Result<Option<(Option<u64>, u64)>, StatsError> {
    let Some(s) = read(path)? else {
        return Ok(None);
    };
    let mut it = s.split_whitespace();
    let (Some(q), Some(p)) = (it.next(), it.next()) else {
        return Err(StatsError::Parse {
            path: path.to_owned(),
            what: s.trim().to_owned(),
        });
    };
    let quota = if q == "max" {
        None
    } else {
        Some(parse_u64(path, q)?)
    };
    Ok(Some((quota, parse_u64(path, p)?)))
}

/// cpu.weight (1-10000) back to cpu.shares (2-262144), the inverse of the mapping runc
/// and the kubelet use, as cAdvisor reports it.
fn weight_to_shares(weight: u64) -> u64 {
    2 + weight.saturating_sub(1) * 262_142 / 9_999
}

fn read_memory_v1(dir: &Path, d: &mut Detail) -> Result<(), StatsError> {
    let (Some(usage), Some(stat)) = (
        read_u64(&dir.join("memory.usage_in_bytes"))?,
        read_kv(&dir.join("memory.stat"))?,
    ) else {
        return Ok(());
    };
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    let memsw = read_u64(&dir.join("memory.memsw.usage_in_bytes"))?;
    d.base.memory = Some(RawMemory {
        usage,
        limit: read_limit(&dir.join("memory.limit_in_bytes"))?,
        inactive_file: get("total_inactive_file"),
        rss: get("total_rss"),
        page_faults: get("total_pgfault"),
        major_page_faults: get("total_pgmajfault"),
        swap_usage: memsw.map(|m| m.saturating_sub(usage)),
        swap_limit: read_limit(&dir.join("memory.memsw.limit_in_bytes"))?,
    });
    d.memory = Some(MemoryDetail {
        cache: get("total_cache"),
        mapped_file: get("total_mapped_file"),
        max_usage: read_u64(&dir.join("memory.max_usage_in_bytes"))?,
        failcnt: read_u64(&dir.join("memory.failcnt"))?,
        pgfault: get("pgfault"),
        pgmajfault: get("pgmajfault"),
        reservation: read_limit(&dir.join("memory.soft_limit_in_bytes"))?,
        oom_kills: read_kv(&dir.join("memory.oom_control"))?
            .and_then(|m| m.get("oom_kill").copied()),
    });
    Ok(())
}

fn read_memory_v2(dir: &Path, d: &mut Detail) -> Result<(), StatsError> {
    let (Some(usage), Some(stat)) = (
        read_u64(&dir.join("memory.current"))?,
        read_kv(&dir.join("memory.stat"))?,
    ) else {
        return Ok(());
    };
    let get = |k: &str| stat.get(k).copied().unwrap_or(0);
    d.base.memory = Some(RawMemory {
        usage,
        limit: read_limit(&dir.join("memory.max"))?,
        inactive_file: get("inactive_file"),
        rss: get("anon"),
        page_faults: get("pgfault"),
        major_page_faults: get("pgmajfault"),
        swap_usage: read_u64(&dir.join("memory.swap.current"))?,
        swap_limit: read_limit(&dir.join("memory.swap.max"))?,
    });
    let events = read_kv(&dir.join("memory.events"))?;
    d.memory = Some(MemoryDetail {
        cache: get("file"),
        mapped_file: get("file_mapped"),
        max_usage: read_u64(&dir.join("memory.peak"))?,
        failcnt: events.as_ref().and_then(|e| e.get("max").copied()),
        pgfault: get("pgfault"),
        pgmajfault: get("pgmajfault"),
        reservation: read_limit(&dir.join("memory.low"))?,
        oom_kills: events.as_ref().and_then(|e| e.get("oom_kill").copied()),
    });
    Ok(())
}

/// v1 blkio files: `<maj>:<min> <Op> <value>` lines and a closing `Total <value>`.
fn parse_blkio_v1(bytes: &str, ops: &str) -> Vec<DeviceIo> {
    let mut devs: Vec<DeviceIo> = Vec::new();
    let mut entry = |major: u64, minor: u64| -> usize {
        if let Some(i) = devs
            .iter()
            .position(|d| d.major == major && d.minor == minor)
        {
            return i;
        }
        devs.push(DeviceIo {
            major,
            minor,
            ..Default::default()
        });
        devs.len() - 1
    };
    let mut rows = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ops, false)] {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(dev), Some(op), Some(v)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let (Some((maj, min)), Ok(v)) = (dev.split_once(':'), v.parse::<u64>()) else {
                continue;
            };
            let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) else {
                continue;
            };
            rows.push((entry(maj, min), is_bytes, op.to_owned(), v));
        }
    }
    for (i, is_bytes, op, v) in rows {
        let d = &mut devs[i];
        match (is_bytes, op.as_str()) {
            (true, "Read") => d.read_bytes = v,
            (true, "Write") => d.write_bytes = v,
            (false, "Read") => d.reads = v,
            (false, "Write") => d.writes = v,
            _ => {}
        }
    }
    devs
}

/// v2 io.stat: `<maj>:<min> rbytes=.. wbytes=.. rios=.. wios=.. ...` per device.
fn parse_io_stat(text: &str) -> Vec<DeviceIo> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((maj, min)) = f.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse(), min.parse()) else {
            continue;
        };
        let mut d = DeviceIo {
            major,
            minor,
            ..Default::default()
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse() else { continue };
            match k {
                "rbytes" => d.read_bytes = v,
                "wbytes" => d.write_bytes = v,
                "rios" => d.reads = v,
                "wios" => d.writes = v,
                _ => {}
            }
        }
        out.push(d);
    }
    out
}
