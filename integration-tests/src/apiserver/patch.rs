//! The three patch types the real server takes for the resources a node agent writes:
//! JSON merge patch (RFC 7386), strategic merge patch with the merge keys of the lists
//! kubelet patches, and JSON patch (RFC 6902, by the json-patch crate). Pure JSON in, JSON
//! out; the caller turns errors into 422 / 400.

use serde_json::{Map, Value};

/// A patch that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("the body of the patch is not valid JSON: {0}")]
    Body(String),
    #[error("json patch: {0}")]
    JsonPatch(String),
    #[error("strategic merge patch: {0}")]
    Strategic(String),
}

/// How a list at a path merges: by a key field, as a set of primitives, or replaced whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    Key(&'static str),
    PrimitiveSet,
    Replace,
}

/// The patchMergeKey / patchStrategy tags of k8s.io/api for the lists a node agent patches.
/// Paths are field names from the object root, list indices left out.
fn strategy(path: &str) -> ListStrategy {
    use ListStrategy::*;
    match path {
        "status.conditions" | "status.addresses" => Key("type"),
        "status.containerStatuses"
        | "status.initContainerStatuses"
        | "status.ephemeralContainerStatuses" => Key("name"),
        "status.podIPs" | "status.hostIPs" => Key("ip"),
        "status.resourceClaimStatuses" => Key("name"),
        "metadata.ownerReferences" => Key("uid"),
        "metadata.finalizers" => PrimitiveSet,
        "spec.containers" | "spec.initContainers" | "spec.ephemeralContainers" | "spec.volumes" => {
            Key("name")
        }
        "spec.imagePullSecrets" => Key("name"),
        p if p.ends_with("Containers.env") || p == "spec.containers.env" => Key("name"),
        p if p.ends_with("ontainers.ports") => Key("containerPort"),
        p if p.ends_with("ontainers.volumeMounts") => Key("mountPath"),
        "spec.ports" => Key("port"),
        _ => Replace,
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// RFC 6902 JSON patch; a failed `test` fails the whole patch.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Body(e.to_string()))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError::JsonPatch(e.to_string()))
}

/// Strategic merge patch, honouring `$patch: replace|delete`, `$setElementOrder/<list>`
/// and `$deleteFromPrimitiveList/<list>`; `$retainKeys` is dropped.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Strategic(
            "the patch is not a JSON object".into(),
        ));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        merge_map(t, p, "")?;
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn merge_map(
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), PatchError> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip(patch);
        return Ok(());
    }
    for (k, v) in patch {
        if k.starts_with('$') {
            if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
                let drop: Vec<&Value> =
                    v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
                if let Some(Value::Array(items)) = target.get_mut(list) {
                    items.retain(|i| !drop.contains(&i));
                }
            }
            continue;
        }
        let here = join(path, k);
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(pm) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.remove(k);
                } else if let Some(Value::Object(tm)) = target.get_mut(k) {
                    merge_map(tm, pm, &here)?;
                } else {
                    let mut fresh = Map::new();
                    merge_map(&mut fresh, pm, &here)?;
                    target.insert(k.clone(), Value::Object(fresh));
                }
            }
            Value::Array(pl) => {
                let old = match target.remove(k) {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                target.insert(k.clone(), Value::Array(merge_list(old, pl, &here)?));
            }
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
    for (k, order) in patch {
        if let (Some(list), Value::Array(order)) = (k.strip_prefix("$setElementOrder/"), order)
            && let Some(Value::Array(items)) = target.get_mut(list)
        {
            reorder(items, order, strategy(&join(path, list)));
        }
    }
    Ok(())
}

