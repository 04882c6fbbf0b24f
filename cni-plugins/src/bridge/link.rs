//! The links of a bridge attachment: the bridge, the veth pair, the pod's side.

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth};

use crate::error::{Error, Result};
use crate::netlink::{Nl, is_errno, link_kind};

/// The bridge `name`, created (and brought up) when missing.
pub async fn ensure_bridge(
    host: &Nl,
    name: &str,
    mtu: Option<u32>,
    promisc: bool,
) -> Result<LinkMessage> {
    if let Some(l) = host.link(name).await? {
        return check_is_bridge(name, l);
    }
    let mut b = LinkBridge::new(name);
    if let Some(mtu) = mtu {
        b = b.mtu(mtu);
    }
    if promisc {
        b = b.promiscuous(true);
    }
    match host.h.link().add(b.up().build()).execute().await {
        Ok(()) => {}
        // Another ADD made it at the same moment.
        Err(e) if is_errno(&e, libc::EEXIST) => {}
        Err(e) => return Err(Error::kernel(format!("create bridge {name}"), e)),
    }
    let l = host
        .link(name)
        .await?
        .ok_or_else(|| Error::kernel(format!("bridge {name}"), "vanished after creation"))?;
    host.set_up(l.header.index).await?;
    check_is_bridge(name, l)
}

fn check_is_bridge(name: &str, l: LinkMessage) -> Result<LinkMessage> {
    match link_kind(&l).as_deref() {
        Some("bridge") => Ok(l),
        other => Err(Error::config(format!(
            "bridge {name}: a link of that name exists and is not a bridge (kind {other:?})"
        ))),
    }
}

/// Creates the veth pair with its pod end, named `ifname`, already in the pod's
/// namespace (`pod_fd`). A host end left by an earlier, interrupted ADD is replaced.
pub async fn create_veth(
    host: &Nl,
    host_name: &str,
    alias: &str,
    pod_fd: i32,
    ifname: &str,
    mtu: Option<u32>,
) -> Result<LinkMessage> {
    if let Some(old) = host.link(host_name).await? {
        host.del_link(old.header.index).await?;
    }
    let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(ifname.to_string())
        .setns_by_fd(pod_fd);
    let mut veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(host_name.to_string());
    if let Some(mtu) = mtu {
        peer = peer.mtu(mtu);
        veth = veth.mtu(mtu);
    }
    let msg = veth
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
        .build();
    host.h.link().add(msg).execute().await.map_err(|e| {
        if is_errno(&e, libc::EEXIST) {
            Error::new(
                crate::error::Code::InvalidConfig,
                format!("interface {ifname} already exists in the pod's namespace"),
            )
        } else {
            Error::kernel(format!("create veth {host_name}/{ifname}"), e)
        }
    })?;
    let link = host
        .link(host_name)
        .await?
        .ok_or_else(|| Error::kernel(format!("veth {host_name}"), "vanished after creation"))?;
    // The alias names the attachment (`network:container:ifname`), so that GC can tell
    // whose veth this is even before it is attached to the bridge. (The kernel ignores an
    // alias in the creating message, hence the second request.)
    host.h
        .link()
        .set(
            LinkUnspec::new_with_index(link.header.index)
                .alias(alias)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| Error::kernel(format!("set alias of {host_name}"), e))?;
    Ok(link)
}

/// Enslaves the host end to the bridge, sets hairpin, and brings it up.
pub async fn attach(host: &Nl, veth: u32, bridge: u32, hairpin: bool) -> Result<()> {
    host.h
        .link()
        .set(
            LinkUnspec::new_with_index(veth)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(|e| Error::kernel(format!("attach link #{veth} to bridge #{bridge}"), e))?;
    if hairpin {
        host.h
            .link()
            .set_port(LinkBridgePort::new(veth).hairpin(true).build())
            .execute()
            .await
            .map_err(|e| Error::kernel(format!("set hairpin on link #{veth}"), e))?;
    }
    Ok(())
}

/// Puts the gateway address on the bridge unless it is there already.
pub async fn ensure_gateway(host: &Nl, bridge: u32, gw: IpAddr, prefix: u8) -> Result<()> {
    let want = IpNet::new(gw, prefix).map_err(|e| Error::config(format!("gateway {gw}: {e}")))?;
    let have = host.addrs(bridge).await?;
    if have.iter().any(|a| a.addr() == gw) {
        return Ok(());
    }
    host.add_addr(bridge, want).await
}

/// Turns on forwarding for the families in use, in the plugin's (the host's) namespace.
pub fn enable_forwarding(v4: bool, v6: bool) -> Result<()> {
    let mut paths = Vec::new();
    if v4 {
        paths.push("/proc/sys/net/ipv4/ip_forward");
    }
    if v6 {
        paths.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for p in paths {
        if std::fs::read_to_string(p).is_ok_and(|v| v.trim() == "1") {
            continue;
        }
        std::fs::write(p, b"1").map_err(|e| Error::io(format!("write {p}"), e))?;
    }
    Ok(())
}
