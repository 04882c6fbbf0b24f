//! What /proc says of a container's processes: open file descriptors and sockets (as
//! cAdvisor counts them, over every process of the cgroup) and the soft `Max open files`
//! limit of its init. `proc_root` is a parameter so tests point it at a fixture.
//!
//! A process that exits while it is being read is skipped: the counts are of the
//! processes still there.

use std::path::Path;

/// Descriptor counts over a set of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdCounts {
    pub fds: u64,
    pub sockets: u64,
}

/// Counts the open descriptors and sockets of `pids`.
pub fn count_fds(proc_root: &Path, pids: &[i32]) -> FdCounts {
    let mut out = FdCounts::default();
    for pid in pids {
        let dir = proc_root.join(pid.to_string()).join("fd");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            out.fds += 1;
            if std::fs::read_link(e.path())
                .is_ok_and(|l| l.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
            {
                out.sockets += 1;
            }
        }
    }
    out
}

/// The soft limit on open files of `pid` (`None` when the process is gone or the
/// table lacks the row); "unlimited" reads as -1, as cAdvisor reports it.
pub fn max_open_files_soft(proc_root: &Path, pid: i32) -> Option<i64> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("limits")).ok()?;
    parse_max_open_files(&text)
}

/// `Max open files            1024                 1048576              files`
fn parse_max_open_files(limits: &str) -> Option<i64> {
    let rest = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match rest.split_whitespace().next()? {
        "unlimited" => Some(-1),
        v => v.parse().ok(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_open_files_limit() {
        let t = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(t), Some(1024));
        let u = "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(u), Some(-1));
        assert_eq!(parse_max_open_files("Max processes 5 5\n"), None);
    }

    #[test]
    fn counts_descriptors_and_sockets_from_a_proc_tree() {
        let root = std::env::temp_dir().join(format!("berth-procs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let fd = root.join("7/fd");
        std::fs::create_dir_all(&fd).unwrap();
        std::os::unix::fs::symlink("/dev/null", fd.join("0")).unwrap();
        std::os::unix::fs::symlink("socket:[1234]", fd.join("1")).unwrap();
        std::os::unix::fs::symlink("socket:[99]", fd.join("2")).unwrap();
        std::fs::write(
            root.join("7/limits"),
            "Max open files            4096                 4096                 files\n",
        )
        .unwrap();
        // pid 8 is gone: skipped.
        let c = count_fds(&root, &[7, 8]);
        assert_eq!(c, FdCounts { fds: 3, sockets: 2 });
        assert_eq!(max_open_files_soft(&root, 7), Some(4096));
        assert_eq!(max_open_files_soft(&root, 8), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
