//! Raw counters from one cgroup, v1 (per-controller directories) or v2 (the unified
//! directory). On a hybrid host a controller is read where it is mounted: a v1 directory
//! wins over the unified tree, which then holds no such controller.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::cgroups::Cgroup;

/// A stats file that exists but cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot parse {what:?}")]
    Parse { path: PathBuf, what: String },
}

/// Memory counters in bytes (and fault counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMemory {
    pub usage: u64,
    /// The limit; `None` when none is set ("max" on v2).
    pub limit: Option<u64>,
    pub inactive_file: u64,
    /// v1 total_rss, v2 anon.
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Swap in use and its limit, where the kernel accounts it.
    pub swap_usage: Option<u64>,
    pub swap_limit: Option<u64>,
}

/// What one read of a cgroup found; a controller the host lacks is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawStats {
    /// Cumulative CPU time of all tasks, nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory: Option<RawMemory>,
    pub pids: Option<u64>,
}

pub(super) fn read(path: &Path) -> Result<Option<String>, StatsError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StatsError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

pub(super) fn parse_u64(path: &Path, s: &str) -> Result<u64, StatsError> {
    s.trim().parse().map_err(|_| StatsError::Parse {
        path: path.to_owned(),
        what: s.trim().to_owned(),
    })
}

pub(super) fn read_u64(path: &Path) -> Result<Option<u64>, StatsError> {
    read(path)?.map(|s| parse_u64(path, &s)).transpose()
}

/// A limit file: v2 writes "max" for none.
pub(super) fn read_limit(path: &Path) -> Result<Option<u64>, StatsError> {
    match read(path)? {
        Some(s) if s.trim() == "max" => Ok(None),
        Some(s) => parse_u64(path, &s).map(Some),
        None => Ok(None),
    }
}

/// `key value` lines (memory.stat, cpu.stat).
pub(super) fn read_kv(path: &Path) -> Result<Option<HashMap<String, u64>>, StatsError> {
    let Some(s) = read(path)? else {
        return Ok(None);
    };
    let mut m = HashMap::new();
    for line in s.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            m.insert(k.to_owned(), parse_u64(path, v)?);
        }
    }
    Ok(Some(m))
}

