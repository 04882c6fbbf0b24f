//! emptyDir volumes (upstream pkg/volume/emptydir): a 0777 directory under the pod's
//! volumes dir, or for medium Memory a tmpfs mounted there, sized by `sizeLimit`. The
//! memory-backed directories of secret, downwardAPI and projected volumes are made the
//! same way, so their content never reaches the disk.
//!
//! Mounts go through [`Mounter`]; whether a directory is already a mount point is read
//! from the mount table, so setting a pod up again mounts nothing twice.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

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
pub fn setup_tmpfs(mounter: &dyn Mounter, dir: &Path, size: Option<i64>) -> Result<(), TmpfsError> {
    setup_dir(dir)?;
    let canonical = std::fs::canonicalize(dir)?;
    if mount_points(&mounter.mountinfo()?).contains(&canonical) {
        return Ok(());
    }
    let data = size.filter(|s| *s > 0).map(|s| format!("size={s}"));
    mounter.mount(
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        data.as_deref(),
    )?;
    Ok(())
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
    fn tmpfs_mounted_once() {
        let t = TempDir::new("tmpfs");
        let d = t.path().join("mem");
        let rec = Recorder::default();
        setup_tmpfs(&rec, &d, Some(64 << 20)).unwrap();
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
        setup_tmpfs(&rec, &d, None).unwrap();
        assert_eq!(rec.calls(), []);
    }
}
