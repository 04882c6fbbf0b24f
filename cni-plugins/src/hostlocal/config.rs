//! berth-host-local's configuration (the `ipam` object) and its validation.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::types::{Dns, Route};

/// Where allocations live unless `dataDir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

#[derive(Debug, Deserialize)]
pub struct NetConf {
    pub name: String,
    pub ipam: IpamConf,
    /// GC's list of attachments that must keep their addresses.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConf {
    #[serde(default)]
    pub ranges: Vec<Vec<RangeConf>>,
    /// The single-range shorthand: `subnet`, `rangeStart`, `rangeEnd`, `gateway`.
    #[serde(flatten)]
    pub single: Option<RangeConf>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub dns: Dns,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    pub subnet: IpNet,
    #[serde(default)]
    pub range_start: Option<IpAddr>,
    #[serde(default)]
    pub range_end: Option<IpAddr>,
    #[serde(default)]
    pub gateway: Option<IpAddr>,
}

/// One validated range: the first and last assignable address and the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: Option<IpAddr>,
}

impl IpamConf {
    /// The range sets (one per address family, each tried range by range).
    pub fn range_sets(&self) -> Result<Vec<Vec<Range>>> {
        let mut sets = self.ranges.clone();
        if let Some(single) = &self.single {
            sets.insert(0, vec![single.clone()]);
        }
        if sets.is_empty() || sets.iter().any(Vec::is_empty) {
            return Err(Error::config("ipam: no ranges (set `ranges` or `subnet`)"));
        }
        let sets: Vec<Vec<Range>> = sets
            .iter()
            .enumerate()
            .map(|(i, set)| {
                set.iter()
                    .enumerate()
                    .map(|(j, r)| r.validate().map_err(|e| prefixed(e, i, j)))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        for (i, set) in sets.iter().enumerate() {
            let v4 = set[0].subnet.addr().is_ipv4();
            if set.iter().any(|r| r.subnet.addr().is_ipv4() != v4) {
                return Err(Error::config(format!(
                    "ipam.ranges[{i}]: mixes IPv4 and IPv6"
                )));
            }
            for (a, ra) in set.iter().enumerate() {
                for rb in &set[a + 1..] {
                    if ra.contains(rb.start) || ra.contains(rb.end) || rb.contains(ra.start) {
                        return Err(Error::config(format!(
                            "ipam.ranges[{i}]: ranges {} and {} overlap",
                            ra.subnet, rb.subnet
                        )));
                    }
                }
            }
        }
        Ok(sets)
    }
}

fn prefixed(e: Error, i: usize, j: usize) -> Error {
    Error::config(format!("ipam.ranges[{i}][{j}]: {}", e.msg))
}

impl RangeConf {
    fn validate(&self) -> Result<Range> {
        let net = self.subnet.trunc();
        let v4 = net.addr().is_ipv4();
        let host_bits = if v4 { 32 } else { 128 } - u32::from(net.prefix_len());
        if host_bits < 2 {
            return Err(Error::config(format!(
                "subnet {net}: too small to hold addresses"
            )));
        }
        let first = add(net.network(), 1);
        // IPv4 keeps its broadcast address out of the range; IPv6 has none.
        let last = if v4 {
            add(net.broadcast(), -1)
        } else {
            net.broadcast()
        };
        let start = self.range_start.unwrap_or(first);
        let end = self.range_end.unwrap_or(last);
        for (field, ip) in [("rangeStart", start), ("rangeEnd", end)] {
            if !net.contains(&ip) || ip < first || ip > last {
                return Err(Error::config(format!(
                    "{field} {ip}: not a host address of {net}"
                )));
            }
        }
        if start > end {
            return Err(Error::config(format!(
                "rangeStart {start} is after rangeEnd {end}"
            )));
        }
        let gateway = Some(self.gateway.unwrap_or(first));
        if let Some(gw) = gateway
            && !net.contains(&gw)
        {
            return Err(Error::config(format!("gateway {gw}: outside subnet {net}")));
        }
        Ok(Range {
            subnet: net,
            start,
            end,
            gateway,
        })
    }
}

impl Range {
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip >= self.start && ip <= self.end
    }

    /// The number of addresses the range can hand out (the gateway excluded).
    pub fn capacity(&self) -> u128 {
        let n = to_u128(self.end) - to_u128(self.start) + 1;
        n - u128::from(self.gateway.is_some_and(|g| self.contains(g)))
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `ip + delta`, staying in its family (callers keep it within a subnet).
pub fn add(ip: IpAddr, delta: i64) -> IpAddr {
    let v = to_u128(ip).wrapping_add_signed(i128::from(delta));
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(j: &str) -> IpamConf {
        serde_json::from_str(j).expect("parse")
    }

    #[test]
    fn single_subnet_defaults() {
        let sets = conf(r#"{"type":"x","subnet":"10.1.2.0/24"}"#)
            .range_sets()
            .expect("ok");
        let r = &sets[0][0];
        assert_eq!(r.start.to_string(), "10.1.2.1");
        assert_eq!(r.end.to_string(), "10.1.2.254");
        assert_eq!(
            r.gateway.map(|g| g.to_string()).as_deref(),
            Some("10.1.2.1")
        );
        assert_eq!(r.capacity(), 253);
    }

    #[test]
    fn bad_ranges_name_the_field() {
        let e = conf(r#"{"ranges":[[{"subnet":"10.1.2.0/24","rangeStart":"10.9.0.1"}]]}"#)
            .range_sets()
            .expect_err("bad");
        assert!(e.msg.contains("ranges[0][0]: rangeStart"), "{}", e.msg);
        let e = conf(r#"{"ranges":[[{"subnet":"10.1.2.0/24"},{"subnet":"fd00::/64"}]]}"#)
            .range_sets()
            .expect_err("bad");
        assert!(e.msg.contains("mixes"), "{}", e.msg);
        assert!(conf(r#"{"ranges":[]}"#).range_sets().is_err());
    }
}
