//! A pod network in memory.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use super::lock;
use crate::net::cni::{Attachment, CniError};
use crate::runtime::sandbox::{CniFuture, PodNetwork};

/// What the network's fake knows and was asked.
#[derive(Debug, Default)]
pub struct CniWorld {
    pub calls: Vec<String>,
    pub fail_add: bool,
    pub fail_del: bool,
    /// The pods attached now.
    pub attached: BTreeSet<String>,
}

/// A pod network in memory; each ADD gives the next 10.88.0.x.
#[derive(Debug, Clone, Default)]
pub struct FakeCni(pub Arc<Mutex<CniWorld>>);

impl FakeCni {
    pub fn world(&self) -> MutexGuard<'_, CniWorld> {
        lock(&self.0)
    }

    pub fn calls(&self) -> Vec<String> {
        self.world().calls.clone()
    }
}

fn plugin_error(verb: &'static str, container: &str) -> CniError {
    CniError::Plugin {
        plugin: "fake".into(),
        verb,
        container: container.into(),
        code: 11,
        msg: format!("{verb} refused by the test"),
        details: String::new(),
    }
}

impl PodNetwork for FakeCni {
    fn loopback_up(&self, netns: &Path) -> std::io::Result<()> {
        self.world().calls.push(format!("lo {}", netns.display()));
        Ok(())
    }

    fn add<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, Value> {
        let mut w = self.world();
        w.calls.push(format!("add {}", att.container_id));
        let r = if w.fail_add {
            Err(plugin_error("ADD", &att.container_id))
        } else {
            w.attached.insert(att.container_id.clone());
            let n = w.calls.len();
            Ok(json!({"ips": [{"address": format!("10.88.0.{n}/16")}]}))
        };
        Box::pin(std::future::ready(r))
    }

    fn del<'a>(&'a self, att: &'a Attachment) -> CniFuture<'a, ()> {
        let mut w = self.world();
        w.calls.push(format!("del {}", att.container_id));
        let r = if w.fail_del {
            Err(plugin_error("DEL", &att.container_id))
        } else {
            w.attached.remove(&att.container_id);
            Ok(())
        };
        Box::pin(std::future::ready(r))
    }
}
