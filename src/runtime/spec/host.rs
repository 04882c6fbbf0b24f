//! What the spec builder must ask the host: a bind source made usable, the propagation of
//! the mount holding a path, and device nodes. The builder itself does no IO; the CRI
//! service passes [`LinuxHost`], unit tests pass a fake.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The propagation of the mount that holds a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Private,
    /// Has a `shared:N` peer group.
    Shared,
    /// Receives from a master (`master:N`) but does not share.
    Slave,
}

/// A device node on the host, as the spec lists it for the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// The path the container sees.
    pub path: PathBuf,
    /// `c` or `b`.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The host queries of a container spec.
pub trait HostView {
    /// Makes `host_path` a usable bind source and returns it with symlinks resolved;
    /// a missing path is created as a directory, as containerd does for CRI mounts.
    fn mount_source(&self, host_path: &Path) -> io::Result<PathBuf>;
    /// The propagation of the mount holding `path`.
    fn propagation(&self, path: &Path) -> io::Result<Propagation>;
    /// The device nodes at `host_path` (a node, a symlink to one, or a directory walked
    /// as containerd's getDevices walks it), named under `container_path`.
    fn devices(&self, host_path: &Path, container_path: &Path) -> io::Result<Vec<HostDevice>>;
    /// Every device node under the host's /dev (privileged containers).
    fn host_devices(&self) -> io::Result<Vec<HostDevice>>;
}

impl super::container::HostFacts {
    /// The facts of the host this process runs on: its hostname, cgroup features,
    /// effective capabilities and oom_score_adj.
    pub fn detect() -> Self {
        let layout = crate::cgroups::Layout::detect();
        let swap = match layout.v1("memory") {
            Some(h) => h.mount.join("memory.memsw.limit_in_bytes").exists(),
            None => layout.controller("memory") == Some(true),
        };
        let mut caps: Vec<caps::Capability> = caps::read(None, caps::CapSet::Effective)
            .unwrap_or_default()
            .into_iter()
            .collect();
        caps.sort_by_key(|c| c.index());
        let sys_resource = caps.contains(&caps::Capability::CAP_SYS_RESOURCE);
        Self {
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cgroups: super::resources::CgroupFacts {
                unified: layout.is_v2_only(),
                swap,
                hugetlb: layout.controller("hugetlb").is_some(),
            },
            current_caps: caps.iter().map(|c| c.to_string()).collect(),
            current_oom_score_adj: std::fs::read_to_string("/proc/self/oom_score_adj")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            can_lower_oom_score_adj: sys_resource,
        }
    }
}

/// The real host, through the paths as this process sees them.
#[derive(Debug, Clone, Default)]
pub struct LinuxHost;

fn device_at(path: &Path, shown_as: PathBuf) -> io::Result<Option<HostDevice>> {
    let md = std::fs::symlink_metadata(path)?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Ok(None);
    };
    let rdev = md.rdev();
    Ok(Some(HostDevice {
        path: shown_as,
        kind,
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        file_mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
    }))
}

fn walk_devices(dir: &Path, shown: Option<&Path>, out: &mut Vec<HostDevice>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let ft = e.file_type()?;
        let p = e.path();
        let shown_as = shown.map_or_else(|| p.clone(), |s| s.join(&name));
        if ft.is_dir() {
            // containerd skips these: not device directories, or another runtime's.
            let skip = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
            if !skip.iter().any(|s| name == *s) {
                walk_devices(&p, shown.map(|_| shown_as.as_path()), out)?;
            }
            continue;
        }
        if name == "console" {
            continue;
        }
        match device_at(&p, shown_as) {
            Ok(Some(d)) => out.push(d),
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl HostView for LinuxHost {
    fn mount_source(&self, host_path: &Path) -> io::Result<PathBuf> {
        match std::fs::symlink_metadata(host_path) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(host_path)?;
            }
            Err(e) => return Err(e),
        }
        host_path.canonicalize()
    }

    fn propagation(&self, path: &Path) -> io::Result<Propagation> {
        let path = path.canonicalize()?;
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        propagation_in(&info, &path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no mount holds this path"))
    }

    fn devices(&self, host_path: &Path, container_path: &Path) -> io::Result<Vec<HostDevice>> {
        let md = std::fs::metadata(host_path)?;
        if md.is_dir() {
            let mut out = vec![];
            walk_devices(host_path, Some(container_path), &mut out)?;
            return Ok(out);
        }
        let resolved = host_path.canonicalize()?;
        device_at(&resolved, container_path.to_path_buf())?
            .map(|d| vec![d])
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a device node", host_path.display()),
                )
            })
    }

    fn host_devices(&self) -> io::Result<Vec<HostDevice>> {
        let mut out = vec![];
        walk_devices(Path::new("/dev"), None, &mut out)?;
        Ok(out)
    }
}

/// The propagation of the innermost mount in `mountinfo` that holds `path`.
pub fn propagation_in(mountinfo: &str, path: &Path) -> Option<Propagation> {
    let mut best: Option<(usize, Propagation)> = None;
    for line in mountinfo.lines() {
        let Some((pre, _)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split(' ').collect();
        let Some(mnt) = f.get(4) else { continue };
        let mnt = Path::new(mnt);
        if !path.starts_with(mnt) {
            continue;
        }
        let optional = f.get(6..).unwrap_or_default();
        let prop = if optional.iter().any(|o| o.starts_with("shared:")) {
            Propagation::Shared
        } else if optional.iter().any(|o| o.starts_with("master:")) {
            Propagation::Slave
        } else {
            Propagation::Private
        };
        let depth = mnt.components().count();
        // A later line for the same mount point is mounted over the earlier one.
        if best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, prop));
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_from_mountinfo() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
            30 22 0:5 / /mnt/priv rw - tmpfs tmpfs rw\n\
            31 22 0:6 / /mnt/slave rw master:7 - tmpfs tmpfs rw\n\
            32 22 0:7 / /mnt/both rw shared:9 master:7 - tmpfs tmpfs rw\n";
        let p = |s: &str| propagation_in(info, Path::new(s));
        assert_eq!(p("/var/lib/x"), Some(Propagation::Shared));
        assert_eq!(p("/mnt/priv/a"), Some(Propagation::Private));
        assert_eq!(p("/mnt/slave"), Some(Propagation::Slave));
        assert_eq!(p("/mnt/both/x"), Some(Propagation::Shared));
        assert_eq!(
            p("/mnt/private2"),
            Some(Propagation::Shared),
            "prefix by component"
        );
    }

    #[test]
    fn detected_facts_are_plausible() {
        let f = super::super::container::HostFacts::detect();
        assert!(!f.hostname.is_empty());
        assert!(
            f.current_caps.iter().all(|c| c.starts_with("CAP_")),
            "{:?}",
            f.current_caps
        );
        assert!((-1000..=1000).contains(&f.current_oom_score_adj));
    }

    #[test]
    fn linux_host_reads_dev_null() {
        let devs = LinuxHost
            .devices(Path::new("/dev/null"), Path::new("/dev/mynull"))
            .expect("dev null");
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].path, Path::new("/dev/mynull"));
        assert_eq!((devs[0].kind, devs[0].major, devs[0].minor), ('c', 1, 3));
        let e = LinuxHost
            .devices(Path::new("/etc/hostname"), Path::new("/x"))
            .expect_err("not a device");
        assert!(e.to_string().contains("not a device node"), "{e}");
    }
}
