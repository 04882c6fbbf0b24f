//! The container's root filesystem, built by its init in its own mount namespace:
//! the spec's mounts, /dev, pivot_root, masked and read-only paths.
//!
//! Runs in the child only; errors are strings naming the spec field, sent to the parent.
//! Every mount, node, owner, link, root change and sysctl goes through [`Kernel`], so the
//! order of the steps is unit-tested against the recording fake; directories and files
//! are made directly under the plan's rootfs (a temp dir in tests).

use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use crate::sys::fs::Files;
use crate::sys::mount::Mounter;
#[cfg(test)]
use crate::sys::record::Recorder;
use crate::sys::root::Root;
use crate::sys::sysctl::Sysctl;

use super::plan::{MountPlan, Plan};

/// The kernel interfaces the root is built through.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)] // trait objects; nothing to show
pub struct Kernel<'a> {
    pub mount: &'a dyn Mounter,
    pub files: &'a dyn Files,
    pub root: &'a dyn Root,
    pub sysctl: &'a dyn Sysctl,
}

impl Kernel<'static> {
    pub const LINUX: Self = Kernel {
        mount: &crate::sys::mount::Linux,
        files: &crate::sys::fs::Linux,
        root: &crate::sys::root::Linux,
        sysctl: &crate::sys::sysctl::Linux,
    };
}

#[cfg(test)]
impl<'a> Kernel<'a> {
    /// Every interface through one recorder, so a test sees all calls in one order.
    pub fn recorded(r: &'a Recorder) -> Self {
        Kernel {
            mount: r,
            files: r,
            root: r,
            sysctl: r,
        }
    }
}

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
    let locked = mnt.mount_flags(target).unwrap_or(MsFlags::empty());
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
pub fn prepare(k: Kernel, plan: &Plan, in_userns: bool) -> Result<(), String> {
    let mnt = k.mount;
    // Without a mount namespace of its own the container's mounts are made in the
    // caller's, whose propagation is left alone (runc changes it).
    if plan.has_mount_ns() {
        mnt.mount(None, Path::new("/"), None, plan.rootfs_propagation, None)
            .map_err(e("linux.rootfsPropagation: propagation of /"))?;
        // The mount holding the rootfs goes private when it is shared (e.g. / made rshared
        // above, or the node's own / when the bundle sits on it): pivot_root refuses a new
        // root whose parent mount is shared, and the rootfs bind below would propagate to
        // the peers of that mount. As runc's rootfsParentMountPrivate.
        let info = mnt.mountinfo().map_err(e("read /proc/self/mountinfo"))?;
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
    make_dev(k, plan, in_userns)
}

fn make_dev(k: Kernel, plan: &Plan, in_userns: bool) -> Result<(), String> {
    let dev = plan.rootfs.join("dev");
    mkdir_p(&dev)?;
    // The spec's modes are exact (as runc, with the umask cleared while nodes are made);
    // restored below, and the init sets the process's own umask later.
    let umask = nix::sys::stat::umask(Mode::empty());
    let made = make_nodes(k, plan, &dev, in_userns);
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
        match k.files.symlink(Path::new(to), &p) {
            Err(nix::errno::Errno::EEXIST) | Ok(()) => {}
            Err(err) => return Err(format!("symlink {}: {err}", p.display())),
        }
    }
    let ptmx = dev.join("ptmx");
    let pts = Path::new("pts/ptmx");
    if dev.join("pts").is_dir() {
        match k.files.symlink(pts, &ptmx) {
            Err(nix::errno::Errno::EEXIST) => {
                let _ = std::fs::remove_file(&ptmx);
                k.files
                    .symlink(pts, &ptmx)
                    .map_err(e("symlink /dev/ptmx"))?;
            }
            r => r.map_err(e("symlink /dev/ptmx"))?,
        }
    }
    Ok(())
}

