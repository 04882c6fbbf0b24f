//! berth-portmap: host ports forwarded to the pod (DNAT, TCP and UDP, on one host IP or
//! all local ones) and the hairpin SNAT that lets pods of the same network reach a
//! neighbour through its host port.
//!
//! Owns the nftables table `inet berth-portmap`:
//! ```text
//!   chain prerouting   nat hook, dstnat: [ip daddr H | fib daddr type local]
//!                      <proto> dport P dnat to pod:C          (traffic from outside)
//!   chain output       nat hook, dstnat: the same rules       (traffic from the host)
//!   chain postrouting  nat hook, srcnat: ct status dnat, saddr in the pod network,
//!                      daddr pod, <proto> dport C -> masquerade   (hairpin)
//! ```
//! Every rule of an attachment carries the comment `network:container:ifname`; DEL
//! lists the table once and deletes exactly those rules by handle.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::entry::{Plugin, Request};
use crate::error::{Code, Error, Result};
use crate::hostlocal::config::Attachment;
use crate::nft::{self, Nft, NftCli};
use crate::types::{CniResult, parse_conf};

pub const TABLE: &str = "berth-portmap";
const FAMILY: &str = "inet";

/// The plugin, with its nftables seam.
#[derive(Debug, Default)]
pub struct Portmap<N: Nft = NftCli> {
    pub nft: N,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetConf {
    name: String,
    #[serde(default)]
    runtime_config: RuntimeConfig,
    /// Hairpin SNAT; on unless set to false.
    #[serde(default)]
    snat: Option<bool>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Vec<Attachment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
}

/// One host port. go-cni (containerd) sends the keys capitalised (`HostPort`...), which
/// Go's case-insensitive decoding accepts, so the aliases accept them too.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortMapping {
    #[serde(alias = "HostPort")]
    host_port: u32,
    #[serde(alias = "ContainerPort")]
    container_port: u32,
    #[serde(default = "tcp", alias = "Protocol")]
    protocol: String,
    #[serde(default, rename = "hostIP", alias = "HostIP", alias = "hostIp")]
    host_ip: String,
}

fn tcp() -> String {
    "tcp".into()
}

impl PortMapping {
    fn validate(&self, i: usize) -> Result<(u16, u16, &'static str, Option<IpAddr>)> {
        let port = |field: &str, v: u32| {
            u16::try_from(v).ok().filter(|p| *p != 0).ok_or_else(|| {
                Error::config(format!(
                    "runtimeConfig.portMappings[{i}].{field} {v}: not a port"
                ))
            })
        };
        let proto = match self.protocol.to_ascii_lowercase().as_str() {
            "tcp" => "tcp",
            "udp" => "udp",
            other => {
                return Err(Error::config(format!(
                    "runtimeConfig.portMappings[{i}].protocol {other:?}: expected tcp or udp"
                )));
            }
        };
        let host_ip = match self.host_ip.as_str() {
            "" | "0.0.0.0" | "::" => None,
            s => Some(s.parse().map_err(|_| {
                Error::config(format!(
                    "runtimeConfig.portMappings[{i}].hostIP {s:?}: not an IP address"
                ))
            })?),
        };
        Ok((
            port("hostPort", self.host_port)?,
            port("containerPort", self.container_port)?,
            proto,
            host_ip,
        ))
    }
}

fn tag(network: &str, id: &str, ifname: &str) -> String {
    format!("{network}:{id}:{ifname}")
}

fn skeleton() -> Vec<Value> {
    let mut cmds = vec![json!({"add": {"table": {"family": FAMILY, "name": TABLE}}})];
    for (name, hook, prio) in [
        ("prerouting", "prerouting", -100),
        ("output", "output", -100),
        ("postrouting", "postrouting", 100),
    ] {
        cmds.push(
            json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": name,
            "type": "nat", "hook": hook, "prio": prio, "policy": "accept"}}}),
        );
    }
    cmds
}

