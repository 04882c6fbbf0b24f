//! Where the host mounts its cgroup hierarchies.

use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Its mount point, e.g. /sys/fs/cgroup/memory.
    pub mount: PathBuf,
    /// true for cgroup2.
    pub v2: bool,
    /// v1: the controllers (or `name=...`) of the mount. v2: the controllers listed in the
    /// root's cgroup.controllers.
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
        let mut l = Self::from_mountinfo(&info);
        for h in l.hierarchies.iter_mut().filter(|h| h.v2) {
            h.controllers = v2_controllers(&h.mount);
        }
        l
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
            let mount = PathBuf::from(unescape(mount));
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

fn v2_controllers(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn unescape(s: &str) -> String {
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
