//! berth-host-local: IP address management from configured ranges, persisted on disk.
//!
//! Owns only its data directory (`<dataDir>/<network name>`); it never touches a network
//! namespace.

pub mod config;
pub mod store;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::entry::{Plugin, Request};
use crate::error::{Code, Error, Result};
use crate::types::{CniResult, IpConfig, parse_conf};
use config::{DEFAULT_DATA_DIR, NetConf, Range, add, to_u128};
use store::Store;

/// How many candidate addresses one ADD tries in a range set before calling it full.
const MAX_PROBES: u128 = 1 << 20;

#[derive(Debug, Default)]
pub struct HostLocal;

fn open(req: &Request) -> Result<(NetConf, Vec<Vec<Range>>, Store)> {
    let conf: NetConf = parse_conf(&req.stdin)?;
    let sets = conf.ipam.range_sets()?;
    let dir = conf
        .ipam
        .data_dir
        .clone()
        .unwrap_or_else(|| DEFAULT_DATA_DIR.into())
        .join(&conf.name);
    let store = Store::open(&dir)?;
    Ok((conf, sets, store))
}

impl Plugin for HostLocal {
    fn add(&self, req: &Request) -> Result<CniResult> {
        let (conf, sets, store) = open(req)?;
        let held = store.by_owner(&req.container_id, &req.ifname)?;
        let mut got: Vec<(IpAddr, &Range)> = Vec::new();
        for (i, set) in sets.iter().enumerate() {
            // A retried ADD (the runtime crashed before it saw the result) gets the
            // address it already holds.
            if let Some((ip, r)) = held
                .iter()
                .find_map(|ip| set.iter().find(|r| r.contains(*ip)).map(|r| (*ip, r)))
            {
                got.push((ip, r));
                continue;
            }
            match allocate(&store, i, set, &req.container_id, &req.ifname) {
                Ok(a) => got.push(a),
                Err(e) => {
                    for (ip, _) in &got {
                        let _ = store.release(*ip);
                    }
                    return Err(e);
                }
            }
        }
        Ok(CniResult {
            ips: got
                .iter()
                .map(|(ip, r)| IpConfig {
                    version: None,
                    address: IpNet::new(*ip, r.subnet.prefix_len()).unwrap_or(r.subnet),
                    gateway: r.gateway,
                    interface: None,
                })
                .collect(),
            routes: conf.ipam.routes.clone(),
            dns: conf.ipam.dns.clone(),
            ..Default::default()
        })
    }

    fn del(&self, req: &Request) -> Result<()> {
        let (_, _, store) = open(req)?;
        for ip in store.by_owner(&req.container_id, &req.ifname)? {
            store.release(ip)?;
        }
        Ok(())
    }

    fn check(&self, req: &Request) -> Result<()> {
        let (_, _, store) = open(req)?;
        let held = store.by_owner(&req.container_id, &req.ifname)?;
        if held.is_empty() {
            return Err(Error::new(
                Code::UnknownContainer,
                format!("{}/{}: holds no address", req.container_id, req.ifname),
            ));
        }
        if let Some(prev) = req.prev_result()? {
            for ip in prev.ips {
                if !held.contains(&ip.address.addr()) {
                    return Err(Error::new(
                        Code::InvalidConfig,
                        format!(
                            "{}: not allocated to {}/{}",
                            ip.address, req.container_id, req.ifname
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn status(&self, req: &Request) -> Result<()> {
        let (_, sets, store) = open(req)?;
        let all = store.all()?;
        for set in &sets {
            let capacity: u128 = set.iter().map(Range::capacity).sum();
            let used = all
                .iter()
                .filter(|(ip, _, _)| set.iter().any(|r| r.contains(*ip)))
                .count() as u128;
            if used >= capacity {
                let nets: Vec<String> = set.iter().map(|r| r.subnet.to_string()).collect();
                return Err(Error::new(
                    Code::NotAvailable,
                    format!(
                        "range {} is full ({used} of {capacity} addresses allocated)",
                        nets.join(",")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn gc(&self, req: &Request) -> Result<()> {
        let (conf, _, store) = open(req)?;
        for (ip, id, ifname) in store.all()? {
            let valid = conf
                .valid_attachments
                .iter()
                .any(|a| a.container_id == id && (ifname.is_empty() || a.ifname == ifname));
            if !valid {
                store.release(ip)?;
            }
        }
        Ok(())
    }
}

/// Finds and reserves the next free address of `set`, round-robin from the last one.
fn allocate<'a>(
    store: &Store,
    index: usize,
    set: &'a [Range],
    id: &str,
    ifname: &str,
) -> Result<(IpAddr, &'a Range)> {
    let capacity: u128 = set
        .iter()
        .map(|r| to_u128(r.end) - to_u128(r.start) + 1)
        .sum();
    let mut cursor = store
        .last_reserved(index)
        .and_then(|ip| set.iter().position(|r| r.contains(ip)).map(|ri| (ri, ip)))
        .map(|(ri, ip)| next(set, ri, ip))
        .unwrap_or((0, set[0].start));
    for _ in 0..capacity.min(MAX_PROBES) {
        let (ri, ip) = cursor;
        let r = &set[ri];
        if Some(ip) != r.gateway && store.reserve(ip, id, ifname)? {
            store.set_last_reserved(index, ip)?;
            return Ok((ip, r));
        }
        cursor = next(set, ri, ip);
    }
    let nets: Vec<String> = set.iter().map(|r| r.subnet.to_string()).collect();
    Err(Error::new(
        Code::RangeFull,
        format!("no free address in range {}", nets.join(",")),
    ))
}

/// The address after `ip` in range `ri` of `set`, wrapping to the next range.
fn next(set: &[Range], ri: usize, ip: IpAddr) -> (usize, IpAddr) {
    if ip < set[ri].end {
        (ri, add(ip, 1))
    } else {
        let n = (ri + 1) % set.len();
        (n, set[n].start)
    }
}