fn rule(chain: &str, expr: Vec<Value>, comment: &str) -> Value {
    json!({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": expr, "comment": comment}}})
}

fn port_match(proto: &str, port: u16) -> Value {
    json!({"match": {"op": "==", "left": {"payload": {"protocol": proto, "field": "dport"}}, "right": port}})
}

/// The rules for one mapping to one pod address.
fn mapping_rules(
    pod: &IpNet,
    (host_port, container_port, proto, host_ip): (u16, u16, &str, Option<IpAddr>),
    snat: bool,
    comment: &str,
) -> Vec<Value> {
    let v4 = pod.addr().is_ipv4();
    let fam = if v4 { "ip" } else { "ip6" };
    let dst = match host_ip {
        Some(h) => nft::addr_match("daddr", v4, "==", json!(h.to_string())),
        None => {
            json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}})
        }
    };
    let nfproto = json!({"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": if v4 { "ipv4" } else { "ipv6" }}});
    let dnat =
        json!({"dnat": {"family": fam, "addr": pod.addr().to_string(), "port": container_port}});
    let mut out = Vec::new();
    for chain in ["prerouting", "output"] {
        out.push(rule(
            chain,
            vec![
                nfproto.clone(),
                dst.clone(),
                port_match(proto, host_port),
                dnat.clone(),
            ],
            comment,
        ));
    }
    if snat {
        out.push(rule(
            "postrouting",
            vec![
                json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                nft::addr_match("saddr", v4, "==", nft::prefix(&pod.trunc())),
                nft::addr_match("daddr", v4, "==", json!(pod.addr().to_string())),
                port_match(proto, container_port),
                json!({"masquerade": null}),
            ],
            comment,
        ));
        let localhost_ok = host_ip.is_none_or(|h| h.is_loopback());
        if v4 && localhost_ok {
            // Connections to 127.0.0.1:hostPort from the node leave with a loopback
            // source; masquerade them so the pod can answer.
            out.push(rule(
                "postrouting",
                vec![
                    nft::addr_match(
                        "saddr",
                        true,
                        "==",
                        json!({"prefix": {"addr": "127.0.0.0", "len": 8}}),
                    ),
                    nft::addr_match("daddr", true, "==", json!(pod.addr().to_string())),
                    port_match(proto, container_port),
                    json!({"masquerade": null}),
                ],
                comment,
            ));
        }
    }
    out
}

/// Lets the node route 127.0.0.1-sourced packets out of the pod's host-side interface
/// (the bridge, from prevResult), so that `127.0.0.1:hostPort` reaches the pod.
fn enable_localnet(prev: &CniResult) -> Result<()> {
    let Some(ifname) = prev
        .interfaces
        .iter()
        .find(|i| i.sandbox.is_empty())
        .map(|i| i.name.as_str())
    else {
        return Ok(());
    };
    if crate::entry::validate_ifname(ifname).is_err() {
        return Err(Error::config(format!(
            "prevResult interface {ifname:?}: not an interface name"
        )));
    }
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/route_localnet");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    match std::fs::write(&path, b"1") {
        Ok(()) => Ok(()),
        // Not an interface of this namespace (another plugin's result): nothing to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("write {path}"), e)),
    }
}

/// Deletes the rules whose comment `doomed` selects; returns how many there were.
fn delete_tagged(nft: &dyn Nft, doomed: impl Fn(&str) -> bool) -> Result<usize> {
    let Some(objs) = nft.list_table(FAMILY, TABLE)? else {
        return Ok(0);
    };
    let cmds: Vec<Value> = objs
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| {
            r.get("comment")
                .and_then(Value::as_str)
                .is_some_and(&doomed)
        })
        .filter_map(|r| {
            Some(json!({"delete": {"rule": {"family": FAMILY, "table": TABLE,
                "chain": r.get("chain")?.as_str()?, "handle": r.get("handle")?.as_u64()?}}}))
        })
        .collect();
    let n = cmds.len();
    nft.apply(cmds)?;
    Ok(n)
}

