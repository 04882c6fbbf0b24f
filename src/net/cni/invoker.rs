//! The invoker: ADD, DEL, CHECK, GC and STATUS of one network for pod attachments.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::cache::{Cache, CacheEntry, KIND};
use super::conflist::NetworkList;
use super::error::CniError;
use super::exec::{self, Call};

/// Where the invoker finds its configuration and plugins and keeps its cache.
#[derive(Debug, Clone)]
pub struct InvokerConfig {
    /// The network configuration directory, /etc/cni/net.d by default.
    pub conf_dir: PathBuf,
    /// Plugin directories, searched in order (also the plugins' CNI_PATH).
    pub bin_dirs: Vec<PathBuf>,
    /// The result cache, /var/lib/berth/cni/results by default.
    pub cache_dir: PathBuf,
    /// How long one plugin may run before it is killed.
    pub timeout: Duration,
}

impl Default for InvokerConfig {
    fn default() -> Self {
        Self {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/usr/lib/berth/cni".into(), "/opt/cni/bin".into()],
            cache_dir: "/var/lib/berth/cni/results".into(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// One pod's attachment to the network.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    pub container_id: String,
    /// The pod's network namespace; `None` on DEL when it is already gone.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS` pairs (e.g. K8S_POD_NAMESPACE, K8S_POD_NAME).
    pub args: Vec<(String, String)>,
    /// Capability arguments, e.g. `portMappings`, passed as runtimeConfig to the plugins
    /// that declare the capability.
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    pub fn new(container_id: &str, netns: Option<&Path>, ifname: &str) -> Self {
        Self {
            container_id: container_id.into(),
            netns: netns.map(Path::to_path_buf),
            ifname: ifname.into(),
            args: Vec::new(),
            capability_args: Map::new(),
        }
    }

    fn validate(&self) -> Result<(), CniError> {
        let id_ok = self
            .container_id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && self
                .container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !id_ok {
            return Err(CniError::BadAttachment(format!(
                "container id {:?}: letters, digits, '_', '.', '-' only",
                self.container_id
            )));
        }
        let if_ok = !self.ifname.is_empty()
            && self.ifname.len() < 16
            && !matches!(self.ifname.as_str(), "." | "..")
            && !self
                .ifname
                .bytes()
                .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace());
        if !if_ok {
            return Err(CniError::BadAttachment(format!("ifname {:?}", self.ifname)));
        }
        for (k, v) in &self.args {
            if k.contains(['=', ';']) || v.contains(';') {
                return Err(CniError::BadAttachment(format!(
                    "CNI_ARGS entry {k:?}={v:?}"
                )));
            }
        }
        Ok(())
    }

    fn args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Runs the network's plugins for attachments.
#[derive(Debug, Clone)]
pub struct Invoker {
    cfg: InvokerConfig,
    cache: Cache,
}

fn list_config(list: &NetworkList) -> Value {
    json!({"cniVersion": list.cni_version, "name": list.name, "plugins": list.plugins,
           "disableCheck": list.disable_check, "disableGC": list.disable_gc})
}

fn supports_gc(version: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(version) >= vec![1, 1, 0]
}

impl Invoker {
    pub fn new(cfg: InvokerConfig) -> Self {
        let cache = Cache::new(&cfg.cache_dir);
        Self { cfg, cache }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The network list currently configured in the configuration directory.
    pub fn network(&self) -> Result<NetworkList, CniError> {
        NetworkList::load_dir(&self.cfg.conf_dir)
    }

    async fn call(
        &self,
        list: &NetworkList,
        index: usize,
        verb: &'static str,
        att: &Attachment,
        prev: Option<&Value>,
        extra: &Map<String, Value>,
    ) -> Result<Option<Value>, CniError> {
        let conf = list.plugin_conf(index, prev, &att.capability_args, extra);
        let args = att.args_string();
        exec::run(Call {
            plugin: list.plugin_type(index),
            bin_dirs: &self.cfg.bin_dirs,
            verb,
            container_id: &att.container_id,
            netns: att.netns.as_deref(),
            ifname: &att.ifname,
            args: &args,
            stdin: serde_json::to_vec(&conf).unwrap_or_default(),
            timeout: self.cfg.timeout,
        })
        .await
    }

    /// ADD through the whole chain; returns the final result. On failure the chain is
    /// torn down (DEL) before the error is returned.
    pub async fn add(&self, att: &Attachment) -> Result<Value, CniError> {
        att.validate()?;
        if att.netns.is_none() {
            return Err(CniError::BadAttachment("ADD needs the pod's netns".into()));
        }
        let list = self.network()?;
        let mut entry = CacheEntry {
            kind: KIND.into(),
            network: list.name.clone(),
            container_id: att.container_id.clone(),
            ifname: att.ifname.clone(),
            netns: att.netns.clone(),
            cni_args: att.args.clone(),
            capability_args: att.capability_args.clone(),
            config: list_config(&list),
            result: None,
        };
        self.cache.put(&entry)?;
        let span =
            tracing::info_span!("cni_add", network = %list.name, container = %att.container_id);
        let mut prev: Option<Value> = None;
        for i in 0..list.plugins.len() {
            match self
                .call(&list, i, "ADD", att, prev.as_ref(), &Map::new())
                .instrument(span.clone())
                .await
            {
                Ok(Some(r)) => prev = Some(r),
                Ok(None) => {
                    let e = CniError::BadOutput {
                        plugin: list.plugin_type(i).into(),
                        verb: "ADD",
                        container: att.container_id.clone(),
                        reason: "no result".into(),
                    };
                    self.rollback(&list, att, prev.as_ref())
                        .instrument(span.clone())
                        .await;
                    return Err(e);
                }
                Err(e) => {
                    self.rollback(&list, att, prev.as_ref())
                        .instrument(span.clone())
                        .await;
                    return Err(e);
                }
            }
        }
        let result = prev.unwrap_or_else(|| json!({"cniVersion": list.cni_version}));
        entry.result = Some(result.clone());
        self.cache.put(&entry)?;
        Ok(result)
    }

    async fn rollback(&self, list: &NetworkList, att: &Attachment, prev: Option<&Value>) {
        if let Err(e) = self.del_chain(list, att, prev).await {
            tracing::warn!("rolling back a failed ADD: {e}");
        } else {
            let _ = self
                .cache
                .remove(&list.name, &att.container_id, &att.ifname);
        }
    }

    async fn del_chain(
        &self,
        list: &NetworkList,
        att: &Attachment,
        prev: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut errors = Vec::new();
        for i in (0..list.plugins.len()).rev() {
            if let Err(e) = self.call(list, i, "DEL", att, prev, &Map::new()).await {
                errors.push(e);
            }
        }
        CniError::all(errors)
    }

    /// DEL through the chain in reverse, with the configuration and result cached at ADD
    /// time when there is an entry, otherwise with the current configuration. Succeeds
    /// when the attachment is already gone.
    pub async fn del(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let cached: Vec<CacheEntry> = self
            .cache
            .all()
            .into_iter()
            .filter(|e| e.container_id == att.container_id && e.ifname == att.ifname)
            .collect();
        if cached.is_empty() {
            let list = self.network()?;
            return self.del_chain(&list, att, None).await;
        }
        let mut errors = Vec::new();
        for e in cached {
            if let Err(err) = self.del_entry(&e, att.netns.as_deref()).await {
                errors.push(err);
            }
        }
        CniError::all(errors)
    }

    async fn del_entry(&self, e: &CacheEntry, netns: Option<&Path>) -> Result<(), CniError> {
        let list = NetworkList::parse(
            &self.cache.dir().join(&e.network),
            &serde_json::to_vec(&e.config).unwrap_or_default(),
        )?;
        let att = Attachment {
            container_id: e.container_id.clone(),
            netns: netns.map(Path::to_path_buf).or_else(|| e.netns.clone()),
            ifname: e.ifname.clone(),
            args: e.cni_args.clone(),
            capability_args: e.capability_args.clone(),
        };
        // A namespace that no longer exists is passed as absent, as the spec allows.
        let att = Attachment {
            netns: att.netns.filter(|p| p.exists()),
            ..att
        };
        self.del_chain(&list, &att, e.result.as_ref()).await?;
        self.cache.remove(&e.network, &e.container_id, &e.ifname)
    }

    /// CHECK through the chain with the cached result.
    pub async fn check(&self, att: &Attachment) -> Result<(), CniError> {
        att.validate()?;
        let list = self.network()?;
        if list.disable_check {
            return Ok(());
        }
        let prev = self
            .cache
            .get(&list.name, &att.container_id, &att.ifname)
            .and_then(|e| e.result)
            .ok_or_else(|| {
                CniError::BadAttachment(format!(
                    "{}/{}: no cached result to check",
                    att.container_id, att.ifname
                ))
            })?;
        for i in 0..list.plugins.len() {
            self.call(&list, i, "CHECK", att, Some(&prev), &Map::new())
                .await?;
        }
        Ok(())
    }

    /// Removes every attachment of the current network that is not in `valid` (pairs of
    /// container id and ifname): DEL for the cached ones, then the plugins' own GC.
    pub async fn gc(&self, valid: &[(String, String)]) -> Result<(), CniError> {
        let list = self.network()?;
        let keep = |id: &str, ifname: &str| valid.iter().any(|(v, f)| v == id && f == ifname);
        let mut errors = Vec::new();
        for e in self.cache.all() {
            if e.network == list.name
                && !keep(&e.container_id, &e.ifname)
                && let Err(err) = self.del_entry(&e, None).await
            {
                errors.push(err);
            }
        }
        if !list.disable_gc && supports_gc(&list.cni_version) {
            let attachments: Vec<Value> = valid
                .iter()
                .map(|(id, ifname)| json!({"containerID": id, "ifname": ifname}))
                .collect();
            let mut extra = Map::new();
            extra.insert(
                "cni.dev/valid-attachments".into(),
                Value::Array(attachments),
            );
            let att = Attachment::new("gc", None, "gc");
            for i in 0..list.plugins.len() {
                if let Err(e) = self.call(&list, i, "GC", &att, None, &extra).await {
                    errors.push(e);
                }
            }
        }
        CniError::all(errors)
    }

    /// STATUS of every plugin of the current network (CNI 1.1 lists only).
    pub async fn status(&self) -> Result<(), CniError> {
        let list = self.network()?;
        if !supports_gc(&list.cni_version) {
            return Ok(());
        }
        let att = Attachment::new("status", None, "status");
        for i in 0..list.plugins.len() {
            self.call(&list, i, "STATUS", &att, None, &Map::new())
                .await?;
        }
        Ok(())
    }
}
