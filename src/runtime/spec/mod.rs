//! CRI requests turned into what berth runs: the OCI runtime spec of a container
//! (CreateContainer) and the plain settings of a pod's holder (RunPodSandbox).
//!
//! Everything here is a pure function of the request, the image config and facts the
//! caller looked up (namespace paths, sandbox files, the rootfs's user database, the host's
//! cgroup features); the few host queries that depend on a request (bind sources, mount
//! propagation, device nodes) go through [`HostView`]. It follows containerd's CRI plugin
//! rule by rule (each rule's test names the upstream function), refuses what this host or
//! berth cannot do with an error naming the CRI field, and never touches the host itself.
//!
//! ```text
//! ContainerConfig + PodSandboxConfig + image config + PodContext
//!   -> process (args/env/cwd) -> mounts -> masked paths -> devices -> capabilities
//!   -> privileged -> resources/oom -> cgroup path -> namespaces -> user/groups -> seccomp
//!   -> oci_spec::runtime::Spec
//! ```

pub mod container;
#[cfg(test)]
mod container_tests;
pub mod devices;
pub mod error;
pub mod etc_files;
pub mod host;
pub mod logs;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod resources;
pub mod sandbox;
#[cfg(test)]
mod sandbox_tests;
pub mod security;
pub mod user;

/// The CRI wire types this module reads (`cri_proto::v1`).
pub use cri_proto::v1 as cri;

pub use container::{
    ContainerRequest, ContainerSpec, HostFacts, PodContext, RuntimeOptions, container_spec,
};
pub use error::{ErrorKind, SpecError};
pub use host::{HostView, LinuxHost};
pub use mounts::SandboxFiles;
pub use namespaces::{Ns, PodNamespaces};
pub use sandbox::{HolderNamespaces, SandboxOptions, SandboxPlan, sandbox_plan};
pub use user::{UserDb, verify_run_as_non_root};

use error::{Result, SpecError as E};

/// The image config fields CreateContainer reads.
#[derive(Debug, Clone, Default)]
pub struct ImageView {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    /// VOLUME destinations.
    pub volumes: Vec<String>,
}

impl ImageView {
    /// From an OCI image config (`config` of the image's configuration blob).
    pub fn from_oci(c: Option<&oci_spec::image::Config>) -> Self {
        let Some(c) = c else {
            return Self::default();
        };
        Self {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            volumes: c.volumes().clone().unwrap_or_default(),
        }
    }
}

/// How errors name a container: `container app (pod default/web)`.
pub fn object_name(container: &str, pod: Option<&cri_proto::v1::PodSandboxMetadata>) -> String {
    match pod {
        Some(p) => format!("container {container} (pod {}/{})", p.namespace, p.name),
        None => format!("container {container}"),
    }
}

/// The container's (or sandbox's) cgroup path under the pod's cgroup parent
/// (containerd's getCgroupsPath for the cgroupfs driver); `None` without a parent. berth
/// drives cgroupfs only, so a systemd slice parent is refused: kubelet must use
/// `cgroupDriver: cgroupfs` (RuntimeConfig reports it).
pub fn cgroups_path(object: &str, field: &str, parent: &str, id: &str) -> Result<Option<String>> {
    if parent.is_empty() {
        return Ok(None);
    }
    if !parent.starts_with('/') {
        return Err(E::invalid(
            object,
            field,
            format!("{parent:?} is not an absolute cgroup path"),
        ));
    }
    if parent.split('/').any(|c| c == ".." || c == ".") {
        return Err(E::invalid(
            object,
            field,
            format!("{parent:?} holds a . or .. component"),
        ));
    }
    let base = parent.rsplit('/').next().unwrap_or_default();
    if base.ends_with(".slice") {
        return Err(E::unsupported(
            object,
            field,
            format!(
                "{parent:?} is a systemd slice; berth uses the cgroupfs driver (set the \
                 kubelet's cgroupDriver to cgroupfs)"
            ),
        ));
    }
    Ok(Some(format!("{}/{id}", parent.trim_end_matches('/'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    // containerd getCgroupsPath (cgroupfs form)
    #[test]
    fn cgroup_paths() {
        let p = |parent: &str| cgroups_path("c", "linux.cgroup_parent", parent, "abc");
        assert_eq!(p("").expect("none"), None);
        assert_eq!(
            p("/kubepods/burstable/pod1").expect("path").as_deref(),
            Some("/kubepods/burstable/pod1/abc")
        );
        assert_eq!(
            p("/kubepods/").expect("path").as_deref(),
            Some("/kubepods/abc")
        );
        for (bad, want) in [
            ("kubepods", "not an absolute"),
            ("/a/../b", ". or .."),
            ("/kubepods.slice/kubepods-pod1.slice", "systemd slice"),
        ] {
            let e = p(bad).expect_err(bad);
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.to_string().contains("linux.cgroup_parent"), "{e}");
        }
    }
}
