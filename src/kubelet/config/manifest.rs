//! Decoding a manifest stream: YAML (or JSON) documents of v1 Pods, ConfigMaps, Secrets and
//! v1 Lists of them, decoded strictly as the API server does with field validation Strict.
//!
//! Owns only the bytes-to-typed-objects step; defaulting, static pod treatment and
//! validation come after it (see `parse`).

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::ManifestError;

/// A decoded object of the stream.
#[derive(Debug)]
pub(crate) enum Object {
    Pod(Box<Pod>),
    ConfigMap(Box<ConfigMap>),
    Secret(Box<Secret>),
}

/// An object with the label its errors carry (`Pod "web"`, or `document 2` without a name).
#[derive(Debug)]
pub(crate) struct Document {
    pub label: String,
    pub object: Object,
}

/// A document of the stream, decoded or rejected.
#[derive(Debug)]
pub(crate) enum Decoded {
    Object(Document),
    Error(ManifestError),
}

/// Decodes every document of `bytes`, in stream order. A stream that is not YAML at all is
/// one error naming the file; a bad document is an error of its own and the others still
/// decode.
pub(crate) fn decode_stream(file: &str, bytes: &[u8]) -> Vec<Decoded> {
    let mut values = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_slice(bytes) {
        match <Value as serde::Deserialize>::deserialize(document) {
            Ok(value) => values.push(value),
            Err(e) => {
                let error = ManifestError::new(file, "", format!("invalid YAML: {e}"));
                return vec![Decoded::Error(error)];
            }
        }
    }
    let mut out = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        // An empty document (a trailing `---`, a file of comments) is skipped, as kubectl does.
        if value.is_null() {
            continue;
        }
        let place = format!("document {}", i + 1);
        decode_value(file, &place, value, true, &mut out);
    }
    out
}

const LIST_KINDS: &[&str] = &["List", "PodList", "ConfigMapList", "SecretList"];

fn decode_value(
    file: &str,
    place: &str,
    mut value: Value,
    lists_allowed: bool,
    out: &mut Vec<Decoded>,
) {
    let Some(map) = value.as_object() else {
        let detail = "not an object: a manifest holds Kubernetes objects";
        out.push(Decoded::Error(ManifestError::new(file, place, detail)));
        return;
    };
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = map
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let label = object_label(&kind, &value, place);
    let fail = |out: &mut Vec<Decoded>, detail: String| {
        out.push(Decoded::Error(ManifestError::new(file, &label, detail)));
    };
    if kind.is_empty() {
        return fail(out, "Object 'Kind' is missing".to_string());
    }
    if api_version != "v1" {
        return fail(out, unsupported(&api_version, &kind));
    }
    match kind.as_str() {
        "Pod" => {
            fix_octal_modes(&mut value);
            match strict::<Pod>(&value) {
                Ok(pod) => out.push(Decoded::Object(Document {
                    label,
                    object: Object::Pod(Box::new(pod)),
                })),
                Err(details) => details.into_iter().for_each(|d| fail(out, d)),
            }
        }
        "ConfigMap" => match strict::<ConfigMap>(&value) {
            Ok(cm) => out.push(Decoded::Object(Document {
                label,
                object: Object::ConfigMap(Box::new(cm)),
            })),
            Err(details) => details.into_iter().for_each(|d| fail(out, d)),
        },
        "Secret" => match strict::<Secret>(&value) {
            Ok(secret) => out.push(Decoded::Object(Document {
                label,
                object: Object::Secret(Box::new(secret)),
            })),
            Err(details) => details.into_iter().for_each(|d| fail(out, d)),
        },
        k if LIST_KINDS.contains(&k) && lists_allowed => {
            let Some(map) = value.as_object_mut() else {
                return;
            };
            for key in map.keys() {
                if !["apiVersion", "kind", "metadata", "items"].contains(&key.as_str())
                    && !map[key].is_null()
                {
                    fail(out, format!("unknown field {key:?}"));
                }
            }
            let items = match map.remove("items") {
                Some(Value::Array(items)) => items,
                None | Some(Value::Null) => Vec::new(),
                Some(_) => return fail(out, "items: Invalid value: must be a list".to_string()),
            };
            for (j, item) in items.into_iter().enumerate() {
                decode_value(file, &format!("{place}, items[{j}]"), item, false, out);
            }
        }
        _ => fail(out, unsupported(&api_version, &kind)),
    }
}

fn unsupported(api_version: &str, kind: &str) -> String {
    format!(
        "unsupported object {api_version:?} {kind:?}: manifests hold v1 Pods, ConfigMaps, Secrets and Lists of them"
    )
}

/// `Pod "web"`, `Pod "kube-system/web"`, or the document's place when it has no name.
fn object_label(kind: &str, value: &Value, place: &str) -> String {
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.is_empty() || kind.is_empty() {
        return place.to_string();
    }
    if namespace.is_empty() {
        format!("{kind} {name:?}")
    } else {
        format!("{kind} \"{namespace}/{name}\"")
    }
}

/// Decodes `value` as `T`, then names every field of the input that `T` does not know, as
/// the API server's strict decoding does (`unknown field "spec.containers[0].imagePullPolcy"`).
/// The type errors carry the field path (`spec.containers[0].ports[0].containerPort: invalid
/// type: ...`) because the typed decode runs through the YAML deserializer, which tracks it.
pub(crate) fn strict<T: DeserializeOwned + Serialize>(value: &Value) -> Result<T, Vec<String>> {
    let text = serde_yaml_ng::to_string(value).map_err(|e| vec![e.to_string()])?;
    let typed: T = serde_yaml_ng::from_str(&text).map_err(|e| vec![without_location(&e)])?;
    let known = serde_json::to_value(&typed).map_err(|e| vec![e.to_string()])?;
    let mut unknown = Vec::new();
    unknown_fields(value, &known, "", &mut unknown);
    if unknown.is_empty() {
        Ok(typed)
    } else {
        Err(unknown
            .into_iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect())
    }
}

/// The line and column point into the re-serialized text, not the user's file: drop them
/// and keep the field path, which does point into the user's document.
fn without_location(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Fields present (and not null) in `input` but absent from `known`, the same object after
/// a decode and encode round trip through the typed struct.
pub(crate) fn unknown_fields(input: &Value, known: &Value, path: &str, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(inp), Value::Object(kn)) => {
            for (key, value) in inp {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match kn.get(key) {
                    None => out.push(child),
                    Some(k) => unknown_fields(value, k, &child, out),
                }
            }
        }
        (Value::Array(inp), Value::Array(kn)) => {
            for (i, (a, b)) in inp.iter().zip(kn).enumerate() {
                unknown_fields(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// File modes written as `0644`: YAML 1.1 (which the API machinery's YAML reader speaks)
/// reads them as octal, YAML 1.2 as the string "0644". Read them as the API server does.
fn fix_octal_modes(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if (key == "defaultMode" || key == "mode")
                    && let Some(mode) = v.as_str().and_then(octal)
                {
                    *v = Value::from(mode);
                    continue;
                }
                fix_octal_modes(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(fix_octal_modes),
        _ => {}
    }
}

fn octal(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('0')?;
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    i64::from_str_radix(digits, 8).ok()
}
