//! berth-loopback: brings `lo` up in the pod's namespace (ADD) and down (DEL).

use crate::entry::{Plugin, Request};
use crate::error::{Code, Error, Result};
use crate::netlink::{connect_in, runtime};
use crate::netns::NetNs;
use crate::types::{CniResult, Interface, IpConfig};

#[derive(Debug, Default)]
pub struct Loopback;

impl Plugin for Loopback {
    fn add(&self, req: &Request) -> Result<CniResult> {
        let ns = NetNs::open(req.netns()?)?;
        runtime()?.block_on(async {
            let nl = connect_in(&ns)?;
            let lo = nl
                .link("lo")
                .await?
                .ok_or_else(|| Error::kernel("find lo", "no loopback link"))?;
            nl.set_up(lo.header.index).await?;
            let ips = nl
                .addrs(lo.header.index)
                .await?
                .into_iter()
                .map(|address| IpConfig {
                    version: None,
                    address,
                    gateway: None,
                    interface: Some(0),
                })
                .collect();
            Ok(CniResult {
                interfaces: vec![Interface {
                    name: "lo".into(),
                    mac: "00:00:00:00:00:00".into(),
                    mtu: None,
                    sandbox: ns.path().display().to_string(),
                }],
                ips,
                ..Default::default()
            })
        })
    }

    fn del(&self, req: &Request) -> Result<()> {
        // The namespace may already be gone: then so is its loopback.
        let Some(path) = req.netns.as_ref() else {
            return Ok(());
        };
        let ns = match NetNs::open(path) {
            Ok(ns) => ns,
            Err(e) if e.code == Code::UnknownContainer => return Ok(()),
            Err(e) => return Err(e),
        };
        runtime()?.block_on(async {
            let nl = connect_in(&ns)?;
            if let Some(lo) = nl.link("lo").await? {
                nl.h.link()
                    .set(
                        rtnetlink::LinkUnspec::new_with_index(lo.header.index)
                            .down()
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(|e| Error::kernel("set lo down", e))?;
            }
            Ok(())
        })
    }

    fn check(&self, req: &Request) -> Result<()> {
        let ns = NetNs::open(req.netns()?)?;
        runtime()?.block_on(async {
            let nl = connect_in(&ns)?;
            let lo = nl
                .link("lo")
                .await?
                .ok_or_else(|| Error::kernel("find lo", "no loopback link"))?;
            let up = lo
                .header
                .flags
                .contains(rtnetlink::packet_route::link::LinkFlags::Up);
            if !up {
                return Err(Error::new(Code::Kernel, "lo is down"));
            }
            Ok(())
        })
    }
}
