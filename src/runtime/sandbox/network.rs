//! The pod's CNI attachment as containerd builds it, and the pod IPs from the result:
//! pure functions, so the exact CNI_ARGS and capability arguments are unit-tested; and
//! the pod's `lo` brought up through the namespace and link seams.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use serde_json::{Map, Value, json};

use cri_proto::v1::{PodSandboxConfig, Protocol};

use crate::net::cni::Attachment;
use crate::sys::link::LinkFlags;
use crate::sys::ns::Namespaces;

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
pub fn loopback_up(ns: &dyn Namespaces, links: &dyn LinkFlags, netns: &Path) -> io::Result<()> {
    ns.in_netns(netns, &mut || {
        let flags = links.flags("lo")?;
        links.set_flags("lo", flags | libc::IFF_UP)
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

    /// lo goes up in the pod's netns, keeping the flags it had (LOOPBACK, RUNNING...).
    #[test]
    fn loopback_up_sets_up_and_keeps_other_flags() {
        use crate::sys::record::{Answers, Call, Recorder};
        let rec = Recorder::new(Answers {
            link_flags: libc::IFF_LOOPBACK | libc::IFF_RUNNING,
            ..Default::default()
        });
        loopback_up(&rec, &rec, Path::new("/run/netns/p")).expect("up");
        assert_eq!(
            rec.calls(),
            [
                Call::EnterNetns("/run/netns/p".into()),
                Call::SetLinkFlags {
                    name: "lo".into(),
                    flags: libc::IFF_LOOPBACK | libc::IFF_RUNNING | libc::IFF_UP
                },
            ]
        );
        // nothing is set when the namespace cannot be entered
        let rec = Recorder::default().fail_on(
            |c| matches!(c, Call::EnterNetns(_)),
            nix::errno::Errno::ENOENT,
        );
        let err = loopback_up(&rec, &rec, Path::new("/gone")).expect_err("no netns");
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(rec.calls().len(), 1);
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
