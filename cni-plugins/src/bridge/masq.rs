//! IP masquerade for pods of a bridge network, in berth-bridge's own nftables table.
//!
//! ```text
//! table inet berth-bridge
//!   set pods4/pods6      pod addresses to masquerade, one element per attachment,
//!                        commented `network:container:ifname`
//!   set podnets4/6       the pod CIDRs (interval); traffic to them keeps its source
//!   chain postrouting    nat hook: saddr @pods, daddr not @podnets, not multicast
//!                        -> masquerade
//! ```
//! The chain's two rules are the same for every network. ADD adds only its elements; the
//! skeleton (table, sets, chain, rules: flush + add, so idempotent) is written in the same
//! transaction only when the elements cannot be added because it is missing.

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::error::Result;
use crate::nft::{self, Nft};

pub const TABLE: &str = "berth-bridge";
const FAMILY: &str = "inet";

fn set_name(v4: bool, nets: bool) -> &'static str {
    match (v4, nets) {
        (true, false) => "pods4",
        (false, false) => "pods6",
        (true, true) => "podnets4",
        (false, true) => "podnets6",
    }
}

/// The skeleton: table, sets, chain and its rules.
fn skeleton() -> Vec<Value> {
    let mut cmds = vec![json!({"add": {"table": {"family": FAMILY, "name": TABLE}}})];
    for v4 in [true, false] {
        let ty = if v4 { "ipv4_addr" } else { "ipv6_addr" };
        cmds.push(json!({"add": {"set": {"family": FAMILY, "table": TABLE,
            "name": set_name(v4, false), "type": ty}}}));
        cmds.push(json!({"add": {"set": {"family": FAMILY, "table": TABLE,
            "name": set_name(v4, true), "type": ty, "flags": ["interval"]}}}));
    }
    cmds.push(
        json!({"add": {"chain": {"family": FAMILY, "table": TABLE, "name": "postrouting",
        "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}),
    );
    cmds.push(
        json!({"flush": {"chain": {"family": FAMILY, "table": TABLE, "name": "postrouting"}}}),
    );
    for v4 in [true, false] {
        let mcast = if v4 { ("224.0.0.0", 4) } else { ("ff00::", 8) };
        cmds.push(json!({"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": "postrouting",
            "expr": [
                nft::addr_match("saddr", v4, "==", json!(format!("@{}", set_name(v4, false)))),
                nft::addr_match("daddr", v4, "!=", json!(format!("@{}", set_name(v4, true)))),
                nft::addr_match("daddr", v4, "!=", json!({"prefix": {"addr": mcast.0, "len": mcast.1}})),
                {"masquerade": null}
            ]}}}));
    }
    cmds
}

fn elem(v4: bool, nets: bool, val: Value) -> Value {
    json!({"element": {"family": FAMILY, "table": TABLE, "name": set_name(v4, nets), "elem": [val]}})
}

/// An ADD started by [`start_add`].
#[derive(Debug)]
pub struct PendingAdd {
    cmds: Vec<Value>,
    pending: nft::Pending,
}

/// Starts [`add`] so that the caller can configure links meanwhile.
pub fn start_add(nft: &dyn Nft, addrs: &[IpNet], tag: &str) -> Result<PendingAdd> {
    let cmds = add_cmds(addrs, tag);
    let pending = nft.start(cmds.clone())?;
    Ok(PendingAdd { cmds, pending })
}

impl PendingAdd {
    /// Waits; when the skeleton was missing, writes it with the elements.
    pub fn wait(self, nft: &dyn Nft) -> Result<()> {
        match self.pending.wait() {
            Err(e) if nft::is_enoent(&e) => {
                let mut all = skeleton();
                all.extend(self.cmds);
                nft.apply(all)
            }
            other => other,
        }
    }
}

fn add_cmds(addrs: &[IpNet], tag: &str) -> Vec<Value> {
    let mut cmds = Vec::new();
    for a in addrs {
        let v4 = a.addr().is_ipv4();
        cmds.push(json!({"add": elem(v4, true, nft::prefix(a))}));
        let val = json!({"elem": {"val": a.addr().to_string(), "comment": tag}});
        cmds.push(json!({"add": elem(v4, false, val)}));
    }
    cmds
}

/// Masquerades traffic from `addrs` (the pod's addresses with their prefix) that leaves
/// their networks.
pub fn add(nft: &dyn Nft, addrs: &[IpNet], tag: &str) -> Result<()> {
    nft.apply_with_setup(add_cmds(addrs, tag), &skeleton)
}

/// Stops masquerading for the attachment `tag`. With `addrs` known (from prevResult) the
/// elements are deleted directly; otherwise they are found by their comment.
pub fn del(nft: &dyn Nft, addrs: Option<&[IpNet]>, tag: &str) -> Result<()> {
    match addrs {
        Some(a) => start_del(nft, a)?.wait(nft),
        None => delete_elems(nft, &tagged(nft, |t| t == tag)?),
    }
}

/// A deletion started by [`start_del`].
#[derive(Debug)]
pub struct PendingDel {
    ips: Vec<(bool, String)>,
    pending: nft::Pending,
}

/// Starts deleting the elements of `addrs`, so that the caller can remove links meanwhile.
pub fn start_del(nft: &dyn Nft, addrs: &[IpNet]) -> Result<PendingDel> {
    let ips: Vec<(bool, String)> = addrs
        .iter()
        .map(|a| (a.addr().is_ipv4(), a.addr().to_string()))
        .collect();
    let pending = nft.start(ips.iter().map(delete_cmd).collect())?;
    Ok(PendingDel { ips, pending })
}

impl PendingDel {
    pub fn wait(self, nft: &dyn Nft) -> Result<()> {
        match self.pending.wait() {
            Err(e) if nft::is_enoent(&e) => retry_each(nft, &self.ips),
            other => other,
        }
    }
}

/// Removes the elements of network `network` whose attachment `keep` rejects.
pub fn gc(nft: &dyn Nft, network: &str, keep: impl Fn(&str, &str) -> bool) -> Result<()> {
    let prefix = format!("{network}:");
    let stale = tagged(nft, |t| {
        t.strip_prefix(&prefix)
            .and_then(|rest| rest.rsplit_once(':'))
            .is_some_and(|(id, ifname)| !keep(id, ifname))
    })?;
    delete_elems(nft, &stale)
}

/// The pod addresses whose comment satisfies `want`.
fn tagged(nft: &dyn Nft, want: impl Fn(&str) -> bool) -> Result<Vec<(bool, String)>> {
    let Some(objs) = nft.list_table(FAMILY, TABLE)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for o in &objs {
        let Some(set) = o.get("set") else { continue };
        let name = set.get("name").and_then(Value::as_str).unwrap_or_default();
        let v4 = match name {
            "pods4" => true,
            "pods6" => false,
            _ => continue,
        };
        for e in set
            .get("elem")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(inner) = e.get("elem") else { continue };
            let comment = inner
                .get("comment")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if want(comment)
                && let Some(val) = inner.get("val").and_then(Value::as_str)
            {
                out.push((v4, val.to_string()));
            }
        }
    }
    Ok(out)
}

fn delete_cmd((v4, ip): &(bool, String)) -> Value {
    json!({"delete": elem(*v4, false, json!(ip))})
}

/// Deletes pod-address elements; ones already gone are not an error.
fn delete_elems(nft: &dyn Nft, ips: &[(bool, String)]) -> Result<()> {
    if ips.is_empty() {
        return Ok(());
    }
    match nft.apply(ips.iter().map(delete_cmd).collect()) {
        Err(e) if nft::is_enoent(&e) => retry_each(nft, ips),
        other => other,
    }
}

/// The batch is all-or-nothing: when one element (or the table) is gone, delete each
/// element on its own, ignoring the ones already gone.
fn retry_each(nft: &dyn Nft, ips: &[(bool, String)]) -> Result<()> {
    for ip in ips {
        if let Err(e) = nft.apply(vec![delete_cmd(ip)])
            && !nft::is_enoent(&e)
        {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::nft::FakeNft;

    fn set(name: &str, elems: &[(&str, &str)]) -> Value {
        json!({"set": {"family": "inet", "table": TABLE, "name": name, "type": "ipv4_addr",
            "elem": elems.iter().map(|(v, c)| json!({"elem": {"val": v, "comment": c}})).collect::<Vec<_>>()}})
    }

    #[test]
    fn gc_deletes_only_invalid_attachments_of_its_network() {
        let nft = FakeNft {
            table: Some(vec![set(
                "pods4",
                &[
                    ("10.0.0.2", "net:a:eth0"),
                    ("10.0.0.3", "net:b:eth0"),
                    ("10.9.0.2", "other:c:eth0"),
                ],
            )]),
            ..Default::default()
        };
        gc(&nft, "net", |id, ifname| id == "a" && ifname == "eth0").expect("gc");
        let batches = nft.batches.borrow();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].len(), 1);
        assert_eq!(batches[0][0]["delete"]["element"]["elem"][0], "10.0.0.3");
    }

    #[test]
    fn del_is_idempotent_when_elements_are_gone() {
        let nft = FakeNft::default();
        let gone = || {
            Error::kernel(
                "refused",
                "Error: Could not process rule: No such file or directory",
            )
        };
        nft.fail.borrow_mut().extend([gone(), gone(), gone()]);
        let addrs: Vec<IpNet> = vec![
            "10.0.0.2/24".parse().expect("a"),
            "fd00::2/64".parse().expect("b"),
        ];
        del(&nft, Some(&addrs), "net:a:eth0").expect("second DEL succeeds");
        // One batch for both, then one per element after the refusal.
        assert_eq!(nft.batches.borrow().len(), 3);
    }

    #[test]
    fn add_writes_the_skeleton_only_when_missing() {
        let nft = FakeNft::default();
        let addrs: Vec<IpNet> = vec!["10.0.0.2/24".parse().expect("a")];
        add(&nft, &addrs, "net:a:eth0").expect("add");
        let b = nft.batches.borrow();
        assert_eq!(b.len(), 1);
        assert!(
            b[0].iter().all(|c| c["add"].get("element").is_some()),
            "{:?}",
            b[0]
        );
    }
}
