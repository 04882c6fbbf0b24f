//! The holder's own cgroup: where containerd would put the pause container
//! (`<cgroup parent>/<sandbox id>`, cgroupfs naming), in every v1 hierarchy and the
//! unified one, joined before the holder makes namespaces or forks anything. The daemon
//! removes it with the sandbox (see `sandbox::ops::shutdown_holder`).

use std::path::Path;

use crate::cgroups::{Cgroup, Layout, plan};

use super::{HolderError, Result};

/// Creates the cgroup at `path` (relative to each hierarchy's root), gives it
/// `cpu_shares` when the host has a cpu controller there, and moves this process in.
pub fn join(pod: &str, path: &str, cpu_shares: Option<u64>) -> Result<Cgroup> {
    let fail = |reason: String| HolderError::Invalid {
        pod: pod.into(),
        field: "cgroup",
        reason,
    };
    let layout = Layout::detect();
    let cg = Cgroup::at(&layout, Path::new(path)).map_err(|e| fail(e.to_string()))?;
    cg.create().map_err(|e| fail(e.to_string()))?;
    if let Some(shares) = cpu_shares {
        let mut cpu = oci_spec::runtime::LinuxCpu::default();
        cpu.set_shares(Some(shares));
        let mut r = oci_spec::runtime::LinuxResources::default();
        r.set_cpu(Some(cpu));
        // A v2 host without the cpu controller delegated here has no cpu.weight: the
        // holder runs without a weight rather than not at all (it runs no user code).
        match plan(&layout, &r).and_then(|w| cg.apply(&w)) {
            Ok(()) => {}
            Err(e) => tracing::warn!(pod, error = %e, "holder cgroup cpu shares not set"),
        }
    }
    cg.add(std::process::id() as i32)
        .map_err(|e| fail(e.to_string()))?;
    Ok(cg)
}
