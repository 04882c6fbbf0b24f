//! The network configuration list (`*.conflist`, or a single-plugin `*.conf`/`*.json`),
//! as the spec defines it, and the per-plugin configuration built from it.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::error::CniError;

/// A validated network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// The file it was read from.
    pub path: PathBuf,
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's own configuration object, in chain order.
    pub plugins: Vec<Value>,
}

impl NetworkList {
    /// Parses and validates one file's bytes. A `.conf`/`.json` file holds one plugin.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, CniError> {
        let bad = |reason: String| CniError::BadConfig {
            path: path.to_path_buf(),
            reason,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        let str_field = |k: &str| -> Result<String, CniError> {
            obj.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .ok_or_else(|| bad(format!("field {k:?}: required string")))
        };
        let name = str_field("name")?;
        let cni_version = str_field("cniVersion")?;
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(bad(format!(
                "name {name:?}: only letters, digits, '_', '.', '-'"
            )));
        }
        let plugins = match obj.get("plugins") {
            Some(Value::Array(list)) => list.clone(),
            Some(_) => return Err(bad("field \"plugins\": must be an array".into())),
            None if obj.contains_key("type") => vec![v.clone()],
            None => return Err(bad("field \"plugins\": required".into())),
        };
        if plugins.is_empty() {
            return Err(bad("field \"plugins\": empty".into()));
        }
        for (i, p) in plugins.iter().enumerate() {
            let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
            if ty.is_empty() || ty.contains('/') || ty.starts_with('.') {
                return Err(bad(format!("plugins[{i}].type {ty:?}: not a plugin name")));
            }
        }
        let flag = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
        Ok(Self {
            path: path.to_path_buf(),
            name,
            cni_version,
            disable_check: flag("disableCheck"),
            disable_gc: flag("disableGC"),
            plugins,
        })
    }

    /// The lexically first valid configuration in `dir`, as libcni and containerd pick it.
    /// Invalid files are skipped with a warning.
    pub fn load_dir(dir: &Path) -> Result<Self, CniError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| CniError::BadConfig {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        for f in files {
            let bytes = match std::fs::read(&f) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %f.display(), "skipping unreadable CNI config: {e}");
                    continue;
                }
            };
            match Self::parse(&f, &bytes) {
                Ok(list) => return Ok(list),
                Err(e) => tracing::warn!("skipping CNI config: {e}"),
            }
        }
        Err(CniError::NoConfig {
            dir: dir.to_path_buf(),
        })
    }

    /// The plugin type at `index`.
    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Plugin `index`'s stdin: its object plus the list's name and version, the previous
    /// result, and the runtime's capability arguments that this plugin declared.
    pub fn plugin_conf(
        &self,
        index: usize,
        prev: Option<&Value>,
        capability_args: &Map<String, Value>,
        extra: &Map<String, Value>,
    ) -> Value {
        let mut conf = self.plugins[index].clone();
        let caps: Vec<String> = conf
            .get("capabilities")
            .and_then(Value::as_object)
            .map(|c| {
                c.iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(obj) = conf.as_object_mut() {
            obj.insert("name".into(), json!(self.name));
            obj.insert("cniVersion".into(), json!(self.cni_version));
            obj.remove("prevResult");
            if let Some(p) = prev {
                obj.insert("prevResult".into(), p.clone());
            }
            let rc: Map<String, Value> = capability_args
                .iter()
                .filter(|(k, _)| caps.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !rc.is_empty() {
                obj.insert("runtimeConfig".into(), Value::Object(rc));
            }
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        conf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_single_plugin_files() {
        let l = NetworkList::parse(
            Path::new("a.conflist"),
            br#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"berth-bridge"},{"type":"berth-portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .expect("list");
        assert_eq!(l.plugins.len(), 2);
        let caps: Map<String, Value> =
            serde_json::from_value(json!({"portMappings": [{"hostPort": 1}], "bandwidth": {}}))
                .expect("caps");
        let c0 = l.plugin_conf(0, None, &caps, &Map::new());
        assert!(c0.get("runtimeConfig").is_none());
        let prev = json!({"cniVersion":"1.0.0"});
        let c1 = l.plugin_conf(1, Some(&prev), &caps, &Map::new());
        assert_eq!(c1["name"], "pods");
        assert_eq!(c1["prevResult"], prev);
        assert_eq!(c1["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
        assert!(c1["runtimeConfig"].get("bandwidth").is_none());
        let one = NetworkList::parse(
            Path::new("b.conf"),
            br#"{"cniVersion":"1.0.0","name":"one","type":"berth-bridge"}"#,
        )
        .expect("conf");
        assert_eq!(one.plugin_type(0), "berth-bridge");
    }

    #[test]
    fn rejects_bad_lists_naming_the_field() {
        for (bytes, want) in [
            (&b"nope"[..], "not JSON"),
            (br#"{"cniVersion":"1.0.0","plugins":[]}"#, "\"name\""),
            (
                br#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
                "empty",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"../evil"}]}"#,
                "plugins[0].type",
            ),
        ] {
            let e = NetworkList::parse(Path::new("f"), bytes).expect_err("bad");
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
