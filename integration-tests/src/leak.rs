//! Finds what tests left on the machine.
//!
//! Two kinds of evidence: anything named with the tests' prefix (`berth-test-`) or
//! carrying their marker variable, wherever it is (named netns, cgroups, mounts, temp
//! dirs, processes); and anything new since a baseline taken before the suite in the
//! machine's own network namespace and mount table (links, named netns, mounts), which
//! catches a test that touched the machine under another name.

use std::collections::BTreeSet;
use std::path::Path;

use crate::util::{ID_ENV, PREFIX};

/// Mounts that iproute2 and CNI make once per machine to hold named netns (a shared bind
/// mount of the directory on itself); what counts is what is inside them.
const HOUSEKEEPING_MOUNTS: &[&str] = &["/run/netns", "/var/run/netns"];

/// What the machine holds that the leak check compares across the suite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub links: BTreeSet<String>,
    pub netns: BTreeSet<String>,
    pub mounts: BTreeSet<String>,
    /// Cgroup directories one and two levels below each hierarchy's root: a test that
    /// made a cgroup outside its own `berth-test-*` parent (say, a runtime's default
    /// `/berth/<id>`) shows up here.
    pub cgroups: BTreeSet<String>,
    /// What [`find_all`] saw when the snapshot was taken: left by an earlier, interrupted
    /// run rather than by the suite being checked.
    pub leftovers: BTreeSet<String>,
}

impl Snapshot {
    /// Reads the machine's links, named netns and mounts (as PID 1 sees them).
    pub fn take() -> Self {
        Self {
            links: names_in(Path::new("/sys/class/net")),
            netns: names_in(Path::new("/run/netns")),
            mounts: std::fs::read_to_string("/proc/1/mountinfo")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(crate::util::unescape_mount_path)
                .collect(),
            cgroups: cgroup_dirs(),
            leftovers: find_all().into_iter().collect(),
        }
    }

    /// One line per entry, `kind name`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (kind, set) in [
            ("link", &self.links),
            ("netns", &self.netns),
            ("mount", &self.mounts),
            ("cgroup", &self.cgroups),
            ("leftover", &self.leftovers),
        ] {
            for name in set {
                s.push_str(kind);
                s.push(' ');
                s.push_str(name);
                s.push('\n');
            }
        }
        s
    }

    pub fn from_text(text: &str) -> Self {
        let mut snap = Self::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("link", n)) => snap.links.insert(n.to_string()),
                Some(("netns", n)) => snap.netns.insert(n.to_string()),
                Some(("mount", n)) => snap.mounts.insert(n.to_string()),
                Some(("cgroup", n)) => snap.cgroups.insert(n.to_string()),
                Some(("leftover", n)) => snap.leftovers.insert(n.to_string()),
                _ => false,
            };
        }
        snap
    }

    /// What `self` holds that `before` did not.
    pub fn added_since(&self, before: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, now, was) in [
            ("link", &self.links, &before.links),
            ("named netns", &self.netns, &before.netns),
            ("mount", &self.mounts, &before.mounts),
            ("cgroup", &self.cgroups, &before.cgroups),
            ("left behind:", &self.leftovers, &before.leftovers),
        ] {
            out.extend(
                now.difference(was)
                    .filter(|n| !(kind == "mount" && HOUSEKEEPING_MOUNTS.contains(&n.as_str())))
                    .map(|n| format!("{kind} {n} (new since the baseline)")),
            );
        }
        out
    }
}

/// Cgroup directories one and two levels deep in every hierarchy.
fn cgroup_dirs() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for h in crate::cgroup::hierarchies() {
        for n in names_in(&h.mount) {
            let dir = h.mount.join(&n);
            if !dir.is_dir() {
                continue;
            }
            out.insert(dir.display().to_string());
            for m in names_in(&dir) {
                let sub = dir.join(&m);
                if sub.is_dir() {
                    out.insert(sub.display().to_string());
                }
            }
        }
    }
    out
}

/// Everything on the machine named with `scope` (a prefix such as `berth-test-`, or one
/// test's id) or marked with it: named netns, cgroups, mounts, temp dirs, processes.
pub fn find(scope: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in names_in(Path::new("/run/netns")) {
        if n.starts_with(scope) {
            out.push(format!("named netns /run/netns/{n}"));
        }
    }
    for h in crate::cgroup::hierarchies() {
        for n in names_in(&h.mount) {
            if n.starts_with(scope) && h.mount.join(&n).is_dir() {
                out.push(format!("cgroup {}", h.mount.join(n).display()));
            }
        }
    }
    for pid in ["1", "self"] {
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
        for l in info.lines() {
            if l.contains(scope) {
                let point = l.split(' ').nth(4).unwrap_or(l);
                out.push(format!(
                    "mount {point} (in the mount namespace of pid {pid})"
                ));
            }
        }
    }
    for n in names_in(&std::env::temp_dir()) {
        if n.starts_with(scope) {
            out.push(format!(
                "temp dir {}",
                std::env::temp_dir().join(n).display()
            ));
        }
    }
    out.extend(processes(scope));
    out.sort();
    out.dedup();
    out
}

/// Processes (other than this one) marked with `scope` in their environment or named
/// with it on their command line.
fn processes(scope: &str) -> Vec<String> {
    marked(scope)
        .into_iter()
        .map(|(pid, cmd)| format!("process {pid}: {cmd}"))
        .collect()
}

/// The pids and command lines of the processes [`find`] reports for `scope`.
pub fn marked(scope: &str) -> Vec<(i32, String)> {
    let me = std::process::id().to_string();
    let marker = format!("{ID_ENV}={scope}");
    let mut out = Vec::new();
    for pid in names_in(Path::new("/proc")) {
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let marked = environ
            .split(|b| *b == 0)
            .any(|v| v.starts_with(marker.as_bytes()));
        let cmd = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if (marked || cmd.contains(scope))
            && let Ok(pid) = pid.parse()
        {
            out.push((pid, cmd.trim().to_string()));
        }
    }
    out
}

/// Everything left by the whole suite: all of [`find`] for the common prefix.
pub fn find_all() -> Vec<String> {
    find(PREFIX)
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_diffs() {
        let mut a = Snapshot::default();
        a.links.insert("eth0".into());
        a.mounts.insert("/a b".into());
        let b = Snapshot::from_text(&a.to_text());
        assert_eq!(a, b);
        let mut c = b.clone();
        c.links.insert("veth1".into());
        c.netns.insert("cni-1".into());
        let added = c.added_since(&a);
        assert_eq!(added.len(), 2, "{added:?}");
        assert!(added[0].starts_with("link veth1"));
        assert!(a.added_since(&c).is_empty());
        c.mounts.insert("/run/netns".into());
        assert_eq!(
            c.added_since(&a).len(),
            2,
            "the netns housekeeping mount is no leak"
        );
    }
}
