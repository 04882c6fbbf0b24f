//! What the node status reads of its host, as cAdvisor reads it for kubelet: CPUs,
//! memory, swap, huge pages, the root dir's filesystem, machine and boot IDs, kernel and
//! OS image; and the pressure signals against the hard eviction thresholds. Every path
//! sits under a root given by the caller, so tests point it at a temp dir. It only reads.

use std::path::{Path, PathBuf};

use super::resources::{EvictionHard, ThresholdValue};
use super::setters::{HugePages, MachineInfo};

/// The pressure signals the conditions report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PressureSignals {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// Where the node status reads its facts and pressures from.
pub trait HostInfo: Send + Sync + 'static {
    fn machine_info(&self) -> MachineInfo;
    fn pressure(&self) -> PressureSignals;
}

/// The host's own files, under `/proc`, `/sys` and `/etc` on a node.
#[derive(Debug, Clone)]
pub struct Host {
    pub proc_root: PathBuf,
    pub sys_root: PathBuf,
    pub etc_root: PathBuf,
    /// The kubelet's root dir (--root-dir): its filesystem is ephemeral-storage and
    /// nodefs.
    pub root_dir: PathBuf,
    /// The runtime's image filesystem (its ImageFsInfo mountpoint): imagefs. None when
    /// the runtime names none; its thresholds are then not evaluated.
    pub image_fs: Option<PathBuf>,
    /// The hard eviction thresholds the pressure signals compare against.
    pub eviction: EvictionHard,
}

impl Host {
    /// The machine's own /proc, /sys and /etc.
    pub fn new(root_dir: PathBuf, image_fs: Option<PathBuf>, eviction: EvictionHard) -> Self {
        Host {
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            etc_root: "/etc".into(),
            root_dir,
            image_fs,
            eviction,
        }
    }

    /// pid.available's (capacity, available): the lower of pid_max and threads-max, less
    /// the tasks that exist (/proc/loadavg's count, as sysinfo's procs).
    fn pids(&self) -> Option<(u64, u64)> {
        let num = |p: &str| read_trim(&self.proc_root.join(p)).parse::<u64>().ok();
        let max = match (num("sys/kernel/pid_max"), num("sys/kernel/threads-max")) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let loadavg = read_trim(&self.proc_root.join("loadavg"));
        let running: u64 = loadavg
            .split_whitespace()
            .nth(3)?
            .split_once('/')?
            .1
            .parse()
            .ok()?;
        Some((max, max.saturating_sub(running)))
    }
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A /proc/meminfo field in bytes.
fn meminfo(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The CPUs of a kernel CPU list (`0-3,6`).
fn cpu_count(list: &str) -> u32 {
    list.trim()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|r| match r.split_once('-') {
            Some((a, b)) => match (a.parse::<u32>(), b.parse::<u32>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => u32::from(r.parse::<u32>().is_ok()),
        })
        .sum()
}

/// PRETTY_NAME of os-release, unquoted; "Linux" without one, as cAdvisor.
pub fn os_image(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".into())
}

fn hugepages(sys_root: &Path) -> Vec<HugePages> {
    let Ok(rd) = std::fs::read_dir(sys_root.join("kernel/mm/hugepages")) else {
        return vec![];
    };
    let mut v: Vec<HugePages> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kib = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let pages = read_trim(&e.path().join("nr_hugepages"))
                .parse()
                .unwrap_or(0);
            Some(HugePages {
                page_size_kib: kib,
                num_pages: pages,
            })
        })
        .collect();
    v.sort_by_key(|h| h.page_size_kib);
    v
}

/// (capacity, available, inodes, free inodes) of the filesystem holding `p`.
fn fs_stats(p: &Path) -> Option<(u64, u64, u64, u64)> {
    let s = nix::sys::statvfs::statvfs(p).ok()?;
    let frsize = s.fragment_size();
    Some((
        s.blocks().saturating_mul(frsize),
        s.blocks_available().saturating_mul(frsize),
        s.files(),
        s.files_available(),
    ))
}

fn below(available: u64, capacity: u64, t: Option<ThresholdValue>) -> bool {
    let Some(t) = t else { return false };
    let limit = match t {
        ThresholdValue::Quantity(a) => u64::try_from(a.value()).unwrap_or(0),
        ThresholdValue::Percentage(p) => ((capacity as f64) * f64::from(p)) as u64,
    };
    available < limit
}

impl HostInfo for Host {
    fn machine_info(&self) -> MachineInfo {
        let mem = std::fs::read_to_string(self.proc_root.join("meminfo")).unwrap_or_default();
        let mut machine_id = read_trim(&self.etc_root.join("machine-id"));
        if machine_id.is_empty() {
            machine_id = read_trim(&self.etc_root.join("../var/lib/dbus/machine-id"));
        }
        MachineInfo {
            num_cores: cpu_count(&read_trim(&self.sys_root.join("devices/system/cpu/online"))),
            memory_capacity: meminfo(&mem, "MemTotal").unwrap_or(0),
            swap_capacity: meminfo(&mem, "SwapTotal").unwrap_or(0),
            hugepages: hugepages(&self.sys_root),
            rootfs_capacity: fs_stats(&self.root_dir).map(|s| s.0),
            machine_id,
            system_uuid: read_trim(&self.sys_root.join("class/dmi/id/product_uuid")),
            boot_id: read_trim(&self.proc_root.join("sys/kernel/random/boot_id")),
            kernel_version: read_trim(&self.proc_root.join("sys/kernel/osrelease")),
            os_image: os_image(
                &std::fs::read_to_string(self.etc_root.join("os-release")).unwrap_or_default(),
            ),
        }
    }