fn merge_list(mut old: Vec<Value>, patch: &[Value], path: &str) -> Result<Vec<Value>, PatchError> {
    let replace_all = patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"));
    match strategy(path) {
        _ if replace_all => Ok(patch
            .iter()
            .filter(|e| e.get("$patch").is_none())
            .map(strip_value)
            .collect()),
        ListStrategy::Replace => Ok(patch.iter().map(strip_value).collect()),
        ListStrategy::PrimitiveSet => {
            for p in patch {
                if !old.contains(p) {
                    old.push(p.clone());
                }
            }
            Ok(old)
        }
        ListStrategy::Key(key) => {
            for p in patch {
                let Value::Object(pm) = p else {
                    return Err(PatchError::Strategic(format!(
                        "{path}: list item is not an object"
                    )));
                };
                let id = pm.get(key).ok_or_else(|| {
                    PatchError::Strategic(format!("{path}: item without merge key {key:?}"))
                })?;
                let pos = old.iter().position(|o| o.get(key) == Some(id));
                let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        old.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        if let Value::Object(om) = &mut old[i] {
                            merge_map(om, pm, path)?;
                        }
                    }
                    (None, false) => {
                        let mut fresh = Map::new();
                        merge_map(&mut fresh, pm, path)?;
                        old.push(Value::Object(fresh));
                    }
                }
            }
            Ok(old)
        }
    }
}

/// Orders `items` as `$setElementOrder` lists them; items it does not name keep their
/// relative order after the named ones.
fn reorder(items: &mut Vec<Value>, order: &[Value], how: ListStrategy) {
    let id = |v: &Value| -> Value {
        match how {
            ListStrategy::Key(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let mut rest = std::mem::take(items);
    for o in order {
        let want = id(o);
        if let Some(i) = rest.iter().position(|v| id(v) == want) {
            items.push(rest.remove(i));
        }
    }
    items.extend(rest);
}

fn strip(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), strip_value(v)))
        .collect()
}

fn strip_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_value).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_merge_by_type_and_follow_set_element_order() {
        let mut pod = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False"}]}});
        let patch = json!({"status": {
            "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}, {"type": "PodScheduled"}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}],
            "phase": "Running"}});
        strategic_merge_patch(&mut pod, &patch).unwrap();
        assert_eq!(pod["status"]["phase"], "Running");
        let types: Vec<_> = pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].as_str().unwrap(), c["status"].as_str().unwrap()))
            .collect();
        assert_eq!(
            types,
            [
                ("Initialized", "True"),
                ("Ready", "True"),
                ("PodScheduled", "True")
            ]
        );
    }

    #[test]
    fn directives_delete_replace_and_atomic_lists() {
        let mut node = json!({"status": {"images": [{"names": ["a"]}], "addresses": [
            {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "h"}]}});
        let patch = json!({"status": {"images": [{"names": ["b"]}],
            "addresses": [{"type": "Hostname", "$patch": "delete"}]}});
        strategic_merge_patch(&mut node, &patch).unwrap();
        assert_eq!(node["status"]["images"], json!([{"names": ["b"]}]));
        assert_eq!(
            node["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.1"}])
        );
        let patch = json!({"status": {"addresses": [{"$patch": "replace"}, {"type": "X", "address": "y"}]}});
        strategic_merge_patch(&mut node, &patch).unwrap();
        assert_eq!(
            node["status"]["addresses"],
            json!([{"type": "X", "address": "y"}])
        );
        strategic_merge_patch(&mut node, &json!({"metadata": {"finalizers": ["f"]}})).unwrap();
        strategic_merge_patch(&mut node, &json!({"metadata": {"finalizers": ["f", "g"]}})).unwrap();
        assert_eq!(node["metadata"]["finalizers"], json!(["f", "g"]));
    }

    #[test]
    fn json_patch_test_op_guards() {
        let mut o = json!({"a": 1});
        assert!(json_patch(&mut o, &json!([{"op": "test", "path": "/a", "value": 2}])).is_err());
        json_patch(&mut o, &json!([{"op": "test", "path": "/a", "value": 1}, {"op": "replace", "path": "/a", "value": 3}])).unwrap();
        assert_eq!(o, json!({"a": 3}));
    }
}
