//! The container's root filesystem, built by its init in its own mount namespace:
//! the spec's mounts, /dev, pivot_root, masked and read-only paths.
//!
//! Runs in the child only; errors are strings naming the spec field, sent to the parent.

use std::os::unix::fs::{DirBuilderExt, symlink};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::sys::mount::Mounter;
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::plan::{MountPlan, Plan};

/// `dest` (absolute, as the container sees it) as a host path under `root`, following
/// symlinks as the container would. A relative symlink that climbs above the rootfs is
/// refused: that is a spec (or image) trying to mount onto the host.
pub fn resolve_in_root(root: &Path, dest: &Path) -> Result<PathBuf, String> {
    resolve(root, dest).map(|(p, _)| p)
}

/// [`resolve_in_root`], also telling whether the result is a directory that exists (as
/// the walk saw it; a mount point that does not is made by the caller).
fn resolve(root: &Path, dest: &Path) -> Result<(PathBuf, bool), String> {
    let mut is_dir = false;
    let mut todo: Vec<PathBuf> = dest
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .rev()
        .collect();
    let mut cur: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        is_dir = false;
        if c.as_os_str() == ".." {
            if cur.pop().is_none() {
                return Err(format!("{} climbs above the rootfs", dest.display()));
            }
            continue;
        }
        let host = root.join(cur.iter().collect::<PathBuf>()).join(&c);
        match std::fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!("{}: too many symlinks", dest.display()));
                }
                let target = std::fs::read_link(&host).map_err(|e| e.to_string())?;
                if target.is_absolute() {
                    cur.clear();
                } else {
                    // a relative link must stay inside the rootfs
                    let mut depth = cur.len() as i64;
                    for comp in target.components() {
                        match comp {
                            Component::ParentDir => depth -= 1,
                            Component::Normal(_) => depth += 1,
                            _ => {}
                        }
                        if depth < 0 {
                            return Err(format!(
                                "{} goes through symlink {} -> {}, which escapes the rootfs",
                                dest.display(),
                                host.display(),
                                target.display()
                            ));
                        }
                    }
                }
                for comp in target.components().rev() {
                    match comp {
                        Component::Normal(n) => todo.push(PathBuf::from(n)),
                        Component::ParentDir => todo.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            Ok(md) => {
                is_dir = md.is_dir();
                cur.push(c);
            }
            Err(_) => cur.push(c),
        }
    }
    Ok((root.join(cur.iter().collect::<PathBuf>()), is_dir))
}

fn e<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |err| format!("{what}: {err}")
}

fn mkdir_p(p: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(p)
        .map_err(e(format!("mkdir {}", p.display())))
}

/// Creates the mount point for `m` and mounts it.
fn do_mount(mnt: &dyn Mounter, plan: &Plan, m: &MountPlan) -> Result<(), String> {
    let field = || format!("mounts[{}] ({})", m.index, m.destination.display());
    let fail = |what: &str, err: &dyn std::fmt::Display| format!("{}{what}: {err}", field());
    let (target, is_dir) = resolve(&plan.rootfs, &m.destination).map_err(|err| fail("", &err))?;
    if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        return mount_cgroup(mnt, plan, m, &target, &field());
    }
    if m.bind {
        let src = m.source.as_deref().unwrap_or(Path::new(""));
        if src.is_dir() {
            if !is_dir {
                mkdir_p(&target)?;
            }
        } else {
            if let Some(parent) = target.parent() {
                mkdir_p(parent)?;
            }
            if !target.exists() {
                std::fs::File::create(&target).map_err(|err| fail(": create", &err))?;
            }
        }
        let rec = m.flags & MsFlags::MS_REC;
        mnt.mount(Some(src), &target, None, MsFlags::MS_BIND | rec, None)
            .map_err(|err| fail(&format!(": bind {}", src.display()), &err))?;
        // A bind ignores its other flags: they need a remount.
        let extra = m.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            remount(mnt, &target, extra).map_err(|err| fail(": remount", &err))?;
        }
    } else {
        if !is_dir {
            mkdir_p(&target)?;
        }
        let data = if m.data.is_empty() {
            None
        } else {
            Some(m.data.as_str())
        };
        let src = m.source.as_deref().unwrap_or(Path::new(&m.fstype));
        let res = mnt.mount(Some(src), &target, Some(m.fstype.as_str()), m.flags, data);
        match res {
            // sysfs in a container that joined a netns it does not own (or a userns) is
            // refused; bind the host's instead, as runc does.
            Err(nix::errno::Errno::EPERM) if m.fstype == "sysfs" => {
                mnt.mount(
                    Some(Path::new("/sys")),
                    &target,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
                .map_err(|err| fail(": bind /sys", &err))?;
                remount(mnt, &target, m.flags | MsFlags::MS_RDONLY)
                    .map_err(|err| fail(": remount", &err))?;
            }
            Err(nix::errno::Errno::EPERM) if m.fstype == "mqueue" => {
                mnt.mount(
                    Some(Path::new("/dev/mqueue")),
                    &target,
                    None,
                    MsFlags::MS_BIND,
                    None,
                )
                .map_err(|err| fail(": bind /dev/mqueue", &err))?;
            }
            r => r.map_err(|err| fail(&format!(": mount {}", m.fstype), &err))?,
        }
    }
    for p in &m.propagation {
        mnt.mount(None, &target, None, *p, None)
            .map_err(|err| fail(": propagation", &err))?;
    }
    Ok(())
}

