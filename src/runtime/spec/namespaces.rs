//! Which namespaces a container joins and which it gets new: the pod's network, IPC and
//! UTS always (containerd's WithPodNamespaces), the pod's PID namespace unless the
//! container asks for its own, and a cgroup namespace on cgroup v2 hosts.

use std::path::PathBuf;

use super::error::{Result, SpecError};

/// A namespace the pod has: the host's, or one the holder keeps at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ns {
    Host,
    Path(PathBuf),
}

/// The pod's namespaces as its holder keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    pub network: Ns,
    pub ipc: Ns,
    pub uts: Ns,
    /// The pod's shared PID namespace; `None` when the pod does not share one (each
    /// container gets its own), `Some(Ns::Host)` for a host-PID pod.
    pub pid: Option<Ns>,
}

/// CRI NamespaceMode values.
pub const POD: i32 = 0;
pub const CONTAINER: i32 = 1;
pub const NODE: i32 = 2;
pub const TARGET: i32 = 3;

/// The OCI namespace list: (type, path or None for a new one). Host namespaces are
/// left out, which makes the container share the runtime's own.
pub fn container_namespaces(
    object: &str,
    pod: &PodNamespaces,
    pid_mode: i32,
    target_pid: Option<&PathBuf>,
    userns_mode: Option<i32>,
    cgroupns: bool,
) -> Result<Vec<(&'static str, Option<PathBuf>)>> {
    let field = "linux.security_context.namespace_options";
    let mut out: Vec<(&'static str, Option<PathBuf>)> = vec![];
    let pid = match pid_mode {
        CONTAINER => Some(None),
        POD => match &pod.pid {
            Some(Ns::Path(p)) => Some(Some(p.clone())),
            Some(Ns::Host) => None,
            None => {
                return Err(SpecError::invalid(
                    object,
                    format!("{field}.pid"),
                    "POD asks for the pod's shared process namespace, but the pod does not \
                     share one (its own pid mode is CONTAINER)",
                ));
            }
        },
        NODE => match &pod.pid {
            Some(Ns::Host) => None,
            _ => {
                return Err(SpecError::invalid(
                    object,
                    format!("{field}.pid"),
                    "NODE asks for the host's process namespace, but the pod is not a host-PID \
                     pod",
                ));
            }
        },
        TARGET => match target_pid {
            Some(p) => Some(Some(p.clone())),
            None => {
                return Err(SpecError::invalid(
                    object,
                    format!("{field}.target_id"),
                    "TARGET needs a running target container in the same pod",
                ));
            }
        },
        m => {
            return Err(SpecError::invalid(
                object,
                format!("{field}.pid"),
                format!("unknown NamespaceMode {m}"),
            ));
        }
    };
    if let Some(p) = pid {
        out.push(("pid", p));
    }
    for (name, ns) in [("ipc", &pod.ipc), ("uts", &pod.uts)] {
        if let Ns::Path(p) = ns {
            out.push((name, Some(p.clone())));
        }
    }
    out.push(("mount", None));
    if let Ns::Path(p) = &pod.network {
        out.push(("network", Some(p.clone())));
    }
    match userns_mode {
        None | Some(NODE) => {}
        Some(POD) => {
            return Err(SpecError::unsupported(
                object,
                format!("{field}.userns_options.mode"),
                "user namespaces for pods are not supported by berth yet (hostUsers: false)",
            ));
        }
        Some(m) => {
            return Err(SpecError::invalid(
                object,
                format!("{field}.userns_options.mode"),
                format!("unsupported user namespace mode {m} (NODE or POD)"),
            ));
        }
    }
    if cgroupns {
        out.push(("cgroup", None));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(pid: Option<Ns>) -> PodNamespaces {
        PodNamespaces {
            network: Ns::Path("/run/h/net".into()),
            ipc: Ns::Path("/run/h/ipc".into()),
            uts: Ns::Path("/run/h/uts".into()),
            pid,
        }
    }

    fn names(v: &[(&'static str, Option<PathBuf>)]) -> Vec<String> {
        v.iter()
            .map(|(n, p)| match p {
                Some(p) => format!("{n}={}", p.display()),
                None => n.to_string(),
            })
            .collect()
    }

    // containerd customopts.WithPodNamespaces + the cgroupns rule of buildLinuxSpec
    #[test]
    fn namespace_table() {
        let target = PathBuf::from("/proc/77/ns/pid");
        let shared = Some(Ns::Path("/run/h/pid".into()));
        let cases: Vec<(PodNamespaces, i32, bool, Vec<&str>)> = vec![
            (
                pod(None),
                CONTAINER,
                false,
                vec![
                    "pid",
                    "ipc=/run/h/ipc",
                    "uts=/run/h/uts",
                    "mount",
                    "network=/run/h/net",
                ],
            ),
            (
                pod(shared.clone()),
                POD,
                true,
                vec![
                    "pid=/run/h/pid",
                    "ipc=/run/h/ipc",
                    "uts=/run/h/uts",
                    "mount",
                    "network=/run/h/net",
                    "cgroup",
                ],
            ),
            (
                PodNamespaces {
                    network: Ns::Host,
                    ipc: Ns::Host,
                    uts: Ns::Host,
                    pid: Some(Ns::Host),
                },
                NODE,
                false,
                vec!["mount"],
            ),
            (
                pod(None),
                TARGET,
                false,
                vec![
                    "pid=/proc/77/ns/pid",
                    "ipc=/run/h/ipc",
                    "uts=/run/h/uts",
                    "mount",
                    "network=/run/h/net",
                ],
            ),
        ];
        for (p, mode, cg, want) in cases {
            let got = container_namespaces("c", &p, mode, Some(&target), None, cg).expect("ns");
            assert_eq!(names(&got), want, "mode {mode}");
        }
    }

    #[test]
    fn inconsistent_modes_are_refused() {
        let cases: Vec<(PodNamespaces, i32, Option<i32>, &str)> = vec![
            (pod(None), POD, None, "namespace_options.pid"),
            (pod(None), NODE, None, "namespace_options.pid"),
            (pod(None), TARGET, None, "namespace_options.target_id"),
            (pod(None), 9, None, "unknown NamespaceMode 9"),
            (pod(None), CONTAINER, Some(POD), "userns_options.mode"),
            (pod(None), CONTAINER, Some(CONTAINER), "userns_options.mode"),
        ];
        for (p, mode, userns, want) in cases {
            let e = container_namespaces("c", &p, mode, None, userns, false).expect_err(want);
            assert!(e.to_string().contains(want), "{e}");
        }
        container_namespaces("c", &pod(None), CONTAINER, None, Some(NODE), false)
            .expect("userns NODE is the host's");
    }
}
