//! nftables through `nft -j`: one JSON batch per call, applied by the kernel as one
//! transaction, and `nft -j list` to read back what is there.
//!
//! No permissively licensed crate speaks nf_tables netlink (rustables is GPL), and the
//! JSON interface is the kernel project's stable machine interface, so the plugins build
//! the batch as JSON and hand it to `nft` once per invocation.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// Finds the `nft` binary: $BERTH_NFT, the usual sbin dirs, then PATH.
fn nft_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_NFT") {
        return PathBuf::from(p);
    }
    for p in ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"] {
        if std::path::Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("nft")
}

/// Applies `commands` (each an object such as `{"add": {"table": ...}}`) atomically.
pub fn apply(commands: Vec<Value>) -> Result<()> {
    start(commands)?.wait()
}

/// A batch handed to `nft` by [`start`], being applied while the caller does other work.
#[derive(Debug)]
pub struct Pending(Option<std::process::Child>);

impl Pending {
    /// Waits for `nft`; its refusal is the error.
    pub fn wait(self) -> Result<()> {
        let Some(child) = self.0 else {
            return Ok(());
        };
        let out = child
            .wait_with_output()
            .map_err(|e| Error::kernel("wait for nft", e))?;
        if !out.status.success() {
            return Err(Error::kernel(
                "nftables batch refused",
                String::from_utf8_lossy(&out.stderr).trim(),
            ));
        }
        Ok(())
    }
}

/// Starts applying `commands`; [`Pending::wait`] tells how it went.
pub fn start(commands: Vec<Value>) -> Result<Pending> {
    if commands.is_empty() {
        return Ok(Pending(None));
    }
    let batch = json!({ "nftables": commands });
    let mut child = Command::new(nft_bin())
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::kernel("run nft", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.to_string().as_bytes())
            .map_err(|e| Error::kernel("write nft batch", e))?;
    }
    Ok(Pending(Some(child)))
}

/// Applies `fast` (the per-attachment changes); when that fails because the table or one
/// of its chains or sets does not exist yet, applies `setup` and `fast` together.
///
/// Creating or rewriting a table's skeleton on every call would cost a kernel commit that
/// waits for an RCU grace period (flushing a chain deletes rules); the skeleton is only
/// written when missing, normally once per node. `setup` must be idempotent, since two
/// plugins may find the table missing at the same time.
pub fn apply_with_setup(fast: Vec<Value>, setup: impl FnOnce() -> Vec<Value>) -> Result<()> {
    match apply(fast.clone()) {
        Ok(()) => Ok(()),
        Err(e) if e.details.contains("No such file or directory") => {
            let mut all = setup();
            all.extend(fast);
            apply(all)
        }
        Err(e) => Err(e),
    }
}

/// The objects of table `family name` (`nft -j list table`), or `None` when it does not
/// exist.
pub fn list_table(family: &str, name: &str) -> Result<Option<Vec<Value>>> {
    let out = Command::new(nft_bin())
        .args(["-j", "list", "table", family, name])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::kernel("run nft", e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(Error::kernel(
            format!("list table {family} {name}"),
            err.trim(),
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::kernel("decode nft -j output", e))?;
    Ok(Some(
        v.get("nftables")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    ))
}

/// The rules of a listed table whose comment equals `comment`, as (chain, handle).
pub fn rules_with_comment(objects: &[Value], comment: &str) -> Vec<(String, u64)> {
    objects
        .iter()
        .filter_map(|o| o.get("rule"))
        .filter(|r| r.get("comment").and_then(Value::as_str) == Some(comment))
        .filter_map(|r| {
            Some((
                r.get("chain")?.as_str()?.to_string(),
                r.get("handle")?.as_u64()?,
            ))
        })
        .collect()
}

/// An `ip`/`ip6` payload match on a saddr/daddr field.
pub fn addr_match(field: &str, v4: bool, op: &str, right: Value) -> Value {
    json!({"match": {"op": op,
        "left": {"payload": {"protocol": if v4 { "ip" } else { "ip6" }, "field": field}},
        "right": right}})
}

/// A CIDR as nft JSON's prefix object.
pub fn prefix(net: &ipnet::IpNet) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}
