//! The spec turned into a plan: everything the init process must do, checked and
//! resolved in the parent before any process, mount or cgroup exists.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::error::{OciError, Result};
pub use super::process::{ProcessPlan, process_plan, set_rlimit};
use super::rootfs::resolve_in_root;

/// One mount of the spec, with its options decoded.
#[derive(Debug, Clone)]
pub struct MountPlan {
    pub index: usize,
    pub destination: PathBuf,
    pub source: Option<PathBuf>,
    pub fstype: String,
    pub flags: MsFlags,
    /// Flags that only a remount applies (ro/nosuid/... on a bind).
    pub bind: bool,
    pub propagation: Vec<MsFlags>,
    pub data: String,
}

/// A device node the container gets under /dev.
#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub path: PathBuf,
    pub kind: libc::mode_t,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Everything the init process does, in order.
#[derive(Debug)]
pub struct Plan {
    pub id: String,
    pub rootfs: PathBuf,
    pub readonly_root: bool,
    /// Namespaces to join: (flag, path); the user namespace comes first.
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// Namespaces to create.
    pub new: CloneFlags,
    pub uid_map: Option<String>,
    pub gid_map: Option<String>,
    pub time_offsets: Option<String>,
    pub rootfs_propagation: MsFlags,
    pub mounts: Vec<MountPlan>,
    pub devices: Vec<DevicePlan>,
    pub masked: Vec<PathBuf>,
    pub readonly: Vec<PathBuf>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub sysctl: Vec<(String, String)>,
    pub process: ProcessPlan,
    pub no_pivot: bool,
    /// The container's cgroup dir per hierarchy mount, for cgroup mounts.
    pub cgroup_binds: Vec<(PathBuf, PathBuf)>,
    /// false for exec: no mounts, the process joins an existing container.
    pub setup_rootfs: bool,
    /// Run by the init in the container's namespaces: before pivot_root, and after
    /// start before the program (set by the caller; empty for exec).
    pub create_container_hooks: Vec<oci_spec::runtime::Hook>,
    pub start_container_hooks: Vec<oci_spec::runtime::Hook>,
    /// personality(2) domain for the program.
    pub personality: Option<libc::c_ulong>,
}

impl Plan {
    /// Whether the container has a mount namespace of its own (new or joined). Without
    /// one its mounts are made in the caller's, and it enters its root with chroot, as
    /// runc runs such a spec.
    pub fn has_mount_ns(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWNS)
            || self.join.iter().any(|(f, _)| *f == CloneFlags::CLONE_NEWNS)
    }
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(0x80),
    }
}

/// The proc file name of a namespace type.
pub fn ns_proc_name(f: CloneFlags) -> &'static str {
    match f {
        CloneFlags::CLONE_NEWNS => "mnt",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNET => "net",
        _ => "time",
    }
}

/// The mount flags an option sets (true) or clears (false), or a propagation type.
fn mount_option(o: &str) -> Option<(MsFlags, bool)> {
    Some(match o {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "suid" => (MsFlags::MS_NOSUID, false),
        "nodev" => (MsFlags::MS_NODEV, true),
        "dev" => (MsFlags::MS_NODEV, false),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        "exec" => (MsFlags::MS_NOEXEC, false),
        "sync" => (MsFlags::MS_SYNCHRONOUS, true),
        "async" => (MsFlags::MS_SYNCHRONOUS, false),
        "dirsync" => (MsFlags::MS_DIRSYNC, true),
        "remount" => (MsFlags::MS_REMOUNT, true),
        "mand" => (MsFlags::MS_MANDLOCK, true),
        "nomand" => (MsFlags::MS_MANDLOCK, false),
        "atime" => (MsFlags::MS_NOATIME, false),
        "noatime" => (MsFlags::MS_NOATIME, true),
        "diratime" => (MsFlags::MS_NODIRATIME, false),
        "nodiratime" => (MsFlags::MS_NODIRATIME, true),
        "relatime" => (MsFlags::MS_RELATIME, true),
        "norelatime" => (MsFlags::MS_RELATIME, false),
        "strictatime" => (MsFlags::MS_STRICTATIME, true),
        "nostrictatime" => (MsFlags::MS_STRICTATIME, false),
        "bind" => (MsFlags::MS_BIND, true),
        "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, true),
        _ => return None,
    })
}

