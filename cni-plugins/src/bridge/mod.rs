//! berth-bridge: connects the pod to a Linux bridge on the host with a veth pair, gives
//! it the addresses its IPAM plugin hands out, routes, a gateway, and (optionally) IP
//! masquerade for traffic leaving the pod networks.
//!
//! Owns: the bridge it is configured with, the veth pairs it names `vb<hash>`, and the
//! nftables table `inet berth-bridge`. Touches nothing else on the host.

pub mod config;
pub mod link;
pub mod masq;

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;

use crate::entry::{Command, Plugin, Request};
use crate::error::{Code, Error, Result};
use crate::ipam;
use crate::netlink::{Nl, connect, connect_in, link_controller, link_mac, route_dst, runtime};
use crate::netns::NetNs;
use crate::nft::{Nft, NftCli};
use crate::types::{CniResult, Interface, Route};
use config::{NetConf, host_veth_name, tag};

/// The plugin, with its nftables seam.
#[derive(Debug, Default)]
pub struct Bridge<N: Nft = NftCli> {
    pub nft: N,
}

impl<N: Nft> Plugin for Bridge<N> {
    fn add(&self, req: &Request) -> Result<CniResult> {
        let conf = NetConf::load(req)?;
        let ipam_type = conf.ipam_type()?.to_string();
        let ns = NetNs::open(req.netns()?)?;
        let host_name = host_veth_name(&req.container_id, &req.ifname);
        // The IPAM plugin runs while the links are made.
        let ipam = ipam::start(req, &ipam_type, Command::Add)?;
        let rt = runtime()?;
        let links = rt.block_on(async {
            let host = connect()?;
            let br = link::ensure_bridge(&host, &conf.bridge, conf.mtu, conf.promisc_mode).await?;
            let alias = tag(&conf.name, &req.container_id, &req.ifname);
            let veth = link::create_veth(&host, &host_name, &alias, ns.fd(), &req.ifname, conf.mtu)
                .await?;
            Ok::<_, Error>((host, br.header.index, veth))
        });
        let ipam = ipam.wait().and_then(|r| {
            r.ok_or_else(|| Error::new(Code::Decode, "IPAM plugin returned no result"))
        });
        match (links, ipam) {
            (Ok(links), Ok(result)) => {
                self.finish_add(req, &conf, &ipam_type, &ns, &rt, links, result)
            }
            (Ok((host, _, veth)), Err(e)) => {
                let _ = rt.block_on(host.del_link(veth.header.index));
                Err(e)
            }
            (Err(e), ipam) => {
                if ipam.is_ok() {
                    let _ = ipam::delegate(req, &ipam_type, Command::Del);
                }
                Err(e)
            }
        }
    }

    fn del(&self, req: &Request) -> Result<()> {
        let conf = NetConf::load(req)?;
        let ipam_type = conf.ipam_type()?.to_string();
        let tag = tag(&conf.name, &req.container_id, &req.ifname);
        let prev = req.prev_result().ok().flatten();
        // IPAM release, masquerade removal and link removal each wait on the kernel (a
        // deleting nftables commit or veth removal takes 10-30 ms): run them side by side.
        let ipam = ipam::start(req, &ipam_type, Command::Del);
        let masq = match (&prev, conf.ip_masq) {
            (Some(p), true) => {
                let addrs: Vec<IpNet> = p.ips.iter().map(|i| i.address).collect();
                Some(masq::start_del(&self.nft, &addrs))
            }
            _ => None,
        };
        let host_name = host_veth_name(&req.container_id, &req.ifname);
        let removed = runtime().and_then(|rt| {
            rt.block_on(async {
                let host = connect()?;
                if let Some(l) = host.link(&host_name).await? {
                    host.del_link(l.header.index).await?;
                }
                Ok(())
            })
        });
        // Teardown keeps going past a failure and reports them all at the end.
        let mut errors: Vec<Error> = Vec::new();
        errors.extend(removed.err());
        errors.extend(ipam.and_then(|p| p.wait()).err());
        match masq {
            Some(m) => errors.extend(m.and_then(|p| p.wait(&self.nft)).err()),
            None if conf.ip_masq => errors.extend(masq::del(&self.nft, None, &tag).err()),
            None => {}
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => {
                let first = errors.remove(0);
                let rest: Vec<String> = errors.iter().map(ToString::to_string).collect();
                Err(first.with_details(format!("also: {}", rest.join("; "))))
            }
        }
    }