    /// memory.available from MemAvailable; nodefs.* from the root dir's filesystem,
    /// imagefs.* from the image filesystem's; pid.available from the task count.
    fn pressure(&self) -> PressureSignals {
        let e = &self.eviction;
        let mem = std::fs::read_to_string(self.proc_root.join("meminfo")).unwrap_or_default();
        let memory = match (meminfo(&mem, "MemTotal"), meminfo(&mem, "MemAvailable")) {
            (Some(total), Some(avail)) => below(avail, total, e.memory_available),
            _ => false,
        };
        let fs = |p: &Path, bytes: Option<ThresholdValue>, inodes: Option<ThresholdValue>| {
            fs_stats(p).is_some_and(|(cap, avail, files, ffree)| {
                below(avail, cap, bytes) || below(ffree, files, inodes)
            })
        };
        let disk = fs(&self.root_dir, e.nodefs_available, e.nodefs_inodes_free)
            || self
                .image_fs
                .as_deref()
                .is_some_and(|p| fs(p, e.imagefs_available, e.imagefs_inodes_free));
        let pid = self
            .pids()
            .is_some_and(|(max, avail)| below(avail, max, e.pid_available));
        PressureSignals { memory, disk, pid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fake_host() -> (TempDir, Host) {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        let d = TempDir(std::env::temp_dir().join(format!(
            "berth-nodestatus-{}-{:08x}",
            std::process::id(),
            u32::from_ne_bytes(b)
        )));
        let w = |p: &str, s: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w(
            "proc/meminfo",
            "MemTotal:        7957336 kB\nMemFree: 1 kB\nMemAvailable:      51200 kB\nSwapTotal:       1024 kB\n",
        );
        w("proc/sys/kernel/random/boot_id", "b-1\n");
        w("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        w("sys/devices/system/cpu/online", "0-3,6\n");
        w(
            "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            "4\n",
        );
        w(
            "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages",
            "0\n",
        );
        w("sys/class/dmi/id/product_uuid", "uuid-1\n");
        w("etc/machine-id", "mid\n");
        w(
            "etc/os-release",
            "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        );
        let h = Host {
            proc_root: d.path().join("proc"),
            sys_root: d.path().join("sys"),
            etc_root: d.path().join("etc"),
            root_dir: d.path().to_path_buf(),
            image_fs: None,
            eviction: EvictionHard::upstream_default(),
        };
        (d, h)
    }

    #[test]
    fn reads_the_machine() {
        let (_d, h) = fake_host();
        let i = h.machine_info();
        assert_eq!(i.num_cores, 5);
        assert_eq!(i.memory_capacity, 7_957_336 * 1024);
        assert_eq!(i.swap_capacity, 1024 * 1024);
        assert_eq!(
            i.hugepages,
            [
                HugePages {
                    page_size_kib: 2048,
                    num_pages: 4
                },
                HugePages {
                    page_size_kib: 1_048_576,
                    num_pages: 0
                },
            ]
        );
        assert!(i.rootfs_capacity.is_some_and(|c| c > 0));
        assert_eq!(
            (
                i.machine_id.as_str(),
                i.system_uuid.as_str(),
                i.boot_id.as_str()
            ),
            ("mid", "uuid-1", "b-1")
        );
        assert_eq!(i.kernel_version, "6.1.0-18-amd64");
        assert_eq!(i.os_image, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn memory_below_the_threshold_is_pressure() {
        let (_d, h) = fake_host();
        // 50Mi available < 100Mi
        assert!(h.pressure().memory);
        assert!(!h.pressure().pid);
    }

    #[test]
    fn pids_below_the_threshold_are_pressure() {
        let (d, mut h) = fake_host();
        let w = |p: &str, s: &str| std::fs::write(d.path().join(p), s).unwrap();
        std::fs::create_dir_all(d.path().join("proc/sys/kernel")).unwrap();
        w("proc/sys/kernel/pid_max", "4194304\n");
        w("proc/sys/kernel/threads-max", "1000\n");
        w("proc/loadavg", "0.10 0.20 0.30 1/950 12345\n");
        assert_eq!(h.pids(), Some((1000, 50)));
        assert!(!h.pressure().pid, "no pid.available threshold by default");
        h.eviction.pid_available = Some(ThresholdValue::Percentage(0.1));
        assert!(h.pressure().pid, "50 of 1000 left is below 10%");
        h.eviction.pid_available = Some(ThresholdValue::Percentage(0.01));
        assert!(!h.pressure().pid);
    }

    #[test]
    fn an_image_filesystem_below_its_threshold_is_disk_pressure() {
        let (d, mut h) = fake_host();
        h.eviction = EvictionHard::default();
        assert!(!h.pressure().disk);
        h.image_fs = Some(d.path().to_path_buf());
        h.eviction.imagefs_available = Some(ThresholdValue::Percentage(1.0));
        assert!(h.pressure().disk, "less than all of it is free");
    }

    #[test]
    fn os_image_defaults_to_linux() {
        assert_eq!(os_image(""), "Linux");
        assert_eq!(
            os_image("PRETTY_NAME='Alpine Linux v3.19'\n"),
            "Alpine Linux v3.19"
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_count("0"), 1);
        assert_eq!(cpu_count("0-1"), 2);
        assert_eq!(cpu_count("0-3,8-9,12"), 7);
        assert_eq!(cpu_count(""), 0);
    }
}