/// The cgroup hierarchies, as the container's own subtrees: a tmpfs holding one bind per
/// hierarchy (v1), or one bind of the container's unified dir (v2).
fn mount_cgroup(
    mnt: &dyn Mounter,
    plan: &Plan,
    m: &MountPlan,
    target: &Path,
    field: &str,
) -> Result<(), String> {
    let ro = m.flags & MsFlags::MS_RDONLY;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mkdir_p(target)?;
    let v1 = plan.cgroup_binds.iter().any(|(_, d)| d != &m.destination);
    if v1 {
        mnt.mount(
            Some(Path::new("tmpfs")),
            target,
            Some("tmpfs"),
            base,
            Some("mode=755"),
        )
        .map_err(e(format!("{field}: tmpfs")))?;
    }
    for (src, dest) in &plan.cgroup_binds {
        let t = resolve_in_root(&plan.rootfs, dest).map_err(e(field))?;
        mkdir_p(&t)?;
        mnt.mount(
            Some(src),
            &t,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(e(format!("{field}: bind {}", src.display())))?;
        remount(mnt, &t, base | ro).map_err(e(format!("{field}: remount")))?;
    }
    if v1 && !ro.is_empty() {
        remount(mnt, target, base | ro).map_err(e(format!("{field}: remount")))?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags`, keeping the lock flags the kernel will not let an
/// unprivileged mount namespace clear.
pub fn remount(mnt: &dyn Mounter, target: &Path, flags: MsFlags) -> nix::Result<()> {
    let locked = nix::sys::statvfs::statvfs(target)
        .map(|s| {
            use nix::sys::statvfs::FsFlags as F;
            let f = s.flags();
            let mut m = MsFlags::empty();
            for (a, b) in [
                (F::ST_NOSUID, MsFlags::MS_NOSUID),
                (F::ST_NODEV, MsFlags::MS_NODEV),
                (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (F::ST_NOATIME, MsFlags::MS_NOATIME),
                (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (F::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(a) {
                    m |= b;
                }
            }
            m
        })
        .unwrap_or(MsFlags::empty());
    mnt.mount(
        None,
        target,
        None,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags | locked,
        None,
    )
}

/// The mount point of the mount holding `path` (the last, topmost, of the longest mount
/// point above it in `mountinfo`) when that mount is shared.
pub fn shared_parent_mount(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    let mut best: Option<(PathBuf, bool)> = None;
    for line in mountinfo.lines() {
        let Some((pre, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        let point = PathBuf::from(crate::cgroups::unescape_mount_path(point));
        if !path.starts_with(&point) {
            continue;
        }
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| point.components().count() >= b.components().count());
        if longer {
            let optional = fields.get(6..).unwrap_or_default();
            let shared = optional.iter().any(|f| f.starts_with("shared:"));
            best = Some((point, shared));
        }
    }
    best.filter(|(_, shared)| *shared).map(|(p, _)| p)
}

/// Builds the root: propagation, the rootfs bind, the mounts, /dev.
pub fn prepare(mnt: &dyn Mounter, plan: &Plan, in_userns: bool) -> Result<(), String> {
    // Without a mount namespace of its own the container's mounts are made in the
    // caller's, whose propagation is left alone (runc changes it).
    if plan.has_mount_ns() {
        mnt.mount(None, Path::new("/"), None, plan.rootfs_propagation, None)
            .map_err(e("linux.rootfsPropagation: propagation of /"))?;
        // The mount holding the rootfs goes private when it is shared (e.g. / made rshared
        // above, or the node's own / when the bundle sits on it): pivot_root refuses a new
        // root whose parent mount is shared, and the rootfs bind below would propagate to
        // the peers of that mount. As runc's rootfsParentMountPrivate.
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(e("read /proc/self/mountinfo"))?;
        if let Some(parent) = shared_parent_mount(&info, &plan.rootfs) {
            mnt.mount(None, &parent, None, MsFlags::MS_PRIVATE, None)
                .map_err(e(format!("make {} private", parent.display())))?;
        }
    }
    mnt.mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(e(format!("bind rootfs {}", plan.rootfs.display())))?;
    for m in &plan.mounts {
        do_mount(mnt, plan, m)?;
    }
    make_dev(mnt, plan, in_userns)
}

fn make_dev(mnt: &dyn Mounter, plan: &Plan, in_userns: bool) -> Result<(), String> {
    let dev = plan.rootfs.join("dev");
    mkdir_p(&dev)?;
    // The spec's modes are exact (as runc, with the umask cleared while nodes are made);
    // restored below, and the init sets the process's own umask later.
    let umask = nix::sys::stat::umask(Mode::empty());
    let made = make_nodes(mnt, plan, &dev, in_userns);
    nix::sys::stat::umask(umask);
    made?;
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = dev.join(link);
        // what is already there (the spec's own, or the image's) is kept
        match symlink(to, &p) {
            Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(format!("symlink {}: {err}", p.display()));
            }
            _ => {}
        }
    }
    let ptmx = dev.join("ptmx");
    if dev.join("pts").is_dir() {
        match symlink("pts/ptmx", &ptmx) {
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(&ptmx);
                symlink("pts/ptmx", &ptmx).map_err(e("symlink /dev/ptmx"))?;
            }
            r => r.map_err(e("symlink /dev/ptmx"))?,
        }
    }
    Ok(())
}

/// The spec's device nodes (and the default ones) under `dev`, with the umask cleared.
fn make_nodes(mnt: &dyn Mounter, plan: &Plan, dev: &Path, in_userns: bool) -> Result<(), String> {
    for d in &plan.devices {
        let target = resolve_in_root(&plan.rootfs, &d.path).map_err(e("linux.devices"))?;
        if let Some(p) = target.parent()
            && p != dev
        {
            mkdir_p(p)?;
        }
        let node = || {
            mknod(
                &target,
                SFlag::from_bits_truncate(d.kind),
                Mode::from_bits_truncate(d.mode & 0o7777),
                makedev(d.major, d.minor),
            )
        };
        let made = if in_userns {
            Err(nix::errno::Errno::EPERM)
        } else {
            match node() {
                // whatever the image has there (a file, a symlink) is replaced
                Err(nix::errno::Errno::EEXIST) => {
                    let _ = std::fs::remove_file(&target);
                    node()
                }
                r => r,
            }
        };
        match made {
            Ok(()) => {
                nix::unistd::chown(
                    &target,
                    Some(nix::unistd::Uid::from_raw(d.uid)),
                    Some(nix::unistd::Gid::from_raw(d.gid)),
                )
                .map_err(e(format!("chown {}", target.display())))?;
            }
            Err(nix::errno::Errno::EPERM) => {
                // In a user namespace mknod is refused: bind the host's node instead,
                // onto a new file (never through what the image left there).
                if std::fs::symlink_metadata(&target).is_ok() {
                    let _ = std::fs::remove_file(&target);
                }
                std::fs::File::create(&target)
                    .map_err(e(format!("create {}", target.display())))?;
                mnt.mount(Some(&d.path), &target, None, MsFlags::MS_BIND, None)
                    .map_err(e(format!("bind {}", d.path.display())))?;
            }
            Err(err) => return Err(format!("mknod {}: {err}", target.display())),
        }
    }
    Ok(())
}

/// Makes the rootfs the process's `/`: pivot_root, or (rootfs on ramfs, or --no-pivot)
/// a move mount and chroot; without a mount namespace of its own, chroot (as runc).
pub fn enter(plan: &Plan) -> Result<(), String> {
    nix::unistd::chdir(&plan.rootfs).map_err(e("chdir rootfs"))?;
    if !plan.has_mount_ns() {
        nix::unistd::chroot(".").map_err(e("chroot"))?;
        return nix::unistd::chdir("/").map_err(e("chdir /"));
    }
    pivot_or_move(plan)?;
    // The rootfs, now /, gets the propagation asked for (shared, slave...): applied to /
    // before the rootfs was bound, it only reached the rootfs's parent, which was made
    // private for pivot_root. Private is what it already is.
    let p = plan.rootfs_propagation;
    if !p.is_empty() && !p.contains(MsFlags::MS_PRIVATE) {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .map_err(e("linux.rootfsPropagation: propagation of the new /"))?;
    }
    Ok(())
}

fn pivot_or_move(plan: &Plan) -> Result<(), String> {
    // The old root, held open: after pivot_root(".", ".") it is stacked on the new root,
    // and "." from the new root's directory still names the new root's mount, not the
    // old one on top of it.
    let old_root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(e("open /"))?;
    let pivot = if plan.no_pivot {
        Err(nix::errno::Errno::EINVAL)
    } else {
        nix::unistd::pivot_root(".", ".")
    };
    match pivot {
        Ok(()) => {
            nix::unistd::fchdir(&old_root).map_err(e("fchdir old root"))?;
            // The old root is stacked on the new one: detach it, made a slave first so
            // that the unmount does not propagate to the host.
            mount(
                None::<&str>,
                ".",
                None::<&str>,
                MsFlags::MS_SLAVE | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(e("make old root a slave"))?;
            umount2(".", MntFlags::MNT_DETACH).map_err(e("detach old root"))?;
        }
        // pivot_root cannot leave the initramfs (the rootfs of a diskless boot is on ramfs):
        // only there, or when asked (--no-pivot), a move mount and chroot instead.
        Err(err) if !plan.no_pivot && !on_ramfs() => {
            return Err(format!(
                "pivot_root into {}: {err} (--no-pivot moves the root instead)",
                plan.rootfs.display()
            ));
        }
        Err(_) => {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(e("move rootfs to /"))?;
            nix::unistd::chroot(".").map_err(e("chroot"))?;
        }
    }
    nix::unistd::chdir("/").map_err(e("chdir /"))
}

fn on_ramfs() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    nix::sys::statfs::statfs(".").is_ok_and(|s| s.filesystem_type().0 == RAMFS_MAGIC)
}

/// After entering the root: masked and read-only paths, read-only root, sysctls.
pub fn finish(mnt: &dyn Mounter, plan: &Plan) -> Result<(), String> {
    // before /proc/sys becomes read-only
    for (k, v) in &plan.sysctl {
        let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&p, v).map_err(e(format!("linux.sysctl[{k}]")))?;
    }
    for p in &plan.readonly {
        // a path the container does not have is skipped (as runc)
        match mnt.mount(Some(p), p, None, MsFlags::MS_BIND | MsFlags::MS_REC, None) {
            Err(nix::errno::Errno::ENOENT) => continue,
            r => r.map_err(e(format!("linux.readonlyPaths {}", p.display())))?,
        }
        remount(mnt, p, MsFlags::MS_RDONLY).map_err(e(format!(
            "linux.readonlyPaths {}: remount ro",
            p.display()
        )))?;
    }
    for p in &plan.masked {
        // /dev/null over a file; a directory refuses it (ENOTDIR) and gets an empty
        // read-only tmpfs; a path the container does not have is skipped (as runc).
        let masked = match mnt.mount(
            Some(Path::new("/dev/null")),
            p,
            None,
            MsFlags::MS_BIND,
            None,
        ) {
            Err(nix::errno::Errno::ENOTDIR) => mnt.mount(
                Some(Path::new("tmpfs")),
                p,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            ),
            Err(nix::errno::Errno::ENOENT) => Ok(()),
            r => r,
        };
        masked.map_err(e(format!("linux.maskedPaths {}", p.display())))?;
    }
    if plan.readonly_root {
        remount(mnt, Path::new("/"), MsFlags::MS_RDONLY).map_err(e("root.readonly"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_and_refuses_escape() {
        let d = std::env::temp_dir().join(format!("berth-rootfs-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b")).expect("mkdir");
        symlink("/a", d.join("abs")).expect("link");
        symlink("a/b", d.join("rel")).expect("link");
        symlink("../../../../etc", d.join("a/esc")).expect("link");
        assert_eq!(
            resolve_in_root(&d, Path::new("/abs/b")).expect("abs"),
            d.join("a/b")
        );
        assert_eq!(
            resolve_in_root(&d, Path::new("/rel/c")).expect("rel"),
            d.join("a/b/c")
        );
        assert!(resolve_in_root(&d, Path::new("/a/esc/x")).is_err());
        assert!(resolve_in_root(&d, Path::new("/../x")).is_err());
        std::fs::remove_dir_all(&d).expect("rm");
    }

    /// The mount whose propagation pivot_root cares about: the innermost (and topmost)
    /// one holding the rootfs, when it is shared.
    #[test]
    fn shared_parent_of_the_rootfs() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /var/lib rw shared:7 - tmpfs tmpfs rw
31 30 0:41 / /var/lib/berth rw - tmpfs tmpfs rw
32 22 0:42 / /srv\\040x rw master:3 - tmpfs tmpfs rw
33 32 0:43 / /srv\\040x rw shared:9 - tmpfs tmpfs rw";
        let p = |s: &str| shared_parent_mount(info, Path::new(s));
        assert_eq!(p("/opt/b/rootfs"), Some(PathBuf::from("/")));
        assert_eq!(p("/var/lib/x/rootfs"), Some(PathBuf::from("/var/lib")));
        assert_eq!(p("/var/lib/berth/b/rootfs"), None, "private");
        assert_eq!(p("/var/libx/rootfs"), Some(PathBuf::from("/")));
        assert_eq!(
            p("/srv x/rootfs"),
            Some(PathBuf::from("/srv x")),
            "the top one"
        );
    }

    /// The mounts a spec turns into, seen through the recording seam (no root needed).
    #[test]
    fn mounts_planned_for_a_spec() {
        use crate::sys::mount::Recorder;
        let d = std::env::temp_dir().join(format!("berth-rootfs-plan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("rootfs/data")).expect("mkdir");
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "mode=755"]},
                {"destination": "/data", "type": "bind", "source": d.join("rootfs/data"),
                 "options": ["rbind", "ro", "nodev", "rprivate"]}
            ],
            "linux": {"namespaces": [{"type": "mount"}], "rootfsPropagation": "rslave"}
        }))
        .expect("spec");
        let plan =
            super::super::plan::build("t", &spec, &d, None, &Default::default()).expect("plan");
        let rec = Recorder::default();
        // userns: device nodes are bound, not made
        prepare(&rec, &plan, true).expect("prepare");
        let mut calls = rec.calls();
        // the mount holding the temp dir is made private first where it is shared
        if calls[1].flags == MsFlags::MS_PRIVATE {
            calls.remove(1);
        }
        let root = d.join("rootfs").canonicalize().expect("canon");
        assert_eq!(calls[0].target, Path::new("/"));
        assert_eq!(calls[0].flags, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(calls[1].target, root);
        assert_eq!(calls[2].fstype.as_deref(), Some("tmpfs"));
        assert_eq!(calls[2].data.as_deref(), Some("mode=755"));
        assert_eq!(calls[2].flags, MsFlags::MS_NOSUID);
        // the bind, then the remount that applies ro/nodev, then the propagation
        assert_eq!(calls[3].flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(calls[4].flags.contains(
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NODEV
        ));
        assert_eq!(calls[5].flags, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let dev_binds: Vec<_> = calls[6..].iter().filter_map(|c| c.source.clone()).collect();
        assert!(dev_binds.contains(&PathBuf::from("/dev/null")), "{calls:?}");
        assert!(root.join("dev/null").exists());
        std::fs::remove_dir_all(&d).expect("rm");
    }
}
