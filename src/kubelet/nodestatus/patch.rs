//! What an update sends (upstream nodeStatusHasChanged and PatchNodeStatus): whether the
//! status changed apart from heartbeats, and the two-way strategic merge patch of
//! nodes/status from the Node as read to the Node as it should be, carrying only what
//! changed. Conditions merge by `type` (with `$setElementOrder`, as
//! CreateTwoWayMergePatch writes it); addresses are replaced whole because their merge key
//! is not unique (fixupPatchForNodeStatusAddresses); the spec is never sent.

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use serde_json::{Map, Value, json};

use super::resources::from_quantities;

/// nodeStatusHasChanged: conditions compared by type without their heartbeat times,
/// quantities by value, everything else as is.
pub fn node_status_has_changed(old: Option<&NodeStatus>, new: Option<&NodeStatus>) -> bool {
    let (old, new) = match (old, new) {
        (None, None) => return false,
        (Some(o), Some(n)) => (o, n),
        _ => return true,
    };
    let conds = |s: &NodeStatus| {
        let mut c: Vec<NodeCondition> = s.conditions.clone().unwrap_or_default();
        c.sort_by(|a, b| a.type_.cmp(&b.type_));
        for x in &mut c {
            x.last_heartbeat_time = None;
        }
        c
    };
    if conds(old) != conds(new) {
        return true;
    }
    let rest = |s: &NodeStatus| NodeStatus {
        conditions: None,
        capacity: None,
        allocatable: None,
        ..s.clone()
    };
    let res = |m: &Option<_>| m.as_ref().map(from_quantities);
    rest(old) != rest(new)
        || res(&old.capacity) != res(&new.capacity)
        || res(&old.allocatable) != res(&new.allocatable)
}

/// preparePatchBytesforNodeStatus: the strategic merge patch from `old` to `new` with
/// `new`'s spec reset to `old`'s; `None` when nothing differs.
pub fn node_status_patch(old: &Node, new: &Node) -> Option<Value> {
    let mut diff_node = new.clone();
    diff_node.spec = old.spec.clone();
    let o = serde_json::to_value(old).ok()?;
    let n = serde_json::to_value(&diff_node).ok()?;
    let patch = diff_objects(&o, &n, "")?;
    Some(Value::Object(patch))
}

fn diff_objects(old: &Value, new: &Value, path: &str) -> Option<Map<String, Value>> {
    let empty = Map::new();
    let om = old.as_object().unwrap_or(&empty);
    let nm = new.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for (k, nv) in nm {
        let p = format!("{path}/{k}");
        match om.get(k) {
            Some(ov) if ov == nv => {}
            Some(ov) if ov.is_object() && nv.is_object() => {
                if let Some(d) = diff_objects(ov, nv, &p) {
                    out.insert(k.clone(), Value::Object(d));
                }
            }
            ov => match (p.as_str(), nv) {
                ("/status/addresses", Value::Array(items))
                    if ov.and_then(Value::as_array).is_some_and(|a| !a.is_empty()) =>
                {
                    let mut v = vec![json!({"$patch": "replace"})];
                    v.extend(items.iter().cloned());
                    out.insert(k.clone(), Value::Array(v));
                }
                ("/status/conditions" | "/status/addresses", Value::Array(items)) => {
                    let olds = ov.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                    let (list, order) = diff_merge_list(olds, items, "type");
                    if !list.is_empty() {
                        out.insert(k.clone(), Value::Array(list));
                        out.insert(format!("$setElementOrder/{k}"), Value::Array(order));
                    }
                }
                _ => {
                    out.insert(k.clone(), nv.clone());
                }
            },
        }
    }
    for k in om.keys().filter(|k| !nm.contains_key(*k)) {
        out.insert(k.clone(), Value::Null);
    }
    (!out.is_empty()).then_some(out)
}

/// A list of objects with a merge key: changed elements as their own diff plus the key,
/// new ones whole, removed ones as `$patch: delete`; and the new order of keys.
fn diff_merge_list(old: &[Value], new: &[Value], key: &str) -> (Vec<Value>, Vec<Value>) {
    let key_of = |v: &Value| v.get(key).cloned().unwrap_or(Value::Null);
    let mut list = vec![];
    for n in new {
        let k = key_of(n);
        match old.iter().find(|o| key_of(o) == k) {
            Some(o) if o == n => {}
            Some(o) => {
                if let Some(mut d) = diff_objects(o, n, "") {
                    d.insert(key.to_string(), k);
                    list.push(Value::Object(d));
                }
            }
            None => list.push(n.clone()),
        }
    }
    for o in old {
        let k = key_of(o);
        if !new.iter().any(|n| key_of(n) == k) {
            list.push(json!({"$patch": "delete", key: k}));
        }
    }
    let order = new.iter().map(|n| json!({ key: key_of(n) })).collect();
    (list, order)
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
