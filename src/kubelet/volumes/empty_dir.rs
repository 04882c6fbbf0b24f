//! emptyDir volumes (upstream pkg/volume/emptydir): a 0777 directory under the pod's
//! volumes dir, or for medium Memory a tmpfs mounted there, sized as upstream sizes it
//! (sizeLimit, the pod's memory limit, the node's allocatable memory). The
//! memory-backed directories of secret, downwardAPI and projected volumes are made the
//! same way, so their content never reaches the disk.
//!
//! Mounts go through [`Mounter`]; whether a directory is already a mount point is read
//! from the mount table, so setting a pod up again mounts nothing twice.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use nix::mount::MsFlags;

use crate::kubelet::envvars::resource::{self, Allocatable};
use crate::sys::mount::Mounter;

/// The directory, created with mode 0777 whatever the umask (upstream setupDir; like it,
/// only the permission bits are compared, so a tmpfs root keeps its sticky bit).
pub fn setup_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != 0o777 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(())
}

/// Why a tmpfs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TmpfsError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("mount tmpfs: {0}")]
    Mount(#[from] nix::Error),
}

/// A tmpfs on `dir` with `size=` bytes when given, unless one is already mounted there.
/// Returns whether it was mounted now.
pub fn setup_tmpfs(
    mounter: &dyn Mounter,
    dir: &Path,
    size: Option<i64>,
) -> Result<bool, TmpfsError> {
    setup_dir(dir)?;
    let canonical = std::fs::canonicalize(dir)?;
    if mount_points(&mounter.mountinfo()?).contains(&canonical) {
        return Ok(false);
    }
    let data = size.filter(|s| *s > 0).map(|s| format!("size={s}"));
    mounter.mount(
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        data.as_deref(),
    )?;
    Ok(true)
}

/// Whether the volume's `ready` marker (upstream volumeutil.IsReady) is a regular file:
/// the volume was set up completely once, fsGroup ownership included.
pub fn is_ready(meta_dir: &Path) -> bool {
    std::fs::metadata(meta_dir.join("ready")).is_ok_and(|m| m.is_file())
}

/// Marks the volume set up (upstream volumeutil.SetReady): `<meta_dir>/ready`, 0600 in a
/// 0750 directory.
pub fn set_ready(meta_dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(meta_dir)?;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(meta_dir.join("ready"))?;
    Ok(())
}

/// The size of a memory-backed volume (upstream calculateEmptyDirMemorySize): the node's
/// allocatable memory, lowered to the pod's memory limit, lowered to the volume's own
/// sizeLimit; each only when positive. `None` (the kernel's default, half the RAM) when
/// none of them is known.
pub fn memory_size(pod: &Pod, size_limit: Option<i64>, alloc: Option<Allocatable>) -> Option<i64> {
    let mut size = alloc.map(|a| a.memory).filter(|m| *m > 0);
    for cap in [pod_memory_limit(pod), size_limit].into_iter().flatten() {
        if cap > 0 && size.is_none_or(|s| cap <= s) {
            size = Some(cap);
        }
    }
    size
}

/// The pod's memory limit as its cgroup gets it: the sum of the containers' limits, or
/// the largest init container's when larger; none unless every container sets one.
fn pod_memory_limit(pod: &Pod) -> Option<i64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(resource::value)
    };
    let mut sum: i64 = 0;
    for c in &spec.containers {
        sum = sum.saturating_add(limit(c)?);
    }
    let mut init_max: i64 = 0;
    for c in spec.init_containers.iter().flatten() {
        init_max = init_max.max(limit(c)?);
    }
    Some(sum.max(init_max))
}

/// The mount points of a /proc/self/mountinfo text, in table order (octal escapes of
/// space, tab, newline and backslash decoded).
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::volumes::tests::TempDir;
    use crate::sys::record::{Answers, Call, Recorder};

    #[test]
    fn parses_mount_points() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    90 22 0:50 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/a\\040b rw - tmpfs tmpfs rw,size=1024k\n";
        assert_eq!(
            mount_points(info),
            [
                PathBuf::from("/"),
                PathBuf::from("/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/a b")
            ]
        );
    }

    #[test]
    fn memory_size_as_upstream() {
        let pod = |limits: &[Option<&str>]| -> Pod {
            let containers: Vec<serde_json::Value> = limits
                .iter()
                .enumerate()
                .map(|(i, l)| match l {
                    Some(l) => serde_json::json!({"name": format!("c{i}"), "resources": {"limits": {"memory": l}}}),
                    None => serde_json::json!({"name": format!("c{i}")}),
                })
                .collect();
            serde_json::from_value(serde_json::json!({"spec": {"containers": containers}})).unwrap()
        };
        let alloc = Some(Allocatable {
            cpu_millis: 1000,
            memory: 1000,
        });
        assert_eq!(memory_size(&pod(&[None]), None, None), None);
        assert_eq!(memory_size(&pod(&[None]), Some(64), None), Some(64));
        assert_eq!(memory_size(&pod(&[None]), None, alloc), Some(1000));
        assert_eq!(
            memory_size(&pod(&[Some("300"), Some("200")]), None, alloc),
            Some(500)
        );
        // One container without a limit: the pod has none.
        assert_eq!(
            memory_size(&pod(&[Some("300"), None]), None, alloc),
            Some(1000)
        );
        assert_eq!(
            memory_size(&pod(&[Some("300")]), Some(100), alloc),
            Some(100)
        );
        // A sizeLimit above what the pod may use does not raise it.
        assert_eq!(
            memory_size(&pod(&[Some("300")]), Some(5000), alloc),
            Some(300)
        );
        assert_eq!(memory_size(&pod(&[Some("3000")]), None, alloc), Some(1000));
    }

    #[test]
    fn dir_is_0777() {
        let t = TempDir::new("emptydir");
        let d = t.path().join("x/y");
        setup_dir(&d).unwrap();
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o777
        );
    }

    #[test]
    fn ready_marker() {
        let t = TempDir::new("ready");
        let meta = t.path().join("plugins/kubernetes.io~empty-dir/v");
        assert!(!is_ready(&meta));
        set_ready(&meta).unwrap();
        assert!(is_ready(&meta));
        set_ready(&meta).unwrap();
        assert_eq!(
            std::fs::metadata(meta.join("ready"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn tmpfs_mounted_once() {
        let t = TempDir::new("tmpfs");
        let d = t.path().join("mem");
        let rec = Recorder::default();
        assert!(setup_tmpfs(&rec, &d, Some(64 << 20)).unwrap());
        assert_eq!(
            rec.calls(),
            [Call::Mount {
                source: Some("tmpfs".into()),
                target: d.clone(),
                fstype: Some("tmpfs".into()),
                flags: MsFlags::empty(),
                data: Some("size=67108864".into()),
            }]
        );
        // Already in the mount table: nothing mounted again.
        let canon = std::fs::canonicalize(&d).unwrap();
        let rec = Recorder::new(Answers {
            mountinfo: format!("90 22 0:50 / {} rw - tmpfs tmpfs rw\n", canon.display()),
            ..Default::default()
        });
        assert!(!setup_tmpfs(&rec, &d, None).unwrap());
        assert_eq!(rec.calls(), []);
    }
}
