//! Host port conflicts (the scheduler's NodePorts `Fits` and HostPortInfo.CheckConflict):
//! a wanted (hostIP, protocol, hostPort) collides with one an admitted pod holds on the
//! same protocol and port when either side binds all addresses (`0.0.0.0`, the default
//! for an empty hostIP) or both name the same address.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{ContainerPort, Pod};

const ALL: &str = "0.0.0.0";

/// The host ports a pod holds: those of its containers and of its sidecars (restartable
/// init containers run for the pod's whole life, so their host ports are held too).
pub fn host_ports(pod: &Pod) -> impl Iterator<Item = &ContainerPort> {
    let spec = pod.spec.as_ref();
    let sidecars = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.into_iter()
        .flat_map(|s| s.containers.iter())
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
}

/// (ip, protocol, port) as HostPortInfo sanitizes it.
fn key(p: &ContainerPort) -> (String, String, i32) {
    let ip = match p.host_ip.as_deref() {
        None | Some("") => ALL.to_string(),
        Some(ip) => ip.to_string(),
    };
    let proto = match p.protocol.as_deref() {
        None | Some("") => "TCP".to_string(),
        Some(pr) => pr.to_string(),
    };
    (ip, proto, p.host_port.unwrap_or(0))
}

/// Whether every host port the pod wants is free of the admitted pods' ports.
pub fn fits(pod: &Pod, admitted: &[&Pod]) -> bool {
    let used: BTreeSet<(String, String, i32)> = admitted
        .iter()
        .flat_map(|p| host_ports(p))
        .map(key)
        .collect();
    host_ports(pod).map(key).all(|(ip, proto, port)| {
        let conflict = if ip == ALL {
            used.iter().any(|(_, pr, po)| *pr == proto && *po == port)
        } else {
            used.contains(&(ALL.to_string(), proto.clone(), port))
                || used.contains(&(ip.clone(), proto.clone(), port))
        };
        !conflict
    })
}
