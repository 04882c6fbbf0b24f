//! The holder's own cgroup: where containerd would put the pause container
//! (`<cgroup parent>/<sandbox id>`, cgroupfs naming), in every v1 hierarchy and the
//! unified one, entered before the holder makes namespaces or forks anything. The daemon
//! removes it with the sandbox (see `sandbox::ops::shutdown_holder`).

use std::path::Path;

use crate::cgroups::{Cgroup, Entry, Layout, Opened, plan};

use super::{HolderError, Result};

/// Creates the cgroup at `path` (relative to each hierarchy's root), gives it
/// `cpu_shares` when the host has a cpu controller there, and moves this (still
/// single-threaded) process into its v1 hierarchies. The unified one is entered through
/// the returned files.
pub fn prepare(pod: &str, path: &str, cpu_shares: Option<u64>) -> Result<Opened> {
    let cg = make_in(&Layout::detect(), pod, path, cpu_shares)?;
    let fail = |reason| HolderError::Invalid {
        pod: pod.into(),
        field: "cgroup",
        reason,
    };
    let opened = Entry::of(&cg).open().map_err(fail)?;
    opened.join_v1().map_err(fail)?;
    Ok(opened)
}

/// Creates the cgroup in the hierarchies of `layout` (a test's temp tree).
fn make_in(layout: &Layout, pod: &str, path: &str, cpu_shares: Option<u64>) -> Result<Cgroup> {
    let fail = |reason: String| HolderError::Invalid {
        pod: pod.into(),
        field: "cgroup",
        reason,
    };
    let cg = Cgroup::at(layout, Path::new(path)).map_err(|e| fail(e.to_string()))?;
    cg.create().map_err(|e| fail(e.to_string()))?;
    if let Some(shares) = cpu_shares {
        let mut cpu = oci_spec::runtime::LinuxCpu::default();
        cpu.set_shares(Some(shares));
        let mut r = oci_spec::runtime::LinuxResources::default();
        r.set_cpu(Some(cpu));
        // A v2 host without the cpu controller delegated here has no cpu.weight: the
        // holder runs without a weight rather than not at all (it runs no user code).
        match plan(layout, &r).and_then(|w| cg.apply(&w)) {
            Ok(()) => {}
            Err(e) => tracing::warn!(pod, error = %e, "holder cgroup cpu shares not set"),
        }
    }
    Ok(cg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The v2 path against a temp tree standing in for /sys/fs/cgroup: the cgroup is made
    /// under the parent and gets its cpu.weight where the cpu controller is there; a
    /// process enters it through the unified directory, there is no v1 `tasks` to write.
    #[test]
    fn makes_a_v2_tree() {
        for (controllers, weight) in [("cpu memory pids\n", Some("1")), ("memory pids\n", None)] {
            let root = std::env::temp_dir().join(format!(
                "berth-holder-cg-unit-{}-{}",
                std::process::id(),
                weight.is_some()
            ));
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(root.join("cgroup.controllers"), controllers).unwrap();
            std::fs::write(root.join("cgroup.subtree_control"), controllers).unwrap();
            let layout = Layout::v2(&root);
            let cg = make_in(&layout, "p", "/kubepods/pod1/sid", Some(2)).unwrap();
            let dir = root.join("kubepods/pod1/sid");
            assert_eq!(cg.unique_dirs(), vec![dir.as_path()]);
            assert_eq!(
                std::fs::read_to_string(dir.join("cpu.weight"))
                    .ok()
                    .as_deref(),
                weight
            );
            let entry = Entry::of(&cg).open().unwrap();
            entry.join_v1().unwrap();
            assert!(!dir.join("tasks").exists());
            std::fs::write(dir.join("cgroup.procs"), "").unwrap();
            entry.join_unified().unwrap();
            assert_eq!(
                std::fs::read_to_string(dir.join("cgroup.procs")).unwrap(),
                "0"
            );
            let e = make_in(&layout, "p", "/a/../b", None).unwrap_err();
            assert!(e.to_string().contains("cgroup"), "{e}");
            std::fs::remove_dir_all(&root).unwrap();
        }
    }
}
