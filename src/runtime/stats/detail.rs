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
    /// The reservation (v1 soft_limit_in_bytes, v2 memory.min), as cAdvisor reads it.
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
        reservation: read_limit(&dir.join("memory.min"))?,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (n, c) in files {
            std::fs::write(dir.join(n), c).unwrap();
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-detail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A v1 tree as this kernel writes it (file names and formats copied from a live
    /// cgroup of a throttled, OOM-killed container).
    #[test]
    fn reads_a_v1_tree() {
        let root = tmp("v1");
        let dir = |c: &str| root.join(c).join("pod/ctr");
        write(
            &dir("cpuacct"),
            &[
                ("cpuacct.usage", "2500000000\n"),
                ("cpuacct.usage_user", "2000000000\n"),
                ("cpuacct.usage_sys", "500000000\n"),
            ],
        );
        write(
            &dir("cpu"),
            &[
                (
                    "cpu.stat",
                    "nr_periods 40\nnr_throttled 38\nthrottled_time 1900000000\nnr_bursts 0\nburst_time 0\n",
                ),
                ("cpu.cfs_period_us", "100000\n"),
                ("cpu.cfs_quota_us", "50000\n"),
                ("cpu.shares", "512\n"),
            ],
        );
        write(
            &dir("memory"),
            &[
                ("memory.usage_in_bytes", "10485760\n"),
                ("memory.max_usage_in_bytes", "33554432\n"),
                ("memory.limit_in_bytes", "33554432\n"),
                ("memory.soft_limit_in_bytes", "9223372036854771712\n"),
                ("memory.failcnt", "812\n"),
                ("memory.memsw.usage_in_bytes", "10485760\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.stat",
                    "cache 4096\nrss 8192\nmapped_file 0\npgfault 100\npgmajfault 1\ntotal_cache 1048576\ntotal_rss 9437184\ntotal_mapped_file 524288\ntotal_inactive_file 65536\ntotal_pgfault 2000\ntotal_pgmajfault 3\n",
                ),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
                ),
            ],
        );
        write(
            &dir("pids"),
            &[
                ("pids.current", "3\n"),
                ("pids.max", "max\n"),
                ("cgroup.procs", "101\n102\n103\n"),
                ("tasks", "101\n102\n103\n104\n105\n"),
            ],
        );
        write(
            &dir("blkio"),
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "254:0 Read 4096\n254:0 Write 10485760\n254:0 Sync 0\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 10489856\nTotal 10489856\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "254:0 Read 1\n254:0 Write 80\n254:0 Total 81\nTotal 81\n",
                ),
            ],
        );
        let cg = Cgroup {
            dirs: ["cpuacct", "cpu", "memory", "pids", "blkio"]
                .iter()
                .map(|c| (c.to_string(), dir(c)))
                .chain([("unified".to_string(), root.join("unified/pod/ctr"))])
                .collect::<BTreeMap<_, _>>(),
            v2_only: false,
            path: "pod/ctr".into(),
        };
        let d = read_detail(&cg).unwrap();
        assert_eq!(d.base.cpu_usage_ns, Some(2_500_000_000));
        assert_eq!(
            (d.cpu_user_ns, d.cpu_system_ns),
            (Some(2_000_000_000), Some(500_000_000))
        );
        assert_eq!(
            d.throttling,
            Some(Throttling {
                periods: 40,
                throttled_periods: 38,
                throttled_ns: 1_900_000_000
            })
        );
        assert_eq!(
            d.cpu_spec,
            CpuSpec {
                period_us: Some(100_000),
                quota_us: Some(50_000),
                shares: Some(512)
            }
        );
        let m = d.memory.unwrap();
        assert_eq!(
            m,
            MemoryDetail {
                cache: 1_048_576,
                mapped_file: 524_288,
                max_usage: Some(33_554_432),
                failcnt: Some(812),
                pgfault: 100,
                pgmajfault: 1,
                reservation: Some(9_223_372_036_854_771_712),
                oom_kills: Some(1),
            }
        );
        let base = d.base.memory.unwrap();
        assert_eq!(
            (base.usage, base.rss, base.swap_usage),
            (10_485_760, 9_437_184, Some(0))
        );
        assert_eq!((d.base.pids, d.pids_max), (Some(3), Some(None)));
        assert_eq!(d.pids, Some(vec![101, 102, 103]));
        assert_eq!(d.threads, Some(5));
        assert_eq!(
            d.io,
            Some(vec![DeviceIo {
                major: 254,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 10_485_760,
                reads: 1,
                writes: 80
            }])
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A v2 directory (formats from the kernel's cgroup-v2 documentation; not read from
    /// a live v2 host here).
    #[test]
    fn reads_a_v2_tree() {
        let root = tmp("v2");
        let dir = root.join("pod/ctr");
        write(
            &dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 38\nthrottled_usec 1900000\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("cpu.max", "50000 100000\n"),
                ("cpu.weight", "20\n"),
                ("memory.current", "10485760\n"),
                ("memory.peak", "33554432\n"),
                ("memory.max", "33554432\n"),
                ("memory.min", "0\n"),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "max\n"),
                (
                    "memory.stat",
                    "anon 9437184\nfile 1048576\nfile_mapped 524288\ninactive_file 65536\npgfault 2000\npgmajfault 3\n",
                ),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 812\noom 1\noom_kill 1\noom_group_kill 0\n",
                ),
                ("pids.current", "3\n"),
                ("pids.max", "64\n"),
                ("cgroup.procs", "101\n102\n103\n"),
                ("cgroup.threads", "101\n102\n103\n104\n"),
                (
                    "io.stat",
                    "254:0 rbytes=4096 wbytes=10485760 rios=1 wios=80 dbytes=0 dios=0\n",
                ),
            ],
        );
        let cg = Cgroup {
            dirs: BTreeMap::from([("unified".into(), dir)]),
            v2_only: true,
            path: "pod/ctr".into(),
        };
        let d = read_detail(&cg).unwrap();
        assert_eq!(d.base.cpu_usage_ns, Some(2_500_000_000));
        assert_eq!(
            (d.cpu_user_ns, d.cpu_system_ns),
            (Some(2_000_000_000), Some(500_000_000))
        );
        assert_eq!(d.throttling.unwrap().throttled_ns, 1_900_000_000);
        assert_eq!(d.throttling.unwrap().throttled_periods, 38);
        // weight 20 is what the kubelet writes for 512 shares; back to shares it is 526
        // (the mapping is not exact), as cAdvisor reports it.
        assert_eq!(
            d.cpu_spec,
            CpuSpec {
                period_us: Some(100_000),
                quota_us: Some(50_000),
                shares: Some(2 + 19 * 262_142 / 9_999)
            }
        );
        let m = d.memory.unwrap();
        assert_eq!(
            (m.cache, m.mapped_file, m.max_usage),
            (1_048_576, 524_288, Some(33_554_432))
        );
        assert_eq!(
            (m.failcnt, m.oom_kills, m.reservation),
            (Some(812), Some(1), Some(0))
        );
        assert_eq!(d.base.memory.unwrap().rss, 9_437_184);
        assert_eq!((d.base.pids, d.pids_max), (Some(3), Some(Some(64))));
        assert_eq!((d.pids.unwrap().len(), d.threads), (3, Some(4)));
        assert_eq!(d.io.unwrap()[0].writes, 80);
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// A v2 cgroup without the cpu controller enabled has no throttling keys and no
    /// cpu.max, and one without the memory controller no memory files: those are left
    /// out, not read as zero.
    #[test]
    fn what_the_host_lacks_is_none() {
        let root = tmp("bare");
        let dir = root.join("x");
        write(
            &dir,
            &[
                ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"),
                ("cgroup.procs", "7\n"),
                ("cgroup.threads", "7\n"),
            ],
        );
        let cg = Cgroup {
            dirs: BTreeMap::from([("unified".into(), dir)]),
            v2_only: true,
            path: "x".into(),
        };
        let d = read_detail(&cg).unwrap();
        assert_eq!(d.base.cpu_usage_ns, Some(10_000));
        assert_eq!(d.throttling, None);
        assert_eq!(d.cpu_spec, CpuSpec::default());
        assert_eq!((d.memory, d.base.memory), (None, None));
        assert_eq!((d.pids_max, d.io), (None, None));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
