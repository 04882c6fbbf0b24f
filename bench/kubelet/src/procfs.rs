//! What the bench reads from /proc: process trees, their CPU time (own and reaped
//! children's) and their memory.

use std::collections::BTreeSet;

use anyhow::Context;

/// The fields of /proc/<pid>/stat after the command name (field 3 onwards).
fn stat_fields(pid: u32) -> anyhow::Result<Vec<String>> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    // The command name is in parentheses and may hold spaces.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed {path}"))?;
    Ok(rest.split_whitespace().map(String::from).collect())
}

/// `pid`'s parent.
pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid).ok()?.get(1)?.parse().ok()
}

/// `pid`'s command name.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// CPU time of `pid` in nanoseconds: utime + stime of all its threads plus cutime +
/// cstime, the time of the children it reaped (and of what they reaped in turn). A
/// process gone by now counts 0: its time is in its reaper's cutime.
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(f) = stat_fields(pid) else { return 0 };
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let ticks: u64 = (11..=14)
        .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    ticks * 1_000_000_000 / clock_ticks()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Every process on the machine with its parent.
fn all() -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok())
                && let Some(pp) = ppid(pid)
            {
                out.push((pid, pp));
            }
        }
    }
    out
}

/// `roots` and every process descended from them, plus every process `also` picks and its
/// descendants (containerd's shims, which containerd starts detached; berth's pod holders,
/// which outlive the daemon).
pub fn trees(roots: &[u32], also: impl Fn(u32) -> bool) -> BTreeSet<u32> {
    let procs = all();
    let mut out: Vec<u32> = roots.to_vec();
    out.extend(procs.iter().map(|(p, _)| *p).filter(|p| also(*p)));
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            procs
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out.into_iter().collect()
}

/// The command line of `pid`, arguments joined by spaces ("" when gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// The CPU time of a set of processes, in ns.
pub fn cpu_sum(pids: &BTreeSet<u32>) -> u64 {
    pids.iter().map(|p| cpu_ns(*p)).sum()
}

/// `Rss` and `Pss` of /proc/<pid>/smaps_rollup, KiB (0 when gone).
pub fn rss_pss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_its_own_tree_and_has_memory() {
        let me = std::process::id();
        assert!(trees(&[me], |_| false).contains(&me));
        assert!(rss_pss_kib(me).0 > 0);
        assert_eq!(cpu_ns(u32::MAX), 0);
    }
}