/// The spec's device nodes (and the default ones) under `dev`, with the umask cleared.
fn make_nodes(k: Kernel, plan: &Plan, dev: &Path, in_userns: bool) -> Result<(), String> {
    for d in &plan.devices {
        let target = resolve_in_root(&plan.rootfs, &d.path).map_err(e("linux.devices"))?;
        if let Some(p) = target.parent()
            && p != dev
        {
            mkdir_p(p)?;
        }
        let node = || {
            k.files.mknod(
                &target,
                SFlag::from_bits_truncate(d.kind),
                d.mode & 0o7777,
                d.major,
                d.minor,
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
                k.files
                    .chown(&target, d.uid, d.gid)
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
                k.mount
                    .mount(Some(&d.path), &target, None, MsFlags::MS_BIND, None)
                    .map_err(e(format!("bind {}", d.path.display())))?;
            }
            Err(err) => return Err(format!("mknod {}: {err}", target.display())),
        }
    }
    Ok(())
}

/// Makes the rootfs the process's `/`: pivot_root, or (rootfs on ramfs, or --no-pivot)
/// a move mount and chroot; without a mount namespace of its own, chroot (as runc).
pub fn enter(k: Kernel, plan: &Plan) -> Result<(), String> {
    k.root.chdir(&plan.rootfs).map_err(e("chdir rootfs"))?;
    if !plan.has_mount_ns() {
        k.root.chroot(Path::new(".")).map_err(e("chroot"))?;
        return k.root.chdir(Path::new("/")).map_err(e("chdir /"));
    }
    pivot_or_move(k, plan)?;
    // The rootfs, now /, gets the propagation asked for (shared, slave...): applied to /
    // before the rootfs was bound, it only reached the rootfs's parent, which was made
    // private for pivot_root. Private is what it already is.
    let p = plan.rootfs_propagation;
    if !p.is_empty() && !p.contains(MsFlags::MS_PRIVATE) {
        k.mount
            .mount(None, Path::new("/"), None, p, None)
            .map_err(e("linux.rootfsPropagation: propagation of the new /"))?;
    }
    Ok(())
}

fn pivot_or_move(k: Kernel, plan: &Plan) -> Result<(), String> {
    let here = Path::new(".");
    // pivot_root(".", "."), as runc: no directory for the old root is needed in the
    // image; the old root ends stacked on the new one, with the working directory in it.
    let pivot = if plan.no_pivot {
        Err(nix::errno::Errno::EINVAL)
    } else {
        k.root.pivot_root(here)
    };
    match pivot {
        Ok(()) => {
            // Detach the old root, made a slave first so that the unmount does not
            // propagate to the host.
            k.mount
                .mount(None, here, None, MsFlags::MS_SLAVE | MsFlags::MS_REC, None)
                .map_err(e("make old root a slave"))?;
            k.mount
                .umount(here, MntFlags::MNT_DETACH)
                .map_err(e("detach old root"))?;
        }
        // pivot_root cannot leave the initramfs (the rootfs of a diskless boot is on ramfs):
        // only there, or when asked (--no-pivot), a move mount and chroot instead.
        Err(err) if !plan.no_pivot && !k.root.on_ramfs(here) => {
            return Err(format!(
                "pivot_root into {}: {err} (--no-pivot moves the root instead)",
                plan.rootfs.display()
            ));
        }
        Err(_) => {
            k.mount
                .mount(Some(here), Path::new("/"), None, MsFlags::MS_MOVE, None)
                .map_err(e("move rootfs to /"))?;
            k.root.chroot(here).map_err(e("chroot"))?;
        }
    }
    k.root.chdir(Path::new("/")).map_err(e("chdir /"))
}

