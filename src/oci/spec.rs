//! Reading and checking config.json before anything is created.
//!
//! oci-spec's types reject unknown enum values with a bare serde message; the fields a
//! user most often gets wrong (capability names, seccomp actions, namespace types) are
//! checked here first on the raw JSON so that the error names the field.

use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::Value;

use super::error::{OciError, Result};

/// Every capability name this runtime knows (those of the caps crate, which tracks the
/// kernel's list).
pub fn known_capability(name: &str) -> bool {
    name.parse::<caps::Capability>().is_ok()
}

const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];

const NAMESPACES: &[&str] = &[
    "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
];

/// Reads `<bundle>/config.json` and parses it, with field-naming errors.
pub fn load(id: &str, bundle: &Path) -> Result<Spec> {
    load_with_bytes(id, bundle).map(|(spec, _)| spec)
}

/// [`load`], also returning the file's bytes (what the runtime keeps a copy of).
pub fn load_with_bytes(id: &str, bundle: &Path) -> Result<(Spec, Vec<u8>)> {
    let p = bundle.join("config.json");
    let bytes = std::fs::read(&p).map_err(|source| OciError::Io {
        id: id.into(),
        op: "read",
        path: p.clone(),
        source,
    })?;
    Ok((parse(id, &bytes)?, bytes))
}

/// Parses config.json bytes.
pub fn parse(id: &str, bytes: &[u8]) -> Result<Spec> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| OciError::spec(id, "config.json", format!("not JSON: {e}")))?;
    from_value(id, v)
}

/// Checks and converts config.json already read as JSON.
pub fn from_value(id: &str, v: Value) -> Result<Spec> {
    precheck(id, &v)?;
    serde_json::from_value(v).map_err(|e| OciError::spec(id, "config.json", e.to_string()))
}

fn precheck(id: &str, v: &Value) -> Result<()> {
    let ver = v.get("ociVersion").and_then(Value::as_str).unwrap_or("");
    let major_ok = ver.split('.').next() == Some("1");
    if !major_ok {
        return Err(OciError::spec(
            id,
            "ociVersion",
            format!("{ver:?} is not a 1.x version (1.0.0 to 1.3.0 are accepted)"),
        ));
    }
    if let Some(c) = v
        .pointer("/process/capabilities")
        .and_then(Value::as_object)
    {
        for (set, names) in c {
            let Some(names) = names.as_array() else {
                continue;
            };
            for (i, n) in names.iter().enumerate() {
                let s = n.as_str().unwrap_or("");
                if !known_capability(s) {
                    return Err(OciError::spec(
                        id,
                        format!("process.capabilities.{set}[{i}]"),
                        format!("unknown capability {n}"),
                    ));
                }
            }
        }
    }
    if let Some(sc) = v.pointer("/linux/seccomp") {
        let check = |field: String, a: Option<&Value>| -> Result<()> {
            let s = a.and_then(Value::as_str).unwrap_or("");
            if SECCOMP_ACTIONS.contains(&s) {
                Ok(())
            } else {
                Err(OciError::spec(
                    id,
                    field,
                    format!("unknown seccomp action {s:?} (one of {SECCOMP_ACTIONS:?})"),
                ))
            }
        };
        check(
            "linux.seccomp.defaultAction".into(),
            sc.get("defaultAction"),
        )?;
        for (i, s) in sc
            .get("syscalls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check(
                format!("linux.seccomp.syscalls[{i}].action"),
                s.get("action"),
            )?;
        }
    }
    for (i, ns) in v
        .pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let t = ns.get("type").and_then(Value::as_str).unwrap_or("");
        if !NAMESPACES.contains(&t) {
            return Err(OciError::spec(
                id,
                format!("linux.namespaces[{i}].type"),
                format!("unknown namespace type {t:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Value {
        serde_json::json!({
            "ociVersion": "1.0.0",
            "root": {"path": "rootfs"},
            "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
                "capabilities": {"bounding": ["CAP_CHOWN"]}},
            "linux": {"namespaces": [{"type": "pid"}]}
        })
    }

    #[test]
    fn versions_accepted() {
        for ver in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.0", "1.3.0"] {
            let mut v = base();
            v["ociVersion"] = ver.into();
            parse("c", &serde_json::to_vec(&v).expect("json")).expect(ver);
        }
        let mut v = base();
        v["ociVersion"] = "2.0.0".into();
        assert!(parse("c", &serde_json::to_vec(&v).expect("json")).is_err());
    }

    #[test]
    fn unknown_capability_names_field() {
        let mut v = base();
        v["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_CHOWN", "CAP_NOPE"]);
        let e = parse("c", &serde_json::to_vec(&v).expect("json")).expect_err("bad cap");
        assert!(
            e.to_string().contains("process.capabilities.bounding[1]"),
            "{e}"
        );
    }

    #[test]
    fn bad_seccomp_action_names_field() {
        let mut v = base();
        v["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_EXPLODE"}]});
        let e = parse("c", &serde_json::to_vec(&v).expect("json")).expect_err("bad action");
        assert!(
            e.to_string().contains("linux.seccomp.syscalls[0].action"),
            "{e}"
        );
    }
}