    fn check(&self, req: &Request) -> Result<()> {
        let conf = NetConf::load(req)?;
        let prev = req
            .prev_result()?
            .ok_or_else(|| Error::new(Code::InvalidConfig, "CHECK needs prevResult"))?;
        let ns = NetNs::open(req.netns()?)?;
        let host_name = host_veth_name(&req.container_id, &req.ifname);
        runtime()?.block_on(async {
            let host = connect()?;
            let br = host.link(&conf.bridge).await?.ok_or_else(|| {
                Error::new(Code::Kernel, format!("bridge {} is missing", conf.bridge))
            })?;
            let veth = host.link(&host_name).await?.ok_or_else(|| {
                Error::new(Code::Kernel, format!("host veth {host_name} is missing"))
            })?;
            if link_controller(&veth) != Some(br.header.index) {
                return Err(Error::new(
                    Code::Kernel,
                    format!(
                        "host veth {host_name} is not attached to bridge {}",
                        conf.bridge
                    ),
                ));
            }
            let pod = connect_in(&ns)?;
            let l = pod.link(&req.ifname).await?.ok_or_else(|| {
                Error::new(
                    Code::Kernel,
                    format!("interface {} is missing in the pod", req.ifname),
                )
            })?;
            let have = pod.addrs(l.header.index).await?;
            for ip in &prev.ips {
                if !have.contains(&ip.address) {
                    return Err(Error::new(
                        Code::Kernel,
                        format!(
                            "address {} is missing from {} in the pod",
                            ip.address, req.ifname
                        ),
                    ));
                }
            }
            for want in &prev.routes {
                let routes = pod.routes(want.dst.addr().is_ipv4()).await?;
                if !routes
                    .iter()
                    .any(|r| route_dst(r) == Some(want.dst.trunc()))
                {
                    return Err(Error::new(
                        Code::Kernel,
                        format!("route to {} is missing in the pod", want.dst),
                    ));
                }
            }
            Ok(())
        })?;
        ipam::delegate(req, conf.ipam_type()?, Command::Check).map(|_| ())
    }

    fn status(&self, req: &Request) -> Result<()> {
        let conf = NetConf::load(req)?;
        ipam::delegate(req, conf.ipam_type()?, Command::Status).map(|_| ())
    }

    fn gc(&self, req: &Request) -> Result<()> {
        let conf = NetConf::load(req)?;
        ipam::delegate(req, conf.ipam_type()?, Command::Gc)?;
        if conf.ip_masq {
            masq::gc(&self.nft, &conf.name, |id, ifname| {
                conf.valid_attachments
                    .iter()
                    .any(|a| a.container_id == id && a.ifname == ifname)
            })?;
        }
        // Host veth ends of attachments that are no longer valid (their pod's namespace is
        // still held somewhere, or the veth would be gone with it).
        let keep: Vec<String> = conf
            .valid_attachments
            .iter()
            .map(|a| host_veth_name(&a.container_id, &a.ifname))
            .collect();
        runtime()?.block_on(async {
            let host = connect()?;
            let Some(br) = host.link(&conf.bridge).await? else {
                return Ok(());
            };
            let links: Vec<_> = host
                .h
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::kernel("list links", e))?;
            let prefix = format!("{}:", conf.name);
            for l in links {
                let name = crate::netlink::link_name(&l).unwrap_or_default();
                if !config::is_host_veth_name(name) || keep.iter().any(|k| k == name) {
                    continue;
                }
                // This network's veths, by their alias (also those an interrupted ADD never
                // attached). Without one: on this bridge, or on none (an ADD interrupted
                // between creating the pair and naming it).
                let ours = match crate::netlink::link_alias(&l) {
                    Some(alias) => alias.starts_with(&prefix),
                    None => {
                        link_controller(&l).is_none()
                            || link_controller(&l) == Some(br.header.index)
                    }
                };
                if ours {
                    host.del_link(l.header.index).await?;
                }
            }
            Ok(())
        })
    }
}

