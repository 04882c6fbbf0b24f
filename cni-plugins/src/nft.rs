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

/// The nftables seam: apply a batch atomically (now, or started in the background) and
/// read a table back. [`NftCli`] is the real one; tests use a recording fake.
pub trait Nft: std::fmt::Debug {
    /// Starts applying `commands` (each an object such as `{"add": {"table": ...}}`) as
    /// one transaction; [`Pending::wait`] tells how it went.
    fn start(&self, commands: Vec<Value>) -> Result<Pending>;

    /// The objects of table `family name` (`nft -j list table`), or `None` when it does
    /// not exist.
    fn list_table(&self, family: &str, name: &str) -> Result<Option<Vec<Value>>>;

    /// Applies `commands` atomically.
    fn apply(&self, commands: Vec<Value>) -> Result<()> {
        self.start(commands)?.wait()
    }

    /// Applies `fast` (the per-attachment changes); when that fails because the table or
    /// one of its chains or sets does not exist yet, applies `setup` and `fast` together.
    ///
    /// Creating or rewriting a table's skeleton on every call would cost a kernel commit
    /// that deletes rules (flushing a chain), which is slow; the skeleton is only written
    /// when missing, normally once per node. `setup` must be idempotent, since two plugins
    /// may find the table missing at the same time.
    fn apply_with_setup(&self, fast: Vec<Value>, setup: &dyn Fn() -> Vec<Value>) -> Result<()> {
        match self.apply(fast.clone()) {
            Ok(()) => Ok(()),
            Err(e) if is_enoent(&e) => {
                let mut all = setup();
                all.extend(fast);
                self.apply(all)
            }
            Err(e) => Err(e),
        }
    }
}

/// True when nftables refused a batch because an object it names does not exist.
pub fn is_enoent(e: &Error) -> bool {
    e.details.contains("No such file or directory")
}

/// A batch being applied.
#[derive(Debug)]
pub enum Pending {
    /// `nft` is running.
    Running(std::process::Child),
    /// Already applied (or refused).
    Done(Result<()>),
}

impl Pending {
    /// Waits for the batch; nftables' refusal is the error.
    pub fn wait(self) -> Result<()> {
        let child = match self {
            Pending::Done(r) => return r,
            Pending::Running(c) => c,
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

/// nftables through the `nft` binary's JSON interface.
#[derive(Debug, Default, Clone, Copy)]
pub struct NftCli;

impl Nft for NftCli {
    fn start(&self, commands: Vec<Value>) -> Result<Pending> {
        if commands.is_empty() {
            return Ok(Pending::Done(Ok(())));
        }
        let batch = json!({ "nftables": commands });
        let mut cmd = Command::new(nft_bin());
        cmd.args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        crate::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| Error::kernel("run nft", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(batch.to_string().as_bytes())
                .map_err(|e| Error::kernel("write nft batch", e))?;
        }
        Ok(Pending::Running(child))
    }

    fn list_table(&self, family: &str, name: &str) -> Result<Option<Vec<Value>>> {
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

/// A recording fake of [`Nft`] for unit tests: every batch is recorded, `list_table`
/// returns `table`, and queued errors are returned by the next applies.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeNft {
    pub batches: std::cell::RefCell<Vec<Vec<Value>>>,
    pub table: Option<Vec<Value>>,
    pub fail: std::cell::RefCell<Vec<Error>>,
}

#[cfg(test)]
impl Nft for FakeNft {
    fn start(&self, commands: Vec<Value>) -> Result<Pending> {
        if commands.is_empty() {
            return Ok(Pending::Done(Ok(())));
        }
        self.batches.borrow_mut().push(commands);
        let mut fail = self.fail.borrow_mut();
        Ok(Pending::Done(if fail.is_empty() {
            Ok(())
        } else {
            Err(fail.remove(0))
        }))
    }

    fn list_table(&self, _family: &str, _name: &str) -> Result<Option<Vec<Value>>> {
        Ok(self.table.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_is_written_only_when_missing() {
        let nft = FakeNft::default();
        let fast = vec![json!({"add": {"element": {}}})];
        let setup = || vec![json!({"add": {"table": {}}})];
        nft.apply_with_setup(fast.clone(), &setup)
            .expect("fast path");
        assert_eq!(nft.batches.borrow().len(), 1);
        nft.fail
            .borrow_mut()
            .push(Error::kernel("refused", "Error: No such file or directory"));
        nft.apply_with_setup(fast.clone(), &setup)
            .expect("setup path");
        let batches = nft.batches.borrow();
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[2], [setup(), fast].concat());
    }
}
