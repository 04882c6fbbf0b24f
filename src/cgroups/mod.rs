//! Cgroups for containers: v1, hybrid and v2 behind one interface.
//!
//! The layout of the host (which hierarchy holds which controller, where the unified tree
//! is) is read from mountinfo into a [`Layout`], whose mount points are plain paths: a
//! test points them at a temp dir. What a spec asks for is planned as data
//! ([`plan::plan`]: a list of file writes, with a clear error for a controller the host
//! lacks) and only then written ([`Cgroup::apply`]). This module owns the container's own
//! cgroup directories; it never writes to a parent it did not create.

pub mod devices;
mod entry;
mod layout;
pub mod plan;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use entry::{Entry, Opened};
pub use layout::{Hierarchy, Layout, unescape_mount_path};
pub use plan::{FileWrite, plan};

/// What went wrong with a container's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{field}: this host has no {controller} controller (cgroup {version})")]
    MissingController {
        field: String,
        controller: String,
        version: &'static str,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("cgroup path {0}: must not contain '..'")]
    BadPath(PathBuf),
    #[error("cgroup {path}: processes {pids:?} still running")]
    Busy { path: PathBuf, pids: Vec<i32> },
}

type Result<T> = std::result::Result<T, CgroupError>;

/// The cgroup (below each hierarchy's root) that holds the containers whose spec names no
/// `cgroupsPath`: `berth/<id>`. It is removed with the last container in it
/// ([`Cgroup::remove_default_parent`]).
pub const DEFAULT_PARENT: &str = "berth";

fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { path, op, source }
}

/// One container's cgroup: its directory in every hierarchy it uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// Key: a v1 controller name (`memory`, `cpu`, `name=systemd`, ...) or `unified` for
    /// the cgroup2 tree. Value: the directory.
    pub dirs: BTreeMap<String, PathBuf>,
    /// true when the unified tree is the only hierarchy (pure v2 host).
    pub v2_only: bool,
    /// The cgroup's path below each hierarchy's root.
    #[serde(default)]
    pub path: PathBuf,
}

impl Cgroup {
    /// The directories of the cgroup at `path` (the spec's `cgroupsPath`, relative to each
    /// hierarchy's root) in `layout`. Nothing is created.
    pub fn at(layout: &Layout, path: &Path) -> Result<Self> {
        let rel: PathBuf = path
            .components()
            .filter(|c| !matches!(c, std::path::Component::RootDir))
            .collect();
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
            || rel.as_os_str().is_empty()
        {
            return Err(CgroupError::BadPath(path.to_path_buf()));
        }
        let mut dirs = BTreeMap::new();
        for h in &layout.hierarchies {
            let dir = h.mount.join(&rel);
            if h.v2 {
                dirs.insert("unified".to_string(), dir);
            } else {
                for c in &h.controllers {
                    dirs.insert(c.clone(), dir.clone());
                }
            }
        }
        Ok(Self {
            dirs,
            v2_only: layout.is_v2_only(),
            path: rel,
        })
    }

