//! Where the host mounts its cgroup hierarchies.

use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its mount point, e.g. /sys/fs/cgroup/memory.
    pub mount: PathBuf,
    /// true for cgroup2.
    pub v2: bool,
    /// v1: the controllers (or `name=...`) of the mount. v2: the controllers the root both
    /// lists in cgroup.controllers and enables for its children in cgroup.subtree_control
    /// (see [`v2_controllers`]).
    pub controllers: Vec<String>,
}

/// The host's cgroup hierarchies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    /// The layout the calling process sees.
    pub fn detect() -> Self {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Self::from_mountinfo(&info).with_v2_controllers()
    }

    /// Fills in the controllers of the unified tree from its mount (a test's temp dir
    /// stands in for one).
    pub fn with_v2_controllers(mut self) -> Self {
        for h in self.hierarchies.iter_mut().filter(|h| h.v2) {
            h.controllers = v2_controllers(&h.mount);
        }
        self
    }

    /// A pure cgroup v2 layout rooted at `root` (a real mount or a test's temp dir).
    pub fn v2(root: &Path) -> Self {
        Self {
            hierarchies: vec![Hierarchy {
                mount: root.to_path_buf(),
                v2: true,
                controllers: v2_controllers(root),
            }],
        }
    }

    /// Parses mountinfo lines; v2 controllers are left empty (see [`Layout::detect`]).
    pub fn from_mountinfo(info: &str) -> Self {
        let mut hierarchies = Vec::new();
        for line in info.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mut post = post.split(' ');
            let (Some(fstype), _, Some(opts)) = (post.next(), post.next(), post.next()) else {
                continue;
            };
            let (Some(root), Some(mount)) = (pre.split(' ').nth(3), pre.split(' ').nth(4)) else {
                continue;
            };
            // A bind of a sub-cgroup (inside a container) is not the hierarchy's root.
            if root != "/" {
                continue;
            }
            let mount = PathBuf::from(unescape_mount_path(mount));
            match fstype {
                "cgroup2" => hierarchies.push(Hierarchy {
                    mount,
                    v2: true,
                    controllers: vec![],
                }),
                "cgroup" => hierarchies.push(Hierarchy {
                    mount,
                    v2: false,
                    controllers: opts
                        .split(',')
                        .filter(|o| {
                            !matches!(
                                *o,
                                "rw" | "ro"
                                    | "xattr"
                                    | "noprefix"
                                    | "clone_children"
                                    | "cpuset_v2_mode"
                            ) && !o.starts_with("release_agent=")
                        })
                        .map(str::to_string)
                        .collect(),
                }),
                _ => {}
            }
        }
        Self { hierarchies }
    }

    /// true when only the unified tree is mounted.
    pub fn is_v2_only(&self) -> bool {
        !self.hierarchies.is_empty() && self.hierarchies.iter().all(|h| h.v2)
    }

    /// The v1 hierarchy holding `controller`.
    pub fn v1(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| !h.v2 && h.controllers.iter().any(|c| c == controller))
    }

    /// The unified tree, if mounted.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.v2)
    }

    /// Where a controller lives: `Some(false)` in a v1 hierarchy, `Some(true)` in the
    /// unified tree, `None` nowhere.
    pub fn controller(&self, name: &str) -> Option<bool> {
        if self.v1(name).is_some() {
            return Some(false);
        }
        self.unified()
            .filter(|u| u.controllers.iter().any(|c| c == name))
            .map(|_| true)
    }
}