/// Reads `cg`'s counters.
pub fn read_cgroup(cg: &Cgroup) -> Result<RawStats, StatsError> {
    let unified = cg.dirs.get("unified");
    let mut out = RawStats::default();

    if let Some(dir) = cg.dirs.get("cpuacct") {
        out.cpu_usage_ns = read_u64(&dir.join("cpuacct.usage"))?;
    } else if let Some(dir) = unified
        && let Some(stat) = read_kv(&dir.join("cpu.stat"))?
    {
        out.cpu_usage_ns = stat.get("usage_usec").map(|u| u * 1000);
    }

    if let Some(dir) = cg.dirs.get("memory") {
        if let (Some(usage), Some(stat)) = (
            read_u64(&dir.join("memory.usage_in_bytes"))?,
            read_kv(&dir.join("memory.stat"))?,
        ) {
            let get = |k: &str| stat.get(k).copied().unwrap_or(0);
            let memsw = read_u64(&dir.join("memory.memsw.usage_in_bytes"))?;
            out.memory = Some(RawMemory {
                usage,
                limit: read_limit(&dir.join("memory.limit_in_bytes"))?,
                inactive_file: get("total_inactive_file"),
                rss: get("total_rss"),
                page_faults: get("total_pgfault"),
                major_page_faults: get("total_pgmajfault"),
                swap_usage: memsw.map(|m| m.saturating_sub(usage)),
                swap_limit: read_limit(&dir.join("memory.memsw.limit_in_bytes"))?,
            });
        }
    } else if let Some(dir) = unified
        && let (Some(usage), Some(stat)) = (
            read_u64(&dir.join("memory.current"))?,
            read_kv(&dir.join("memory.stat"))?,
        )
    {
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        out.memory = Some(RawMemory {
            usage,
            limit: read_limit(&dir.join("memory.max"))?,
            inactive_file: get("inactive_file"),
            rss: get("anon"),
            page_faults: get("pgfault"),
            major_page_faults: get("pgmajfault"),
            swap_usage: read_u64(&dir.join("memory.swap.current"))?,
            swap_limit: read_limit(&dir.join("memory.swap.max"))?,
        });
    }

    if let Some(dir) = cg.dirs.get("pids").or(unified) {
        out.pids = read_u64(&dir.join("pids.current"))?;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (n, c) in files {
            std::fs::write(dir.join(n), c).unwrap();
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-stats-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn reads_v1_controllers_from_their_own_directories() {
        let root = tmp("v1");
        let (cpu, mem, pids) = (
            root.join("cpuacct/x"),
            root.join("memory/x"),
            root.join("pids/x"),
        );
        write(&cpu, &[("cpuacct.usage", "123456789\n")]);
        write(
            &mem,
            &[
                ("memory.usage_in_bytes", "1000000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                (
                    "memory.stat",
                    "cache 1\nrss 2\ntotal_rss 600000\ntotal_inactive_file 250000\ntotal_pgfault 77\ntotal_pgmajfault 3\n",
                ),
            ],
        );
        write(&pids, &[("pids.current", "4\n")]);
        let cg = Cgroup {
            dirs: BTreeMap::from([
                ("cpuacct".into(), cpu),
                ("memory".into(), mem),
                ("pids".into(), pids),
                ("unified".into(), root.join("unified/x")),
            ]),
            v2_only: false,
            path: "x".into(),
        };
        let s = read_cgroup(&cg).unwrap();
        assert_eq!(s.cpu_usage_ns, Some(123_456_789));
        assert_eq!(s.pids, Some(4));
        let m = s.memory.unwrap();
        assert_eq!(
            (
                m.usage,
                m.limit,
                m.inactive_file,
                m.rss,
                m.page_faults,
                m.major_page_faults
            ),
            (
                1_000_000,
                Some(9_223_372_036_854_771_712),
                250_000,
                600_000,
                77,
                3
            )
        );
        assert_eq!(m.swap_usage, None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn reads_v2_from_the_unified_directory() {
        let root = tmp("v2");
        let dir = root.join("x");
        write(
            &dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
                ),
                ("memory.current", "4096000\n"),
                ("memory.max", "max\n"),
                (
                    "memory.stat",
                    "anon 1000\nfile 5\ninactive_file 96000\npgfault 9\npgmajfault 1\n",
                ),
                ("memory.swap.current", "0\n"),
                ("memory.swap.max", "max\n"),
                ("pids.current", "2\n"),
            ],
        );
        let cg = Cgroup {
            dirs: BTreeMap::from([("unified".into(), dir)]),
            v2_only: true,
            path: "x".into(),
        };
        let s = read_cgroup(&cg).unwrap();
        assert_eq!(s.cpu_usage_ns, Some(2_500_000));
        assert_eq!(s.pids, Some(2));
        let m = s.memory.unwrap();
        assert_eq!(
            (m.usage, m.limit, m.inactive_file, m.rss),
            (4_096_000, None, 96_000, 1000)
        );
        assert_eq!((m.swap_usage, m.swap_limit), (Some(0), None));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_garbled_counter_is_an_error_naming_the_file() {
        let root = tmp("bad");
        let dir = root.join("cpuacct/x");
        write(&dir, &[("cpuacct.usage", "lots\n")]);
        let cg = Cgroup {
            dirs: BTreeMap::from([("cpuacct".into(), dir)]),
            v2_only: false,
            path: "x".into(),
        };
        let e = read_cgroup(&cg).unwrap_err().to_string();
        assert!(e.contains("cpuacct.usage") && e.contains("lots"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