    /// The mount point of the hierarchy that `dir` (one of [`Cgroup::dirs`]) is in.
    pub fn hierarchy_root<'a>(&self, dir: &'a Path) -> Option<&'a Path> {
        dir.ancestors().nth(self.path.components().count())
    }

    /// Each distinct directory once (co-mounted controllers share one).
    pub fn unique_dirs(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self.dirs.values().map(PathBuf::as_path).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Creates every directory (idempotent). A new v1 cpuset is given its parent's cpus
    /// and mems, without which it takes no task. In the unified tree the controllers its
    /// root enables are enabled down to the new cgroup.
    pub fn create(&self) -> Result<()> {
        for dir in self.unique_dirs() {
            create_dir(dir)?;
        }
        if let Some(dir) = self.dirs.get("unified") {
            self.enable_down_to(dir);
        }
        if let Some(dir) = self.dirs.get("cpuset") {
            init_cpuset(dir)?;
        }
        Ok(())
    }

    /// Enables the controllers the unified root offers its children (see
    /// [`layout::v2_controllers`]) in each cgroup between the root and `dir`, as runc's
    /// cgroup2 manager does: a controller is usable in a cgroup only when its parent
    /// enables it. A parent that refuses one (not delegated to it) is left as it is: the
    /// write that needs the controller then fails naming its field.
    fn enable_down_to(&self, dir: &Path) {
        let Some(root) = self.hierarchy_root(dir) else {
            return;
        };
        let wanted = layout::v2_controllers(root);
        if wanted.is_empty() {
            return;
        }
        let mut cur = root.to_path_buf();
        let comps: Vec<_> = self.path.components().collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            cur.push(c);
            let ctl = cur.join("cgroup.subtree_control");
            let Ok(on) = std::fs::read_to_string(&ctl) else {
                return;
            };
            let on: Vec<&str> = on.split_whitespace().collect();
            for w in wanted.iter().filter(|w| !on.contains(&w.as_str())) {
                // Opened without create: only an existing cgroup file is written.
                let r = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&ctl)
                    .and_then(|f| f.write_all_at(format!("+{w}").as_bytes(), 0));
                if let Err(e) = r {
                    tracing::debug!(cgroup = %cur.display(), controller = %w, error = %e,
                        "controller not enabled");
                }
            }
        }
    }

    /// Writes the planned files.
    pub fn apply(&self, writes: &[FileWrite]) -> Result<()> {
        // Consecutive writes to one file (a v1 device list: a rule per write) share one
        // open file; each value is still its own write(2), at offset 0.
        let mut open: Option<(PathBuf, std::fs::File)> = None;
        for w in writes {
            let Some(dir) = self.dirs.get(&w.controller) else {
                return Err(CgroupError::MissingController {
                    field: w.field.clone(),
                    controller: w.controller.clone(),
                    version: if self.v2_only { "v2" } else { "v1" },
                });
            };
            let p = dir.join(&w.file);
            let written = match &open {
                Some((q, f)) if *q == p => f.write_all_at(w.value.as_bytes(), 0),
                _ => std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&p)
                    .and_then(|f| {
                        f.write_all_at(w.value.as_bytes(), 0)?;
                        open = Some((p.clone(), f));
                        Ok(())
                    }),
            };
            written.map_err(|e| CgroupError::Invalid {
                field: w.field.clone(),
                reason: if e.kind() == std::io::ErrorKind::NotFound {
                    format!(
                        "this host's kernel has no {} in {} (the feature is not available here)",
                        w.file,
                        dir.display()
                    )
                } else {
                    format!("write {:?} to {}: {e}", w.value, p.display())
                },
            })?;
        }
        Ok(())
    }

    /// Attaches the v2 device filter for `rules` to the unified directory.
    pub fn apply_devices(&self, rules: &[devices::DeviceRule]) -> Result<()> {
        let Some(dir) = self.dirs.get("unified") else {
            return Err(CgroupError::MissingController {
                field: "linux.resources.devices".into(),
                controller: "unified".into(),
                version: "v2",
            });
        };
        devices::attach(dir, rules).map_err(|source| CgroupError::Io {
            path: dir.clone(),
            op: "device filter",
            source,
        })
    }

    /// Moves `pid` into the cgroup in every hierarchy.
    pub fn add(&self, pid: i32) -> Result<()> {
        for dir in self.unique_dirs() {
            let p = dir.join("cgroup.procs");
            std::fs::write(&p, pid.to_string()).map_err(io(&p, "add process"))?;
        }
        Ok(())
    }

    /// The pids in the cgroup (read from the first hierarchy that has it).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = self
            .dirs
            .get("pids")
            .or_else(|| self.dirs.get("memory"))
            .or_else(|| self.dirs.get("unified"))
            .or_else(|| self.dirs.values().next());
        let Some(dir) = dir else { return Ok(vec![]) };
        read_pids(dir)
    }

    /// Freezes (`true`) or thaws the cgroup and waits until the kernel says it is done.
    pub fn freeze(&self, frozen: bool) -> Result<()> {
        if let Some(dir) = self.dirs.get("freezer") {
            let p = dir.join("freezer.state");
            let want = if frozen { "FROZEN" } else { "THAWED" };
            for _ in 0..1000 {
                std::fs::write(&p, want).map_err(io(&p, "freeze"))?;
                let now = std::fs::read_to_string(&p).map_err(io(&p, "read"))?;
                if now.trim() == want {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            return Err(CgroupError::Invalid {
                field: "freezer.state".into(),
                reason: format!("{} did not reach {want}", p.display()),
            });
        }
        if let Some(dir) = self.dirs.get("unified") {
            let p = dir.join("cgroup.freeze");
            if p.exists() {
                std::fs::write(&p, if frozen { "1" } else { "0" }).map_err(io(&p, "freeze"))?;
                let events = dir.join("cgroup.events");
                let want = if frozen { "frozen 1" } else { "frozen 0" };
                for _ in 0..1000 {
                    let ev = std::fs::read_to_string(&events).map_err(io(&events, "read"))?;
                    if ev.lines().any(|l| l == want) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        Err(CgroupError::MissingController {
            field: "pause".into(),
            controller: "freezer".into(),
            version: if self.v2_only { "v2" } else { "v1" },
        })
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        if let Some(dir) = self.dirs.get("freezer") {
            return std::fs::read_to_string(dir.join("freezer.state"))
                .is_ok_and(|s| s.trim() == "FROZEN");
        }
        if let Some(dir) = self.dirs.get("unified") {
            return std::fs::read_to_string(dir.join("cgroup.freeze"))
                .is_ok_and(|s| s.trim() == "1");
        }
        false
    }

    /// Removes the [`DEFAULT_PARENT`] directories this cgroup sits in, where no other
    /// cgroup is left in them. Another container may be using (or just making) its own
    /// cgroup there at the same time: the kernel then refuses the rmdir (EBUSY), which is
    /// the answer wanted, and a create that loses the directory meanwhile makes it again
    /// ([`Cgroup::create`]).
    pub fn remove_default_parent(&self) {
        if self.path.parent() != Some(Path::new(DEFAULT_PARENT)) {
            return;
        }
        for dir in self.unique_dirs() {
            let Some(parent) = dir.parent() else { continue };
            match std::fs::remove_dir(parent) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EBUSY | libc::ENOTEMPTY | libc::ENOENT)
                    ) => {}
                Err(e) => {
                    tracing::warn!(cgroup = %parent.display(), error = %e,
                        "remove the default cgroup parent");
                }
            }
        }
    }

    /// Removes the directories, deepest hierarchy entries only (what [`create`] made).
    /// Processes still inside are an error unless `kill` is set, which SIGKILLs them first.
    pub fn remove(&self, kill: bool) -> Result<()> {
        let mut first_err = None;
        for dir in self.unique_dirs() {
            if let Err(e) = remove_dir(dir, kill) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// `mkdir -p dir`, again when a parent made on the way is removed before the last step
/// (the last container of [`DEFAULT_PARENT`] going at that moment).
fn create_dir(dir: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 100 => tries += 1,
            r => return r.map_err(io(dir, "mkdir")),
        }
    }
}

fn read_pids(dir: &Path) -> Result<Vec<i32>> {
    let p = dir.join("cgroup.procs");
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(io(&p, "read")(e)),
    }
}

fn remove_dir(dir: &Path, kill: bool) -> Result<()> {
    // The common case, a cgroup whose processes are gone and that has no sub-cgroups,
    // is one rmdir; the kernel refuses it (EBUSY) while either remains.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    // Sub-cgroups a container made for itself go first.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir(&e.path(), kill)?;
            }
        }
    }
    let mut last = None;
    for i in 0..500 {
        let pids = read_pids(dir)?;
        if !pids.is_empty() {
            if !kill && i > 100 {
                return Err(CgroupError::Busy {
                    path: dir.to_path_buf(),
                    pids,
                });
            }
            if kill {
                let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
                let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
                for pid in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(io(dir, "rmdir")(
        last.unwrap_or_else(|| std::io::Error::other("busy")),
    ))
}

/// A new v1 cpuset inherits nothing; copy the nearest non-empty ancestor's cpus and mems
/// into every empty level from there down.
fn init_cpuset(dir: &Path) -> Result<()> {
    let mut chain = vec![dir.to_path_buf()];
    let mut cur = dir.parent();
    while let Some(p) = cur {
        if !p.join("cpuset.cpus").exists() {
            break;
        }
        chain.push(p.to_path_buf());
        cur = p.parent();
    }
    chain.reverse();
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mut inherited = String::new();
        for d in &chain {
            let p = d.join(f);
            let v = std::fs::read_to_string(&p).map_err(io(&p, "read"))?;
            if v.trim().is_empty() {
                std::fs::write(&p, inherited.trim()).map_err(io(&p, "write"))?;
            } else {
                inherited = v;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 paths against a temp-dir tree standing in for /sys/fs/cgroup.
    #[test]
    fn v2_on_a_temp_tree() {
        let root = std::env::temp_dir().join(format!("berth-cgv2-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .expect("controllers");
        std::fs::write(
            root.join("cgroup.subtree_control"),
            "cpuset cpu io memory pids\n",
        )
        .expect("subtree_control");
        // the pod's cgroup exists (kubelet's) and delegates nothing yet
        std::fs::create_dir_all(root.join("pod")).expect("pod");
        std::fs::write(root.join("pod/cgroup.subtree_control"), "").expect("pod ctl");
        let layout = Layout::v2(&root);
        assert!(layout.is_v2_only());
        let cg = Cgroup::at(&layout, Path::new("/pod/ctr")).expect("at");
        assert_eq!(cg.unique_dirs(), vec![root.join("pod/ctr").as_path()]);
        cg.create().expect("create");
        let r: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576}, "pids": {"limit": 5}, "cpu": {"shares": 2}
        }))
        .expect("resources");
        cg.apply(&plan(&layout, &r).expect("plan")).expect("apply");
        // each controller was enabled in the pod's cgroup (a regular file here keeps the
        // last write)
        let ctl = std::fs::read_to_string(root.join("pod/cgroup.subtree_control")).expect("ctl");
        assert!(ctl.starts_with('+'), "{ctl:?}");
        let read = |f: &str| std::fs::read_to_string(root.join("pod/ctr").join(f)).expect(f);
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(read("pids.max"), "5");
        assert_eq!(read("cpu.weight"), "1");
        // hugetlb is not among this tree's controllers: a limit names the field (a limit
        // of 0, kubelet's default, asks for nothing here)
        let r: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]
        }))
        .expect("resources");
        let e = plan(&layout, &r).expect_err("no hugetlb");
        assert!(e.to_string().contains("hugepageLimits[2MB]"), "{e}");
        assert!(Cgroup::at(&layout, Path::new("/a/../b")).is_err());
        std::fs::remove_dir_all(&root).expect("rm");
    }

    /// What kubelet sends on a pure v2 host (huge-page limits of 0 for each size, the
    /// unified map), written into a temp-dir tree whose root enables hugetlb.
    #[test]
    fn kubelet_resources_on_a_v2_temp_tree() {
        let root = std::env::temp_dir().join(format!("berth-cgv2-kubelet-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        for f in ["cgroup.controllers", "cgroup.subtree_control"] {
            std::fs::write(root.join(f), "cpu memory hugetlb pids\n").expect(f);
        }
        let layout = Layout::v2(&root);
        let cg = Cgroup::at(&layout, Path::new("/kubepods/besteffort/pod1/ctr")).expect("at");
        cg.create().expect("create");
        let r: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "cpu": {"shares": 2, "period": 100000},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 0}],
            "unified": {"memory.oom.group": "1", "memory.swap.max": "0"}
        }))
        .expect("resources");
        cg.apply(&plan(&layout, &r).expect("plan")).expect("apply");
        let dir = root.join("kubepods/besteffort/pod1/ctr");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).expect(f);
        assert_eq!(read("cpu.weight"), "1");
        assert_eq!(read("cpu.max"), "max 100000");
        assert_eq!(read("hugetlb.2MB.max"), "0");
        assert_eq!(read("hugetlb.1GB.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("memory.swap.max"), "0");
        std::fs::remove_dir_all(&root).expect("rm");
    }

    /// The default parent goes with its last cgroup, and only then.
    #[test]
    fn default_parent_removed_when_unused() {
        let root =
            std::env::temp_dir().join(format!("berth-cg-default-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        let layout = Layout::v2(&root);
        let a = Cgroup::at(&layout, Path::new("/berth/a")).expect("a");
        let b = Cgroup::at(&layout, Path::new("/berth/b")).expect("b");
        let other = Cgroup::at(&layout, Path::new("/mine/c")).expect("c");
        for cg in [&a, &b, &other] {
            cg.create().expect("create");
        }
        a.remove(false).expect("rm a");
        a.remove_default_parent();
        assert!(root.join("berth/b").exists(), "b's parent stays");
        b.remove(false).expect("rm b");
        b.remove_default_parent();
        assert!(
            !root.join("berth").exists(),
            "the empty default parent is removed"
        );
        other.remove(false).expect("rm c");
        other.remove_default_parent();
        assert!(
            root.join("mine").exists(),
            "a parent named by a spec is not berth's"
        );
        // a create after the parent went makes it again
        a.create().expect("create again");
        assert!(root.join("berth/a").is_dir());
        std::fs::remove_dir_all(&root).expect("rm");
    }
}
