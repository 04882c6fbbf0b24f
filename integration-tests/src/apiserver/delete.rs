//! DELETE and pods/eviction: preconditions, graceful deletion of pods (deletionTimestamp
//! and deletionGracePeriodSeconds first, removal when the kubelet deletes with grace 0),
//! finalizers, immediate removal of everything else.

use serde_json::{Value, json};

use super::meta;
use super::resources::Resource;
use super::status::{self, ApiError};
use super::store::Store;
use super::verbs::Reply;

/// Deletes with `opts` (a DeleteOptions: gracePeriodSeconds, preconditions).
pub fn delete(st: &mut Store, res: &Resource, ns: &str, name: &str, opts: &Value) -> Reply {
    let id = res.id();
    let mut obj = st
        .get(&id, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res.plural, res.group, name))?;
    if let Some(uid) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
        && uid != meta::uid(&obj)
    {
        return Err(ApiError::conflict(
            res.plural,
            res.group,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta::uid(&obj)
            ),
        ));
    }
    if let Some(rv) = opts
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
        && rv != meta::resource_version(&obj)
    {
        return Err(ApiError::conflict(
            res.plural,
            res.group,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                meta::resource_version(&obj)
            ),
        ));
    }
    let requested = opts.get("gracePeriodSeconds").and_then(Value::as_i64);
    let grace = if id == "pods" {
        pod_grace(&obj, requested)
    } else {
        0
    };
    let finalizers = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if grace == 0 && !finalizers {
        let gone = st.remove(&id, ns, name).unwrap_or(obj);
        return Ok((200, gone));
    }
    // A grace period can only shorten.
    let current = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    if obj.pointer("/metadata/deletionTimestamp").is_some() && current.is_some_and(|c| c <= grace) {
        return Ok((200, obj));
    }
    let when = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(grace))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let m = meta::meta_mut(&mut obj);
    m.insert("deletionTimestamp".into(), json!(meta::rfc3339(when)));
    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
    Ok((200, st.put(&id, ns, name, obj)))
}

/// The grace a pod delete gets: the request's, else the pod's
/// terminationGracePeriodSeconds; 0 for a pod never bound to a node or already finished.
fn pod_grace(pod: &Value, requested: Option<i64>) -> i64 {
    let unbound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty();
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if unbound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let g = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    g.max(0)
}

/// POST pods/<name>/eviction: a delete with the Eviction's deleteOptions (no disruption
/// budgets are kept here, so none can refuse it).
pub fn evict(st: &mut Store, res: &Resource, ns: &str, name: &str, body: &Value) -> Reply {
    let opts = body.get("deleteOptions").cloned().unwrap_or(json!({}));
    delete(st, res, ns, name, &opts)?;
    Ok((201, status::success(201)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_rules() {
        let bound = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 12}, "status": {"phase": "Running"}});
        assert_eq!(pod_grace(&bound, None), 12);
        assert_eq!(pod_grace(&bound, Some(3)), 3);
        assert_eq!(pod_grace(&json!({"spec": {}}), Some(30)), 0);
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(pod_grace(&done, Some(30)), 0);
    }
}