/// The controllers a cgroup2 root offers its sub-cgroups: listed in its cgroup.controllers
/// AND enabled in its cgroup.subtree_control. A controller only listed is bound to the
/// unified tree but not usable below the root (its files do not exist there, and a write
/// to them fails): a hybrid host lists `hugetlb` at the root of its cgroup2 mount while
/// the v1 hierarchies carry the controllers, and runc's v1 manager never uses it.
pub fn v2_controllers(root: &Path) -> Vec<String> {
    let words = |f: &str| {
        std::fs::read_to_string(root.join(f))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let enabled = words("cgroup.subtree_control");
    words("cgroup.controllers")
        .into_iter()
        .filter(|c| enabled.contains(c))
        .collect()
}

/// A mountinfo path with its octal escapes (`\\040` for a space) decoded.
pub fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroupfs laid out under a temp dir: v1 hierarchies (each a directory) and a
    /// cgroup2 one whose root lists and enables the given controllers.
    fn temp_cgroupfs(tag: &str, v1: &[&str], listed: &str, enabled: &str) -> (PathBuf, Layout) {
        let root = std::env::temp_dir().join(format!("berth-layout-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut info = String::new();
        for (i, c) in v1.iter().enumerate() {
            std::fs::create_dir_all(root.join(c)).expect("mkdir");
            info.push_str(&format!(
                "{i} 1 0:{i} / {} rw - cgroup cgroup rw,{c}\n",
                root.join(c).display()
            ));
        }
        let unified = if v1.is_empty() {
            root.clone()
        } else {
            root.join("unified")
        };
        std::fs::create_dir_all(&unified).expect("mkdir");
        std::fs::write(unified.join("cgroup.controllers"), listed).expect("controllers");
        std::fs::write(unified.join("cgroup.subtree_control"), enabled).expect("subtree");
        info.push_str(&format!(
            "99 1 0:99 / {} rw - cgroup2 cgroup2 rw\n",
            unified.display()
        ));
        (root, Layout::from_mountinfo(&info).with_v2_controllers())
    }

    /// This machine's shape: hugetlb is listed at the cgroup2 root but enabled nowhere, so
    /// it is not a controller berth can use.
    #[test]
    fn hybrid_with_hugetlb_only_listed_at_the_v2_root() {
        let (root, l) = temp_cgroupfs("hybrid", &["memory", "cpu", "pids"], "hugetlb\n", "");
        assert!(!l.is_v2_only());
        assert_eq!(l.controller("memory"), Some(false));
        assert_eq!(l.controller("hugetlb"), None);
        // enabled for the root's children, it is the unified tree's
        std::fs::write(root.join("unified/cgroup.subtree_control"), "hugetlb\n").expect("w");
        let l = l.with_v2_controllers();
        assert_eq!(l.controller("hugetlb"), Some(true));
        std::fs::remove_dir_all(&root).expect("rm");
    }

    #[test]
    fn pure_v2_counts_what_the_root_enables() {
        let (root, l) = temp_cgroupfs(
            "v2",
            &[],
            "cpuset cpu io memory hugetlb pids rdma\n",
            "cpu memory hugetlb pids\n",
        );
        assert!(l.is_v2_only());
        for c in ["cpu", "memory", "hugetlb", "pids"] {
            assert_eq!(l.controller(c), Some(true), "{c}");
        }
        for c in ["cpuset", "io", "rdma", "blkio"] {
            assert_eq!(l.controller(c), None, "{c}");
        }
        std::fs::remove_dir_all(&root).expect("rm");
    }

    #[test]
    fn v1_hugetlb_hierarchy() {
        let (root, l) = temp_cgroupfs("v1", &["memory", "hugetlb"], "", "");
        assert_eq!(l.controller("hugetlb"), Some(false));
        assert_eq!(
            l.v1("hugetlb").map(|h| h.mount.clone()),
            Some(root.join("hugetlb"))
        );
        std::fs::remove_dir_all(&root).expect("rm");
    }

    #[test]
    fn hybrid_layout() {
        let info = "\
35 25 0:30 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory
36 25 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
37 25 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
38 25 0:33 / /proc rw - proc proc rw
39 25 0:30 /sub /mnt rw - cgroup cgroup rw,memory";
        let mut l = Layout::from_mountinfo(info);
        assert_eq!(l.hierarchies.len(), 3);
        assert!(!l.is_v2_only());
        l.hierarchies[2].controllers = vec!["hugetlb".into()];
        assert_eq!(l.controller("memory"), Some(false));
        assert_eq!(l.controller("hugetlb"), Some(true));
        assert_eq!(l.controller("blkio"), None);
    }
}