impl<N: Nft> Plugin for Portmap<N> {
    fn add(&self, req: &Request) -> Result<CniResult> {
        let conf: NetConf = parse_conf(&req.stdin)?;
        let prev = req.prev_result()?.ok_or_else(|| {
            Error::new(Code::InvalidConfig, "berth-portmap must be chained after a plugin that returns addresses (prevResult missing)")
        })?;
        let maps = conf
            .runtime_config
            .port_mappings
            .iter()
            .enumerate()
            .map(|(i, m)| m.validate(i))
            .collect::<Result<Vec<_>>>()?;
        if maps.is_empty() {
            return Ok(prev);
        }
        let comment = tag(&conf.name, &req.container_id, &req.ifname);
        let mut cmds = Vec::new();
        for ip in pod_addrs(&prev) {
            for m in &maps {
                if m.3.is_some_and(|h| h.is_ipv4() != ip.addr().is_ipv4()) {
                    continue;
                }
                cmds.extend(mapping_rules(&ip, *m, conf.snat.unwrap_or(true), &comment));
            }
        }
        self.nft.apply_with_setup(cmds, &skeleton)?;
        let snat = conf.snat.unwrap_or(true);
        if snat && maps.iter().any(|m| m.3.is_none_or(|h| h.is_loopback())) {
            enable_localnet(&prev)?;
        }
        Ok(prev)
    }

    fn del(&self, req: &Request) -> Result<()> {
        let conf: NetConf = parse_conf(&req.stdin)?;
        // As the reference plugin: an attachment without port mappings has no rules. The
        // runtime passes the mappings of the ADD again on DEL (libcni and berth cache them),
        // so this skips only the nft round trip, never a cleanup.
        if conf.runtime_config.port_mappings.is_empty() {
            return Ok(());
        }
        let comment = tag(&conf.name, &req.container_id, &req.ifname);
        delete_tagged(&self.nft, |c| c == comment).map(|_| ())
    }

    fn check(&self, req: &Request) -> Result<()> {
        let conf: NetConf = parse_conf(&req.stdin)?;
        if conf.runtime_config.port_mappings.is_empty() {
            return Ok(());
        }
        let comment = tag(&conf.name, &req.container_id, &req.ifname);
        let objs = self.nft.list_table(FAMILY, TABLE)?.unwrap_or_default();
        let rules = nft::rules_with_comment(&objs, &comment);
        if !rules.iter().any(|(chain, _)| chain == "prerouting") {
            return Err(Error::new(
                Code::Kernel,
                format!("no host port rules for {comment}"),
            ));
        }
        Ok(())
    }

    fn gc(&self, req: &Request) -> Result<()> {
        let conf: NetConf = parse_conf(&req.stdin)?;
        let prefix = format!("{}:", conf.name);
        delete_tagged(&self.nft, |c| {
            c.strip_prefix(&prefix)
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some_and(|(id, ifname)| {
                    !conf
                        .valid_attachments
                        .iter()
                        .any(|a| a.container_id == id && a.ifname == ifname)
                })
        })
        .map(|_| ())
    }
}

