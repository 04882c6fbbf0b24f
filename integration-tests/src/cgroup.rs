//! A cgroup parent of the test's own, `berth-test-<random>`, in every hierarchy.
//!
//! It is created at the top of each v1 hierarchy and of the v2 tree (where one is
//! mounted) and removed on drop: processes left in it are killed, child cgroups removed
//! deepest first. The machine's own cgroups are never written to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. /sys/fs/cgroup/memory.
    pub mount: PathBuf,
    /// true for cgroup2.
    pub v2: bool,
    /// The v1 controllers (or named hierarchy `name=...`) of this mount; empty for v2.
    pub controllers: Vec<String>,
}

/// The cgroup hierarchies mounted in the caller's mount namespace.
pub fn hierarchies() -> Vec<Hierarchy> {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    parse_hierarchies(&info)
}

/// Parses mountinfo lines into the cgroup hierarchies they mount.
pub fn parse_hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let (Some(fstype), _, Some(super_opts)) = (post.next(), post.next(), post.next()) else {
            continue;
        };
        let Some(mount) = pre.split(' ').nth(4) else {
            continue;
        };
        let mount = PathBuf::from(crate::util::unescape_mount_path(mount));
        match fstype {
            "cgroup2" => out.push(Hierarchy {
                mount,
                v2: true,
                controllers: vec![],
            }),
            "cgroup" => {
                let controllers = super_opts
                    .split(',')
                    .filter(|o| !is_mount_option(o))
                    .map(str::to_string)
                    .collect();
                out.push(Hierarchy {
                    mount,
                    v2: false,
                    controllers,
                });
            }
            _ => {}
        }
    }
    out
}

/// Options of a v1 cgroup mount that are not controllers.
fn is_mount_option(o: &str) -> bool {
    matches!(
        o,
        "rw" | "ro" | "xattr" | "noprefix" | "clone_children" | "cpuset_v2_mode"
    ) || o.starts_with("release_agent=")
}

/// A cgroup parent named after the test, in every hierarchy; removed on drop.
#[derive(Debug)]
pub struct CgroupParent {
    name: String,
    dirs: Vec<(Hierarchy, PathBuf)>,
}

impl CgroupParent {
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut parent = Self {
            name: name.to_string(),
            dirs: Vec::new(),
        };
        for h in hierarchies() {
            let dir = h.mount.join(name);
            std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
            parent.dirs.push((h.clone(), dir.clone()));
            if !h.v2 && h.controllers.iter().any(|c| c == "cpuset") {
                // A new v1 cpuset starts empty and takes no task until given cpus and mems.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = std::fs::read_to_string(h.mount.join(f))?;
                    std::fs::write(dir.join(f), v.trim())
                        .with_context(|| format!("write {}", dir.join(f).display()))?;
                }
            }
        }
        Ok(parent)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parent's directory in each hierarchy.
    pub fn dirs(&self) -> impl Iterator<Item = &(Hierarchy, PathBuf)> {
        self.dirs.iter()
    }

    /// The parent's directory in the v1 hierarchy holding `controller`, or in the v2 tree
    /// when `controller` is `"unified"`.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(h, _)| {
                if controller == "unified" {
                    h.v2
                } else {
                    h.controllers.iter().any(|c| c == controller)
                }
            })
            .map(|(_, d)| d.as_path())
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for (_, dir) in self.dirs.iter().rev() {
            if let Err(e) = remove_tree(dir) {
                eprintln!("harness: remove cgroup {}: {e:#}", dir.display());
            }
        }
    }
}

/// Kills every process in the cgroup tree at `dir` and removes it, deepest first.
pub fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    // A frozen task does not die until thawed.
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
    let emptied = crate::util::wait_for(Duration::from_secs(10), || {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return Some(());
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        None
    });
    emptied.with_context(|| format!("processes remain in {}", dir.display()))?;
    // rmdir can briefly fail with EBUSY while the last task is being released.
    let mut last = None;
    for _ in 0..100 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last
        .map(anyhow::Error::from)
        .unwrap_or_else(|| anyhow::anyhow!("rmdir failed")))
    .with_context(|| format!("rmdir {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_layout() {
        let info = "\
35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
37 25 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
38 25 0:33 / /proc rw - proc proc rw";
        let h = parse_hierarchies(info);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].controllers, vec!["memory"]);
        assert_eq!(h[1].controllers, vec!["name=systemd"]);
        assert!(h[2].v2);
        assert_eq!(h[2].mount, PathBuf::from("/sys/fs/cgroup/unified"));
    }
}
