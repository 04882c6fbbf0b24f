//! Links, addresses and routes through rtnetlink, on a socket bound to one namespace.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::error::{Error, Result};
use crate::netns::NetNs;

/// A current-thread runtime for a plugin's netlink conversation.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::io("start tokio runtime", e))
}

/// A netlink handle in the calling thread's namespace. Must run inside the runtime.
pub fn connect() -> Result<Nl> {
    let (conn, handle, _) =
        rtnetlink::new_connection().map_err(|e| Error::kernel("open netlink socket", e))?;
    tokio::spawn(conn);
    Ok(Nl { h: handle })
}

/// A netlink handle whose socket lives in `ns`. Must run inside the runtime.
pub fn connect_in(ns: &NetNs) -> Result<Nl> {
    ns.enter(connect)?
}

/// True when `e` is the kernel's `errno`.
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// A netlink handle with the few operations the plugins need.
#[derive(Debug, Clone)]
pub struct Nl {
    pub h: Handle,
}

impl Nl {
    /// The link called `name`, if any.
    pub async fn link(&self, name: &str) -> Result<Option<LinkMessage>> {
        match self
            .h
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await
        {
            Ok(l) => Ok(l),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(Error::kernel(format!("get link {name}"), e)),
        }
    }

    pub async fn link_by_index(&self, index: u32) -> Result<Option<LinkMessage>> {
        match self
            .h
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await
        {
            Ok(l) => Ok(l),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(Error::kernel(format!("get link #{index}"), e)),
        }
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.h
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| Error::kernel(format!("set link #{index} up"), e))
    }

    /// Deletes a link; a link already gone is not an error.
    pub async fn del_link(&self, index: u32) -> Result<()> {
        match self.h.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(Error::kernel(format!("delete link #{index}"), e)),
        }
    }

    /// The addresses on link `index` (global scope and link-local alike).
    pub async fn addrs(&self, index: u32) -> Result<Vec<IpNet>> {
        let msgs: Vec<AddressMessage> = self
            .h
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::kernel(format!("list addresses of link #{index}"), e))?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                let addr = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let addr = addr.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                IpNet::new(addr, m.header.prefix_len).ok()
            })
            .collect())
    }

    /// Adds `addr` to link `index`; IPv6 without duplicate address detection, so the
    /// address is usable at once (the IPAM plugin already made it unique).
    pub async fn add_addr(&self, index: u32, addr: IpNet) -> Result<()> {
        let mut req = self
            .h
            .address()
            .add(index, addr.addr(), addr.prefix_len())
            .replace();
        if addr.addr().is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(|e| Error::kernel(format!("add address {addr} to link #{index}"), e))
    }

    /// Adds a route via `gw` (or on-link) out of `oif`. An identical route is replaced.
    pub async fn add_route(
        &self,
        dst: IpNet,
        gw: Option<IpAddr>,
        oif: u32,
        mtu: Option<u32>,
    ) -> Result<()> {
        let what = || format!("route {dst} via {gw:?} dev #{oif}");
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .map_err(|e| Error::kernel(what(), e))?
            .output_interface(oif);
        if let Some(gw) = gw {
            b = b.gateway(gw).map_err(|e| Error::kernel(what(), e))?;
        } else {
            b = b.scope(RouteScope::Link);
        }
        let mut msg = b.build();
        if let Some(mtu) = mtu {
            use rtnetlink::packet_route::route::RouteMetric;
            msg.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        self.h
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| Error::kernel(what(), e))
    }

    /// The routes of one family in the main table.
    pub async fn routes(&self, v4: bool) -> Result<Vec<RouteMessage>> {
        let msg = if v4 {
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build()
        } else {
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build()
        };
        self.h
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::kernel("list routes", e))
    }
}

/// A link's name.
pub fn link_name(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// A link's MAC as `aa:bb:..`.
pub fn link_mac(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// The bridge (controller) a link is enslaved to.
pub fn link_controller(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// A link's alias (IFLA_IFALIAS).
pub fn link_alias(l: &LinkMessage) -> Option<&str> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(n) => Some(n.as_str()),
        _ => None,
    })
}

pub fn link_mtu(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// The link's kind (`bridge`, `veth`...), from IFLA_LINKINFO.
pub fn link_kind(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

/// A route's destination as a CIDR (the default route is `0.0.0.0/0` or `::/0`).
pub fn route_dst(r: &RouteMessage) -> Option<IpNet> {
    use rtnetlink::packet_route::route::RouteAddress;
    let len = r.header.destination_prefix_length;
    let addr = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    });
    let addr = match addr {
        Some(a) => a,
        None if r.header.address_family == rtnetlink::packet_route::AddressFamily::Inet6 => {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        }
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    IpNet::new(addr, len).ok()
}

/// A route's gateway.
pub fn route_gw(r: &RouteMessage) -> Option<IpAddr> {
    use rtnetlink::packet_route::route::RouteAddress;
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Gateway(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}