impl<N: Nft> Bridge<N> {
    /// Configures the links with the IPAM result, then masquerade; undoes both on failure.
    #[allow(clippy::too_many_arguments)]
    fn finish_add(
        &self,
        req: &Request,
        conf: &NetConf,
        ipam_type: &str,
        ns: &NetNs,
        rt: &tokio::runtime::Runtime,
        (host, br_index, veth): (Nl, u32, rtnetlink::packet_route::link::LinkMessage),
        mut result: CniResult,
    ) -> Result<CniResult> {
        let out = (|| {
            if result.ips.is_empty() {
                return Err(Error::new(
                    Code::InvalidConfig,
                    "IPAM plugin returned no address",
                ));
            }
            // The masquerade entries are written while the links are configured.
            let masq = conf.ip_masq.then(|| {
                let addrs: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
                masq::start_add(
                    &self.nft,
                    &addrs,
                    &tag(&conf.name, &req.container_id, &req.ifname),
                )
            });
            let configured = rt.block_on(configure(
                conf,
                req,
                ns,
                &host,
                br_index,
                &veth,
                &mut result,
            ));
            if let Some(m) = masq {
                m.and_then(|m| m.wait(&self.nft))?;
            }
            configured?;
            Ok(result)
        })();
        if out.is_err() {
            if conf.ip_masq {
                let tag = tag(&conf.name, &req.container_id, &req.ifname);
                let _ = masq::del(&self.nft, None, &tag);
            }
            let _ = ipam::delegate(req, ipam_type, Command::Del);
            let _ = rt.block_on(host.del_link(veth.header.index));
        }
        out
    }
}

/// Puts the IPAM result in place: gateway on the bridge, the pod side's addresses and
/// routes, and the result's interfaces.
async fn configure(
    conf: &NetConf,
    req: &Request,
    ns: &NetNs,
    host: &Nl,
    br_index: u32,
    veth: &rtnetlink::packet_route::link::LinkMessage,
    result: &mut CniResult,
) -> Result<()> {
    link::attach(host, veth.header.index, br_index, conf.hairpin_mode).await?;
    let has = |v4: bool| result.ips.iter().any(|i| i.address.addr().is_ipv4() == v4);
    if conf.is_gateway {
        for ip in &result.ips {
            if let Some(gw) = ip.gateway {
                link::ensure_gateway(host, br_index, gw, ip.address.prefix_len()).await?;
            }
        }
        link::enable_forwarding(has(true), has(false))?;
    }
    let pod = connect_in(ns)?;
    let pod_link = pod.link(&req.ifname).await?.ok_or_else(|| {
        Error::kernel(
            format!("interface {}", req.ifname),
            "missing in the pod after creation",
        )
    })?;
    let idx = pod_link.header.index;
    pod.set_up(idx).await?;
    for ip in &result.ips {
        pod.add_addr(idx, ip.address).await?;
    }
    let gw_for = |v4: bool| {
        result
            .ips
            .iter()
            .find(|i| i.address.addr().is_ipv4() == v4)
            .and_then(|i| i.gateway)
    };
    if conf.is_default_gateway {
        for v4 in [true, false] {
            let dst: IpNet = if v4 { "0.0.0.0/0" } else { "::/0" }
                .parse()
                .unwrap_or_default();
            if has(v4) && gw_for(v4).is_some() && !result.routes.iter().any(|r| r.dst == dst) {
                result.routes.push(Route {
                    dst,
                    gw: gw_for(v4),
                    mtu: None,
                    priority: None,
                });
            }
        }
    }
    for r in &result.routes {
        let gw: Option<IpAddr> = r.gw.or_else(|| gw_for(r.dst.addr().is_ipv4()));
        pod.add_route(r.dst.trunc(), gw, idx, r.mtu).await?;
    }
    let br = host.link_by_index(br_index).await?;
    let veth_now = host.link_by_index(veth.header.index).await?;
    result.interfaces = vec![
        Interface {
            name: conf.bridge.clone(),
            mac: br.as_ref().map(link_mac).unwrap_or_default(),
            ..Default::default()
        },
        Interface {
            name: host_veth_name(&req.container_id, &req.ifname),
            mac: veth_now.as_ref().map(link_mac).unwrap_or_default(),
            ..Default::default()
        },
        Interface {
            name: req.ifname.clone(),
            mac: link_mac(&pod_link),
            mtu: conf.mtu,
            sandbox: ns.path().display().to_string(),
        },
    ];
    for ip in &mut result.ips {
        ip.interface = Some(2);
    }
    Ok(())
}