/// After entering the root: masked and read-only paths, read-only root, sysctls.
pub fn finish(k: Kernel, plan: &Plan) -> Result<(), String> {
    let mnt = k.mount;
    // before /proc/sys becomes read-only
    for (key, v) in &plan.sysctl {
        let p = PathBuf::from(key.replace('.', "/"));
        k.sysctl
            .write(&p, v)
            .map_err(e(format!("linux.sysctl[{key}]")))?;
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
    use std::os::unix::fs::symlink;

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

    use crate::sys::record::{Answers, Call, Recorder};
    use nix::errno::Errno;

    /// A bundle in a temp dir (removed on drop) and its plan.
    struct Bundle {
        dir: PathBuf,
        plan: Plan,
    }

    impl Drop for Bundle {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Bundle {
        fn new(name: &str, spec: serde_json::Value, opts: super::super::plan::PlanOptions) -> Self {
            let dir =
                std::env::temp_dir().join(format!("berth-rootfs-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("rootfs/data")).expect("mkdir");
            let mut spec = spec;
            spec["ociVersion"] = "1.2.0".into();
            spec["root"] = serde_json::json!({"path": "rootfs"});
            spec["process"] =
                serde_json::json!({"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}});
            let spec: oci_spec::runtime::Spec = serde_json::from_value(spec).expect("spec");
            let plan = super::super::plan::build("t", &spec, &dir, None, &opts).expect("plan");
            Bundle { dir, plan }
        }

        fn root(&self) -> PathBuf {
            self.plan.rootfs.clone()
        }
    }

    fn mount_targets(calls: &[Call]) -> Vec<PathBuf> {
        calls
            .iter()
            .filter_map(|c| match c {
                Call::Mount { target, .. } => Some(target.clone()),
                _ => None,
            })
            .collect()
    }

    /// The mounts a spec turns into, seen through the recording seam (no root needed).
    #[test]
    fn mounts_planned_for_a_spec() {
        let b = Bundle::new(
            "plan",
            serde_json::json!({
                "mounts": [
                    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                     "options": ["nosuid", "mode=755"]},
                    {"destination": "/data", "type": "bind", "source": "/tmp",
                     "options": ["rbind", "ro", "nodev", "rprivate"]}
                ],
                "linux": {"namespaces": [{"type": "mount"}], "rootfsPropagation": "rslave"}
            }),
            Default::default(),
        );
        let root = b.root();
        let rec = Recorder::new(Answers {
            // the bundle's mount is shared: made private before the rootfs bind
            mountinfo: "22 1 254:0 / / rw shared:1 - ext4 /dev/vda rw\n".into(),
            mount_flags: MsFlags::MS_NOSUID,
            ..Default::default()
        });
        // userns: device nodes are bound, not made
        prepare(Kernel::recorded(&rec), &b.plan, true).expect("prepare");
        let calls = rec.calls();
        let mount = |source: Option<&str>,
                     target: &Path,
                     fstype: Option<&str>,
                     flags,
                     data: Option<&str>| {
            Call::Mount {
                source: source.map(PathBuf::from),
                target: target.into(),
                fstype: fstype.map(str::to_string),
                flags,
                data: data.map(str::to_string),
            }
        };
        assert_eq!(
            calls[..7],
            [
                mount(
                    None,
                    Path::new("/"),
                    None,
                    MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    None
                ),
                mount(None, Path::new("/"), None, MsFlags::MS_PRIVATE, None),
                mount(
                    Some(root.to_str().expect("utf-8")),
                    &root,
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None
                ),
                mount(
                    Some("tmpfs"),
                    &root.join("dev"),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID,
                    Some("mode=755")
                ),
                // the bind, then the remount that applies ro/nodev (keeping the flags the
                // mount has), then the propagation
                mount(
                    Some("/tmp"),
                    &root.join("data"),
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None
                ),
                mount(
                    None,
                    &root.join("data"),
                    None,
                    MsFlags::MS_REMOUNT
                        | MsFlags::MS_BIND
                        | MsFlags::MS_RDONLY
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOSUID,
                    None
                ),
                mount(
                    None,
                    &root.join("data"),
                    None,
                    MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                    None
                ),
            ]
        );
        // each default device: a new file with the host's node bound on it
        assert!(calls.contains(&mount(
            Some("/dev/null"),
            &root.join("dev/null"),
            None,
            MsFlags::MS_BIND,
            None
        )));
        assert!(root.join("dev/null").exists());
        assert!(!calls.iter().any(|c| matches!(c, Call::Mknod { .. })));
    }

    /// Outside a user namespace each node is made with its number, then given its owner;
    /// the /dev links follow the nodes.
    #[test]
    fn dev_nodes_get_their_numbers_and_owner() {
        let b = Bundle::new(
            "dev",
            serde_json::json!({
                "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10,
                    "minor": 229, "fileMode": 432, "uid": 1000, "gid": 100}]}
            }),
            Default::default(),
        );
        let root = b.root();
        let rec = Recorder::default();
        prepare(Kernel::recorded(&rec), &b.plan, false).expect("prepare");
        let calls = rec.calls();
        let fuse = root.join("dev/fuse");
        let at = calls
            .iter()
            .position(|c| matches!(c, Call::Mknod { path, .. } if *path == fuse))
            .expect("fuse made");
        assert_eq!(
            calls[at..at + 2],
            [
                Call::Mknod {
                    path: fuse.clone(),
                    kind: SFlag::S_IFCHR,
                    mode: 0o660,
                    major: 10,
                    minor: 229
                },
                Call::Chown {
                    path: fuse,
                    uid: 1000,
                    gid: 100
                },
            ]
        );
        assert!(calls.contains(&Call::Mknod {
            path: root.join("dev/tty"),
            kind: SFlag::S_IFCHR,
            mode: 0o666,
            major: 5,
            minor: 0
        }));
        let links: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Symlink { to, link } => Some((to.clone(), link.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(links[0], ("/proc/self/fd".into(), root.join("dev/fd")));
        assert_eq!(links.len(), 4, "no /dev/pts, no ptmx link: {links:?}");
        let last_node = calls
            .iter()
            .rposition(|c| matches!(c, Call::Chown { .. }))
            .expect("nodes");
        let first_link = calls
            .iter()
            .position(|c| matches!(c, Call::Symlink { .. }))
            .expect("links");
        assert!(last_node < first_link);
        // without a mount namespace the caller's propagation is left alone
        assert!(!mount_targets(&calls).contains(&PathBuf::from("/")));
    }

    /// A failed step stops the setup and the error names the spec field and the step.
    #[test]
    fn a_failed_mount_stops_and_names_the_step() {
        let b = Bundle::new(
            "fail",
            serde_json::json!({
                "mounts": [
                    {"destination": "/proc", "type": "proc", "source": "proc"},
                    {"destination": "/data", "type": "bind", "source": "/tmp",
                     "options": ["rbind"]},
                    {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}
                ],
                "linux": {"namespaces": [{"type": "pid"}]}
            }),
            Default::default(),
        );
        let root = b.root();
        let data = root.join("data");
        let rec = Recorder::default().fail_on(
            move |c| matches!(c, Call::Mount { target, .. } if *target == data),
            Errno::EACCES,
        );
        let err = prepare(Kernel::recorded(&rec), &b.plan, false).expect_err("fails");
        assert!(
            err.starts_with("mounts[1] (/data): bind /tmp:") && err.contains("EACCES"),
            "{err}"
        );
        let calls = rec.calls();
        assert_eq!(
            mount_targets(&calls),
            [root.clone(), root.join("proc"), root.join("data")],
            "nothing after the failed bind"
        );
        assert_eq!(calls.len(), 3);

        // a node that cannot be owned stops at its chown
        let tty = root.join("dev/tty");
        let rec = Recorder::default().fail_on(
            move |c| matches!(c, Call::Chown { path, .. } if *path == tty),
            Errno::EPERM,
        );
        let err = prepare(Kernel::recorded(&rec), &b.plan, false).expect_err("fails");
        assert!(
            err.starts_with("chown ") && err.ends_with("dev/tty: EPERM: Operation not permitted"),
            "{err}"
        );
        assert!(matches!(rec.calls().last(), Some(Call::Chown { .. })));
    }

    /// pivot_root, then the old root (stacked on the new one, the working directory in
    /// it) made a slave and detached, then the propagation asked for on the new /.
    #[test]
    fn enter_pivots_and_detaches_the_old_root() {
        let b = Bundle::new(
            "pivot",
            serde_json::json!({
                "linux": {"namespaces": [{"type": "mount"}], "rootfsPropagation": "rshared"}
            }),
            Default::default(),
        );
        let rec = Recorder::default();
        enter(Kernel::recorded(&rec), &b.plan).expect("enter");
        let here = PathBuf::from(".");
        assert_eq!(
            rec.calls(),
            [
                Call::Chdir(b.root()),
                Call::PivotRoot(here.clone()),
                Call::Mount {
                    source: None,
                    target: here.clone(),
                    fstype: None,
                    flags: MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    data: None
                },
                Call::Umount {
                    target: here,
                    flags: MntFlags::MNT_DETACH
                },
                Call::Chdir("/".into()),
                Call::Mount {
                    source: None,
                    target: "/".into(),
                    fstype: None,
                    flags: MsFlags::MS_SHARED | MsFlags::MS_REC,
                    data: None
                },
            ]
        );
    }

    /// runc's --no-pivot: the rootfs moved onto / and chrooted into, never pivot_root.
    #[test]
    fn no_pivot_moves_and_chroots() {
        let b = Bundle::new(
            "nopivot",
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}],
                "rootfsPropagation": "rprivate"}}),
            super::super::plan::PlanOptions {
                no_pivot: true,
                ..Default::default()
            },
        );
        let rec = Recorder::default();
        enter(Kernel::recorded(&rec), &b.plan).expect("enter");
        assert_eq!(
            rec.calls(),
            [
                Call::Chdir(b.root()),
                Call::Mount {
                    source: Some(".".into()),
                    target: "/".into(),
                    fstype: None,
                    flags: MsFlags::MS_MOVE,
                    data: None
                },
                Call::Chroot(".".into()),
                Call::Chdir("/".into()),
            ]
        );
    }

    /// A refused pivot_root is an error that says how to do without, except on ramfs,
    /// which pivot_root cannot leave: there the root is moved.
    #[test]
    fn refused_pivot_is_an_error_except_on_ramfs() {
        let b = Bundle::new(
            "refused",
            serde_json::json!({"linux": {"namespaces": [{"type": "mount"}]}}),
            Default::default(),
        );
        let pivot = |c: &Call| matches!(c, Call::PivotRoot(_));
        let rec = Recorder::default().fail_on(pivot, Errno::EINVAL);
        let err = enter(Kernel::recorded(&rec), &b.plan).expect_err("refused");
        assert!(
            err.contains("pivot_root into") && err.contains("--no-pivot"),
            "{err}"
        );
        assert!(matches!(rec.calls().last(), Some(Call::PivotRoot(_))));

        let rec = Recorder::new(Answers {
            ramfs: true,
            ..Default::default()
        })
        .fail_on(pivot, Errno::EINVAL);
        enter(Kernel::recorded(&rec), &b.plan).expect("moved");
        assert_eq!(
            rec.calls()[2..4],
            [
                Call::Mount {
                    source: Some(".".into()),
                    target: "/".into(),
                    fstype: None,
                    flags: MsFlags::MS_MOVE,
                    data: None
                },
                Call::Chroot(".".into()),
            ]
        );
    }

    /// Without a mount namespace of its own the container only chroots (as runc).
    #[test]
    fn no_mount_namespace_chroots() {
        let b = Bundle::new(
            "chroot",
            serde_json::json!({"linux": {"namespaces": [{"type": "pid"}]}}),
            Default::default(),
        );
        let rec = Recorder::default();
        enter(Kernel::recorded(&rec), &b.plan).expect("enter");
        assert_eq!(
            rec.calls(),
            [
                Call::Chdir(b.root()),
                Call::Chroot(".".into()),
                Call::Chdir("/".into())
            ]
        );
    }

    /// After entering: sysctls first (before /proc/sys goes read-only), then read-only
    /// paths, then masked ones (a directory gets a read-only tmpfs, a missing path is
    /// skipped), then the read-only root.
    #[test]
    fn finish_order() {
        let b = Bundle::new(
            "finish",
            serde_json::json!({
                "root": {"path": "rootfs", "readonly": true},
                "linux": {
                    "namespaces": [{"type": "mount"}, {"type": "network"}],
                    "sysctl": {"net.ipv4.ip_forward": "1"},
                    "readonlyPaths": ["/proc/sys"],
                    "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/nothere"]
                }
            }),
            Default::default(),
        );
        let rec = Recorder::default().fail_on(
            |c| matches!(c, Call::Mount { target, .. } if target == Path::new("/proc/acpi")),
            Errno::ENOTDIR,
        );
        let b = {
            let mut b = b;
            b.plan.readonly_root = true;
            b
        };
        finish(Kernel::recorded(&rec), &b.plan).expect("finish");
        let calls = rec.calls();
        assert_eq!(
            calls[0],
            Call::Sysctl {
                path: "net/ipv4/ip_forward".into(),
                value: "1".into()
            }
        );
        let targets = mount_targets(&calls);
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            targets,
            [
                p("/proc/sys"),
                p("/proc/sys"),
                p("/proc/kcore"),
                p("/proc/acpi"),
                p("/proc/acpi"),
                p("/proc/nothere"),
                p("/")
            ]
        );
        assert!(
            matches!(&calls[5], Call::Mount { fstype: Some(t), flags, .. }
            if t == "tmpfs" && *flags == MsFlags::MS_RDONLY)
        );
    }
}
