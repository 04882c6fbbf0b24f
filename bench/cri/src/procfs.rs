//! What the bench reads back from /proc and the cgroup tree: proportional set sizes,
//! CPU time of processes (their own and their reaped children's), process trees.

use std::path::Path;

use anyhow::Context;

/// From /proc/<pid>/smaps_rollup, in KiB: `Pss` (the process's private pages plus its
/// share of pages mapped by several processes) and `Private_Clean` + `Private_Dirty` (the
/// USS: the pages no other process maps, what the process alone costs).
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let field = |name: &str| field_kib(&text, name).with_context(|| format!("no {name} in {path}"));
    Ok((
        field("Pss:")?,
        field("Private_Clean:")? + field("Private_Dirty:")?,
    ))
}

/// The executable mappings of `binary` (its path as /proc/<pid>/maps shows it) in
/// /proc/<pid>/smaps, in KiB: (resident, proportional).
pub fn mapped_code_kib(pid: u32, binary: &str) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let (mut rss, mut pss, mut counting) = (0, 0, false);
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // a mapping's header: range perms offset dev inode [path]
            let perms = words.next().unwrap_or("");
            counting = perms.contains('x') && line.trim_end().ends_with(binary);
        } else if counting {
            let kib = words
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            match first {
                "Rss:" => rss += kib,
                "Pss:" => pss += kib,
                _ => {}
            }
        }
    }
    Ok((rss, pss))
}

/// The `Pss` of [`memory_kib`].
pub fn pss_kib(pid: u32) -> anyhow::Result<u64> {
    memory_kib(pid).map(|(pss, _)| pss)
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

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

/// The parent pid of `pid`.
pub fn ppid(pid: u32) -> anyhow::Result<u32> {
    Ok(stat_fields(pid)?.get(1).context("short stat")?.parse()?)
}

/// `pid`'s command name.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// CPU time of `pid` in nanoseconds: utime + stime of all its threads, plus cutime +
/// cstime, the time of the children it has reaped (and of what they reaped in turn).
pub fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let f = stat_fields(pid)?;
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let ticks: u64 = (11..=14)
        .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
        .sum();
    Ok(ticks * 1_000_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// `root` and every process descended from it.
pub fn tree(root: u32) -> Vec<u32> {
    let mut all: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok())
                && let Ok(pp) = ppid(pid)
            {
                all.push((pid, pp));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

/// The children of `parent` whose second command-line word is `arg1`.
pub fn children_running(parent: u32, arg1: &str) -> Vec<u32> {
    tree(parent)
        .into_iter()
        .filter(|p| *p != parent && ppid(*p).ok() == Some(parent))
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            cmd.split(|b| *b == 0).nth(1) == Some(arg1.as_bytes())
        })
        .collect()
}

/// cpuacct.usage (ns) of the v1 cgroup `path` (relative to the cpuacct mount), if any.
pub fn cpuacct_ns(path: &str) -> Option<u64> {
    for mount in ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpuacct"] {
        let f = Path::new(mount)
            .join(path.trim_start_matches('/'))
            .join("cpuacct.usage");
        if let Ok(v) = std::fs::read_to_string(&f) {
            return v.trim().parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pss_field() {
        let t = "55f0-7ffc ---p 00000000 00:00 0 [rollup]\nRss: 1200 kB\nPss: 345 kB\n";
        assert_eq!(field_kib(t, "Pss:"), Some(345));
        assert_eq!(field_kib(t, "Swap:"), None);
    }

    #[test]
    fn own_process_has_cpu_and_parent() {
        let me = std::process::id();
        assert!(cpu_ns(me).is_ok());
        assert_eq!(ppid(me).ok(), Some(std::os::unix::process::parent_id()));
        assert!(tree(me).contains(&me));
    }
}