/// The pod's addresses: those on sandbox interfaces, or all when none is marked.
fn pod_addrs(prev: &CniResult) -> Vec<IpNet> {
    let in_sandbox = |i: &Option<usize>| {
        i.and_then(|i| prev.interfaces.get(i))
            .is_some_and(|iface| !iface.sandbox.is_empty())
    };
    let marked: Vec<IpNet> = prev
        .ips
        .iter()
        .filter(|ip| in_sandbox(&ip.interface))
        .map(|ip| ip.address)
        .collect();
    if marked.is_empty() {
        prev.ips.iter().map(|ip| ip.address).collect()
    } else {
        marked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(j: &str) -> PortMapping {
        serde_json::from_str(j).expect("mapping")
    }

    #[test]
    fn mappings_are_validated_by_field() {
        let e = pm(r#"{"hostPort":0,"containerPort":80}"#)
            .validate(0)
            .expect_err("port 0");
        assert!(e.msg.contains("portMappings[0].hostPort"), "{}", e.msg);
        let e = pm(r#"{"hostPort":80,"containerPort":80,"protocol":"sctp"}"#)
            .validate(1)
            .expect_err("sctp");
        assert!(e.msg.contains("portMappings[1].protocol"), "{}", e.msg);
        let e = pm(r#"{"hostPort":80,"containerPort":80,"hostIP":"nope"}"#)
            .validate(2)
            .expect_err("ip");
        assert!(e.msg.contains("hostIP"), "{}", e.msg);
        let ok = pm(r#"{"hostPort":8080,"containerPort":80,"protocol":"UDP","hostIP":"0.0.0.0"}"#)
            .validate(0)
            .expect("ok");
        assert_eq!(ok, (8080, 80, "udp", None));
        let go_cni = pm(r#"{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}"#)
            .validate(0)
            .expect("go-cni's capitalised keys");
        assert_eq!(go_cni, (8080, 80, "tcp", None));
    }

    #[test]
    fn rules_dnat_to_the_pod_and_hairpin_from_its_network() {
        let pod: IpNet = "10.1.0.5/24".parse().expect("net");
        let host: IpAddr = "192.0.2.1".parse().expect("ip");
        let rules = mapping_rules(&pod, (8080, 80, "tcp", Some(host)), true, "n:c:eth0");
        assert_eq!(
            rules.len(),
            3,
            "no localhost rule for a mapping on another host IP"
        );
        let chains: Vec<&str> = rules
            .iter()
            .map(|r| r["add"]["rule"]["chain"].as_str().expect("chain"))
            .collect();
        assert_eq!(chains, ["prerouting", "output", "postrouting"]);
        let dnat = &rules[0]["add"]["rule"]["expr"][3]["dnat"];
        assert_eq!(dnat["addr"], "10.1.0.5");
        assert_eq!(dnat["port"], 80);
        assert_eq!(
            rules[0]["add"]["rule"]["expr"][1]["match"]["right"],
            "192.0.2.1"
        );
        let snat = &rules[2]["add"]["rule"]["expr"];
        assert_eq!(snat[1]["match"]["right"]["prefix"]["addr"], "10.1.0.0");
        assert!(
            rules
                .iter()
                .all(|r| r["add"]["rule"]["comment"] == "n:c:eth0")
        );
        assert_eq!(
            mapping_rules(&pod, (8080, 80, "tcp", None), false, "t").len(),
            2
        );
        assert_eq!(
            mapping_rules(&pod, (8080, 80, "tcp", None), true, "t").len(),
            4,
            "hairpin and localhost masquerade"
        );
    }

    #[test]
    fn del_without_port_mappings_touches_no_ruleset() {
        let stdin = br#"{"cniVersion":"1.0.0","name":"net","type":"berth-portmap"}"#.to_vec();
        let req = Request {
            command: crate::entry::Command::Del,
            container_id: "a".into(),
            netns: None,
            ifname: "eth0".into(),
            args: Vec::new(),
            path: Vec::new(),
            common: serde_json::from_slice(&stdin).expect("common"),
            stdin,
        };
        // A table with the attachment's tag: were DEL to look, it would delete the rule.
        let p = Portmap {
            nft: crate::nft::FakeNft {
                table: Some(vec![json!({"rule": {"family": "inet", "table": TABLE,
                    "chain": "prerouting", "handle": 4, "comment": "net:a:eth0"}})]),
                ..Default::default()
            },
        };
        p.del(&req).expect("del");
        assert!(p.nft.batches.borrow().is_empty());
    }

    #[test]
    fn del_removes_exactly_the_attachments_rules() {
        let rule = |chain: &str, handle: u64, comment: &str| {
            json!({"rule": {"family": "inet", "table": TABLE, "chain": chain,
                "handle": handle, "comment": comment}})
        };
        let nft = crate::nft::FakeNft {
            table: Some(vec![
                rule("prerouting", 4, "net:a:eth0"),
                rule("output", 5, "net:a:eth0"),
                rule("prerouting", 6, "net:b:eth0"),
                rule("postrouting", 7, "net:a:eth1"),
            ]),
            ..Default::default()
        };
        assert_eq!(delete_tagged(&nft, |c| c == "net:a:eth0").expect("del"), 2);
        let b = nft.batches.borrow();
        let handles: Vec<u64> = b[0]
            .iter()
            .map(|c| c["delete"]["rule"]["handle"].as_u64().expect("handle"))
            .collect();
        assert_eq!(handles, [4, 5]);
    }
}
