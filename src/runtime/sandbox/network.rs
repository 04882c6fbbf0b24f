//! The pod's CNI attachment as containerd builds it, and the pod IPs from the result:
//! pure functions, so the exact CNI_ARGS and capability arguments are unit-tested.

use std::net::IpAddr;
use std::path::Path;

use serde_json::{Map, Value, json};

use cri_proto::v1::{PodSandboxConfig, Protocol};

use crate::net::cni::Attachment;

/// The interface CNI creates in the pod (containerd's `defaultIfName`).
pub const POD_IFNAME: &str = "eth0";

/// The attachment of sandbox `id` whose network namespace file is `netns`.
pub fn attachment(id: &str, netns: Option<&Path>, cfg: &PodSandboxConfig) -> Attachment {
    let mut att = Attachment::new(id, netns, POD_IFNAME);
    let meta = cfg.metadata.clone().unwrap_or_default();
    // go-cni's labels, in containerd's order: plugins that do not know them ignore them.
    att.args = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAMESPACE".into(), meta.namespace),
        ("K8S_POD_NAME".into(), meta.name),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), id.into()),
        ("K8S_POD_UID".into(), meta.uid),
    ];
    let ports: Vec<Value> = cfg
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let proto = match Protocol::try_from(p.protocol) {
                Ok(Protocol::Udp) => "udp",
                Ok(Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            json!({"hostPort": p.host_port, "containerPort": p.container_port,
                   "protocol": proto, "hostIP": p.host_ip})
        })
        .collect();
    let mut caps = Map::new();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), Value::Array(ports));
    }
    att.capability_args = caps;
    att
}

/// The pod IPs of a CNI result, IPv4 first (containerd's `selectPodIPs`), each once.
pub fn pod_ips(result: &Value) -> Vec<String> {
    let mut v4 = vec![];
    let mut v6 = vec![];
    for ip in result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(addr) = ip.get("address").and_then(Value::as_str) else {
            continue;
        };
        let host = addr.split('/').next().unwrap_or(addr);
        match host.parse::<IpAddr>() {
            Ok(a @ IpAddr::V4(_)) if !v4.contains(&a.to_string()) => v4.push(a.to_string()),
            Ok(a @ IpAddr::V6(_)) if !v6.contains(&a.to_string()) => v6.push(a.to_string()),
            _ => {}
        }
    }
    v4.extend(v6);
    v4
}

/// Brings up `lo` in the network namespace at `netns`, as containerd's always-present
/// loopback network does before the pod's own network is added: without it, containers
/// of a pod cannot reach each other on 127.0.0.1.
pub fn loopback_up(netns: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(netns)?;
    // setns moves only the calling thread; a short-lived thread keeps the caller's own
    // namespace untouched.
    std::thread::scope(|s| {
        s.spawn(|| -> std::io::Result<()> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let sock = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Datagram,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                None,
            )
            .map_err(std::io::Error::from)?;
            // SAFETY: ifreq is plain old data; zeroed is a valid value for it.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
                *d = *s as libc::c_char;
            }
            let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
            // SAFETY: SIOCGIFFLAGS reads the flags of the named interface into `req`, a
            // valid ifreq that outlives the call.
            if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the flags member of the union is the one SIOCGIFFLAGS filled in.
            unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
            // SAFETY: SIOCSIFFLAGS reads `req`, a valid ifreq naming "lo".
            if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("loopback thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_proto::v1::{PodSandboxMetadata, PortMapping};

    #[test]
    fn attachment_carries_the_pod_identity_and_host_ports() {
        let cfg = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "prod".into(),
                attempt: 0,
            }),
            port_mappings: vec![
                PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: 80,
                    host_port: 8080,
                    host_ip: String::new(),
                },
                PortMapping {
                    protocol: Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into(),
                },
                // No host port: nothing to map (containerd skips it).
                PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: 9090,
                    host_port: 0,
                    host_ip: String::new(),
                },
            ],
            ..Default::default()
        };
        let att = attachment("abc", Some(Path::new("/run/ns")), &cfg);
        assert_eq!(att.ifname, "eth0");
        assert!(att.args.contains(&("K8S_POD_NAME".into(), "web".into())));
        assert!(
            att.args
                .contains(&("K8S_POD_INFRA_CONTAINER_ID".into(), "abc".into()))
        );
        let ports = att.capability_args["portMappings"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            ports,
            vec![
                json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": ""}),
                json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}),
            ]
        );
        let none = attachment("abc", None, &PodSandboxConfig::default());
        assert!(none.capability_args.is_empty());
    }

    #[test]
    fn ipv4_comes_first() {
        let r = json!({"ips": [
            {"address": "fd00::5/64", "interface": 0},
            {"address": "10.88.0.5/16", "interface": 0},
            {"address": "10.88.0.5/16", "interface": 0},
            {"address": "garbage"},
        ]});
        assert_eq!(pod_ips(&r), vec!["10.88.0.5", "fd00::5"]);
        assert!(pod_ips(&json!({})).is_empty());
    }
}