fn propagation(o: &str) -> Option<MsFlags> {
    Some(match o {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// The default devices every container gets (runc's list).
fn default_devices() -> Vec<DevicePlan> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, major, minor)| DevicePlan {
        path: p.into(),
        kind: libc::S_IFCHR,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Options a caller of the library sets per container.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub no_pivot: bool,
    /// Lower requests this host cannot grant (an rlimit above the hard limit, a negative
    /// oom_score_adj without CAP_SYS_RESOURCE) to what it can, with a warning, instead of
    /// failing. For defaults the caller chose, never for a user's explicit values.
    pub clamp_unprivileged: bool,
    /// Where compiled seccomp filters are kept for other containers and runtimes (see
    /// [`super::seccomp`]); None keeps them in this process only.
    pub seccomp_cache: Option<PathBuf>,
}

fn map_text(m: &[oci_spec::runtime::LinuxIdMapping]) -> String {
    m.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// The host id that container id `id` maps to.
pub fn host_id(m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>, id: u32) -> u32 {
    let Some(m) = m else { return id };
    m.iter()
        .find(|m| id >= m.container_id() && id - m.container_id() < m.size())
        .map_or(65534, |m| m.host_id() + (id - m.container_id()))
}

/// Builds the plan for a new container from `spec` and its `bundle`.
pub fn build(
    id: &str,
    spec: &Spec,
    bundle: &Path,
    cgroup: Option<&crate::cgroups::Cgroup>,
    opts: &PlanOptions,
) -> Result<Plan> {
    let err = |f: &str, r: String| OciError::spec(id, f, r);
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| err("root", "missing".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    if !rootfs.is_dir() {
        return Err(err(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| err("root.path", e.to_string()))?;
    let linux = spec.linux().clone().unwrap_or_default();

    let mut join = Vec::new();
    let mut new = CloneFlags::empty();
    let mut seen = CloneFlags::empty();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let f = ns_flag(ns.typ());
        if seen.contains(f) {
            return Err(err(
                &format!("linux.namespaces[{i}]"),
                format!("namespace {} listed twice", ns_proc_name(f)),
            ));
        }
        seen |= f;
        match ns.path() {
            Some(p) => {
                let field = format!("linux.namespaces[{i}].path");
                let md = std::fs::metadata(p)
                    .map_err(|e| err(&field, format!("{}: {e}", p.display())))?;
                let _ = md;
                if f == CloneFlags::CLONE_NEWUSER {
                    join.insert(0, (f, p.clone()));
                } else {
                    join.push((f, p.clone()));
                }
            }
            None => new |= f,
        }
    }
    let time = CloneFlags::from_bits_retain(0x80);
    if new.contains(time) && !Path::new("/proc/self/ns/time").exists() {
        return Err(err(
            "linux.namespaces",
            "this kernel has no time namespaces".into(),
        ));
    }
    let userns = seen.contains(CloneFlags::CLONE_NEWUSER);
    let (uid_map, gid_map) = if new.contains(CloneFlags::CLONE_NEWUSER) {
        let u = linux.uid_mappings().as_ref().filter(|m| !m.is_empty());
        let g = linux.gid_mappings().as_ref().filter(|m| !m.is_empty());
        match (u, g) {
            (Some(u), Some(g)) => (Some(map_text(u)), Some(map_text(g))),
            _ => {
                return Err(err(
                    "linux.uidMappings",
                    "a new user namespace needs uidMappings and gidMappings".into(),
                ));
            }
        }
    } else {
        (None, None)
    };
    let time_offsets = linux.time_offsets().as_ref().map(|m| {
        m.iter()
            .map(|(clock, o)| {
                format!(
                    "{clock} {} {}\n",
                    o.secs().unwrap_or(0),
                    o.nanosecs().unwrap_or(0)
                )
            })
            .collect::<String>()
    });
    if time_offsets.is_some() && !new.contains(time) {
        return Err(err(
            "linux.timeOffsets",
            "needs a new time namespace".into(),
        ));
    }

    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => propagation(p)
            .ok_or_else(|| err("linux.rootfsPropagation", format!("unknown value {p:?}")))?,
    };

    let mut mounts = Vec::new();
    let mut cgroup_binds = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let field = format!("mounts[{i}]");
        let dest = m.destination();
        if !dest.is_absolute() {
            return Err(err(
                &format!("{field}.destination"),
                format!("{} is not absolute", dest.display()),
            ));
        }
        resolve_in_root(&rootfs, dest).map_err(|e| err(&format!("{field}.destination"), e))?;
        let mut flags = MsFlags::empty();
        let mut prop = Vec::new();
        let mut data = Vec::new();
        for o in m.options().iter().flatten() {
            if let Some((f, set)) = mount_option(o) {
                if set {
                    flags |= f;
                } else {
                    flags &= !f;
                }
            } else if let Some(p) = propagation(o) {
                prop.push(p);
            } else if o == "tmpcopyup" || o.starts_with("x-") || o == "idmap" || o == "ridmap" {
                if o == "idmap" || o == "ridmap" {
                    return Err(err(
                        &format!("{field}.options"),
                        "idmapped mounts are not supported".into(),
                    ));
                }
            } else {
                data.push(o.clone());
            }
        }
        let fstype = m.typ().clone().unwrap_or_default();
        let bind = flags.contains(MsFlags::MS_BIND) || fstype == "bind";
        if bind {
            flags |= MsFlags::MS_BIND;
            let src = m.source().as_ref().ok_or_else(|| {
                err(
                    &format!("{field}.source"),
                    "a bind mount needs a source".into(),
                )
            })?;
            let src = if src.is_absolute() {
                src.clone()
            } else {
                bundle.join(src)
            };
            if !src.exists() {
                return Err(err(
                    &format!("{field}.source"),
                    format!("{} does not exist", src.display()),
                ));
            }
            mounts.push(MountPlan {
                index: i,
                destination: dest.clone(),
                source: Some(src),
                fstype,
                flags,
                bind,
                propagation: prop,
                data: data.join(","),
            });
            continue;
        }
        if (fstype == "cgroup" || fstype == "cgroup2")
            && let Some(cg) = cgroup
        {
            let mut seen_dirs = Vec::new();
            for (name, dir) in &cg.dirs {
                let Some(mnt) = cg.hierarchy_root(dir) else {
                    continue;
                };
                if seen_dirs.contains(dir) {
                    continue;
                }
                seen_dirs.push(dir.clone());
                let sub = if cg.v2_only {
                    dest.clone()
                } else {
                    let leaf = mnt
                        .file_name()
                        .map(PathBuf::from)
                        .unwrap_or_else(|| PathBuf::from(name));
                    dest.join(leaf)
                };
                cgroup_binds.push((dir.clone(), sub));
            }
        }
        mounts.push(MountPlan {
            index: i,
            destination: dest.clone(),
            source: m.source().clone(),
            fstype,
            flags,
            bind: false,
            propagation: prop,
            data: data.join(","),
        });
    }

    let mut devices = default_devices();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        use oci_spec::runtime::LinuxDeviceType as T;
        let kind = match d.typ() {
            T::C | T::U => libc::S_IFCHR,
            T::B => libc::S_IFBLK,
            T::P => libc::S_IFIFO,
            T::A => {
                return Err(err(
                    &format!("linux.devices[{i}].type"),
                    "'a' is not a device type".into(),
                ));
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(err(
                &format!("linux.devices[{i}].path"),
                format!("{} is not under /dev", d.path().display()),
            ));
        }
        devices.retain(|x| x.path != *d.path());
        devices.push(DevicePlan {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }

    let mut sysctl: Vec<(String, String)> = linux
        .sysctl()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sysctl.sort();
    for (k, _) in &sysctl {
        let field = format!("linux.sysctl[{k}]");
        let net = k.starts_with("net.");
        let ipc = k.starts_with("kernel.msg")
            || k.starts_with("kernel.sem")
            || k.starts_with("kernel.shm")
            || k.starts_with("fs.mqueue.");
        let uts = k == "kernel.hostname" || k == "kernel.domainname";
        let ok = (net && seen.contains(CloneFlags::CLONE_NEWNET))
            || (ipc && seen.contains(CloneFlags::CLONE_NEWIPC))
            || (uts && seen.contains(CloneFlags::CLONE_NEWUTS));
        if !ok || k.contains('/') || k.contains("..") {
            return Err(err(
                &field,
                "not a sysctl of a namespace the container has (it would change the host)".into(),
            ));
        }
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty())
        && !seen.contains(CloneFlags::CLONE_NEWUTS)
    {
        return Err(err("hostname", "needs a uts namespace".into()));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
        && !seen.contains(CloneFlags::CLONE_NEWUTS)
    {
        return Err(err("domainname", "needs a uts namespace".into()));
    }
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(err("linux.mountLabel", "this host has no SELinux".into()));
    }
    let personality = match linux.personality() {
        Some(p) => {
            use oci_spec::runtime::LinuxPersonalityDomain as D;
            if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
                return Err(err(
                    "linux.personality.flags",
                    "no personality flags are defined by the runtime spec".into(),
                ));
            }
            Some(match p.domain() {
                D::PerLinux => 0,
                D::PerLinux32 => 0x0008,
            })
        }
        None => None,
    };
    if linux.memory_policy().is_some() {
        return Err(err(
            "linux.memoryPolicy",
            "NUMA memory policies are not supported by berth yet".into(),
        ));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(err(
            "linux.netDevices",
            "moving host network devices is not supported by berth yet".into(),
        ));
    }
    if linux.intel_rdt().is_some() {
        return Err(err("linux.intelRdt", "this host has no resctrl".into()));
    }

    // Without a mount namespace of its own the container's mounts are the caller's: a
    // masked or read-only path, or a read-only root, would be made so for the caller too.
    // runc refuses the first two ("unable to restrict sys entries without a private MNT
    // namespace") and leaves the root writable; berth refuses all three.
    if !seen.contains(CloneFlags::CLONE_NEWNS) {
        let why = "needs a mount namespace (linux.namespaces lists none): it would apply to \
                   the caller's mounts";
        if linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(err("linux.maskedPaths", why.into()));
        }
        if linux
            .readonly_paths()
            .as_ref()
            .is_some_and(|p| !p.is_empty())
        {
            return Err(err("linux.readonlyPaths", why.into()));
        }
        if root.readonly().unwrap_or(false) {
            return Err(err("root.readonly", why.into()));
        }
    }
    let proc = spec
        .process()
        .as_ref()
        .ok_or_else(|| err("process", "missing".into()))?;
    let process = process_plan(id, proc, &linux, opts, userns)?;
    if !rootfs
        .join(process.cwd.strip_prefix("/").unwrap_or(&process.cwd))
        .exists()
    {
        // created by init if missing, as runc does; only a path through a symlink out of
        // the rootfs is refused.
        resolve_in_root(&rootfs, &process.cwd).map_err(|e| err("process.cwd", e))?;
    }
    Ok(Plan {
        id: id.to_string(),
        rootfs,
        readonly_root: root.readonly().unwrap_or(false),
        join,
        new,
        uid_map,
        gid_map,
        time_offsets,
        rootfs_propagation,
        mounts,
        devices,
        masked: linux
            .masked_paths()
            .iter()
            .flatten()
            .map(PathBuf::from)
            .collect(),
        readonly: linux
            .readonly_paths()
            .iter()
            .flatten()
            .map(PathBuf::from)
            .collect(),
        hostname: spec.hostname().clone().filter(|h| !h.is_empty()),
        domainname: spec.domainname().clone().filter(|h| !h.is_empty()),
        sysctl,
        process,
        no_pivot: opts.no_pivot,
        cgroup_binds,
        setup_rootfs: true,
        create_container_hooks: vec![],
        start_container_hooks: vec![],
        personality,
    })
}
