//! A container's writable layer: the bytes and inodes its files use (a walk of the
//! overlay's upper directory, as cAdvisor's `du` does) and the capacity of the
//! filesystem it lives on; and the names cAdvisor gives block devices (`/dev/vda`).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a layer's walk is reused: a layer of many files makes the walk the dearest
/// part of a metrics call, and its size moves slowly (cAdvisor too walks on a timer).
pub const LAYER_TTL: Duration = Duration::from_secs(10);

/// When a layer was walked, and the bytes and inodes found.
type Walks = HashMap<PathBuf, (Instant, (u64, u64))>;

/// The last walk of each layer.
#[derive(Debug, Default)]
pub struct LayerCache {
    walked: Mutex<Walks>,
}

impl LayerCache {
    /// Bytes and inodes of the tree at `dir`, walked again once [`LAYER_TTL`] is over.
    fn usage(&self, dir: &Path, now: Instant) -> (u64, u64) {
        if let Some((at, v)) = self.lock().get(dir)
            && now.saturating_duration_since(*at) < LAYER_TTL
        {
            return *v;
        }
        // Walked outside the lock: a slow walk holds up no other layer.
        let v = du(dir);
        self.lock().insert(dir.to_owned(), (now, v));
        v
    }

    /// Forgets every layer but those in `live`.
    pub fn retain(&self, live: &HashSet<PathBuf>) {
        self.lock().retain(|p, _| live.contains(p));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Walks> {
        self.walked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writable layer's usage on its filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// The filesystem's device as cAdvisor names it.
    pub device: String,
    /// Bytes the layer's files occupy (allocated blocks).
    pub usage_bytes: u64,
    /// Inodes the layer uses.
    pub inodes_used: u64,
    /// The filesystem's size, its inode count and free inodes.
    pub limit_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// Usage of the layer at `upper`; `None` when it is gone (the container was removed).
pub fn layer_usage(
    upper: &Path,
    sys_root: &Path,
    proc_root: &Path,
    cache: &LayerCache,
) -> Option<FsUsage> {
    let top = std::fs::symlink_metadata(upper).ok()?;
    let vfs = nix::sys::statvfs::statvfs(upper).ok()?;
    let (usage_bytes, inodes_used) = cache.usage(upper, Instant::now());
    let dev = top.dev();
    Some(FsUsage {
        device: device_name(sys_root, proc_root, major(dev), minor(dev))?,
        usage_bytes,
        inodes_used,
        limit_bytes: vfs.blocks() * vfs.fragment_size(),
        inodes_total: vfs.files(),
        inodes_free: vfs.files_free(),
    })
}

/// Allocated bytes and inode count of the tree at `dir`, without following symlinks or
/// leaving the filesystem. An entry that vanishes meanwhile is skipped.
fn du(dir: &Path) -> (u64, u64) {
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let dev = top.dev();
    let (mut bytes, mut inodes) = (top.blocks() * 512, 1);
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            bytes += m.blocks() * 512;
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

pub fn major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff)
}

pub fn minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0xff)
}

/// `/dev/<name>` of a block device (from its uevent in sysfs); for a filesystem without
/// one (tmpfs, overlay: major 0) the source of its mount, as mountinfo lists it.
pub fn device_name(sys_root: &Path, proc_root: &Path, major: u64, minor: u64) -> Option<String> {
    let uevent = sys_root.join(format!("dev/block/{major}:{minor}/uevent"));
    if let Ok(text) = std::fs::read_to_string(uevent)
        && let Some(name) = text.lines().find_map(|l| l.strip_prefix("DEVNAME="))
    {
        return Some(format!("/dev/{name}"));
    }
    let mountinfo = std::fs::read_to_string(proc_root.join("self/mountinfo")).ok()?;
    mount_source(&mountinfo, major, minor)
}

/// The source of the first mount of device `major:minor` in a mountinfo table.
fn mount_source(mountinfo: &str, major: u64, minor: u64) -> Option<String> {
    let want = format!("{major}:{minor}");
    mountinfo.lines().find_map(|l| {
        let mut fields = l.split(' ');
        if fields.nth(2)? != want {
            return None;
        }
        let (_, after) = l.split_once(" - ")?;
        after.split(' ').nth(1).map(str::to_owned)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_split_as_the_kernel_encodes_them() {
        let dev = libc::makedev(254, 3);
        assert_eq!((major(dev), minor(dev)), (254, 3));
        let big = libc::makedev(259, 70000);
        assert_eq!((major(big), minor(big)), (259, 70000));
    }

    #[test]
    fn names_block_devices_from_sysfs_and_others_from_mountinfo() {
        let root = std::env::temp_dir().join(format!("berth-fsname-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (sys, proc_) = (root.join("sys"), root.join("proc"));
        std::fs::create_dir_all(sys.join("dev/block/254:0")).unwrap();
        std::fs::write(
            sys.join("dev/block/254:0/uevent"),
            "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\n",
        )
        .unwrap();
        std::fs::create_dir_all(proc_.join("self")).unwrap();
        std::fs::write(
            proc_.join("self/mountinfo"),
            "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
             30 22 0:27 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,size=1000k\n",
        )
        .unwrap();
        assert_eq!(
            device_name(&sys, &proc_, 254, 0).as_deref(),
            Some("/dev/vda")
        );
        assert_eq!(device_name(&sys, &proc_, 0, 27).as_deref(), Some("tmpfs"));
        assert_eq!(device_name(&sys, &proc_, 0, 99), None);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn layer_usage_counts_the_files_of_the_tree() {
        let root = std::env::temp_dir().join(format!("berth-du-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::write(root.join("g"), b"x").unwrap();
        let cache = LayerCache::default();
        let u = layer_usage(&root, Path::new("/sys"), Path::new("/proc"), &cache).unwrap();
        // root, a, a/b, a/b/f, g
        assert_eq!(u.inodes_used, 5);
        assert!(u.usage_bytes >= 64 * 1024, "{u:?}");
        assert!(u.limit_bytes > u.usage_bytes && u.inodes_total >= u.inodes_free);
        assert!(!u.device.is_empty());
        // Within the TTL the walk is reused; after it, or once forgotten, walked again.
        std::fs::write(root.join("h"), vec![1u8; 64 * 1024]).unwrap();
        let t0 = Instant::now();
        assert_eq!(cache.usage(&root, t0), (u.usage_bytes, 5));
        assert_eq!(cache.usage(&root, t0 + LAYER_TTL).1, 6);
        std::fs::write(root.join("i"), b"y").unwrap();
        cache.retain(&HashSet::new());
        assert_eq!(cache.usage(&root, t0).1, 7);
        std::fs::remove_dir_all(&root).unwrap();
        assert!(layer_usage(&root, Path::new("/sys"), Path::new("/proc"), &cache).is_none());
    }
}
