//! get, list, create, update and patch, with the real server's metadata rules: uid,
//! creationTimestamp and generation owned by the server, a resourceVersion on every write
//! and none on a no-op write, 409 on a stale resourceVersion, status kept apart from spec.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::auth::User;
use super::resources::Resource;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::Store;
use super::{Shared, csr, defaults, meta, patch};

pub type Reply = Result<(u16, Value), ApiError>;

pub fn get(st: &Store, res: &Resource, ns: &str, name: &str) -> Reply {
    st.get(&res.id(), ns, name)
        .map(|o| (200, o.clone()))
        .ok_or_else(|| ApiError::not_found(res.plural, res.group, name))
}

pub fn selectors(q: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let l = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let f = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((l, f))
}

/// A list at the current resourceVersion, or at an exact older one still in the history.
pub fn list(st: &Store, res: &Resource, ns: Option<&str>, q: &HashMap<String, String>) -> Reply {
    let (labels, fields) = selectors(q)?;
    let rv_param = q.get("resourceVersion").map_or("", String::as_str);
    let rv: Option<u64> = match rv_param {
        "" | "0" => None,
        s => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
        ),
    };
    let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
    let (items, at) = match rv {
        Some(rv) if exact => {
            let items = st.list_at(&res.id(), ns, rv).map_err(|_| {
                ApiError::expired("The resourceVersion for the provided list is too old.")
            })?;
            (items, rv)
        }
        Some(rv) if rv > st.current_rv() => return Err(ApiError::too_large_rv(rv)),
        _ => (st.list(&res.id(), ns), st.current_rv()),
    };
    let items: Vec<Value> = items
        .into_iter()
        .filter(|o| labels.matches(o) && fields.matches(o))
        .collect();
    Ok((
        200,
        json!({
            "kind": format!("{}List", res.kind), "apiVersion": res.api_version(),
            "metadata": {"resourceVersion": at.to_string()}, "items": items,
        }),
    ))
}

fn spec_of(o: &Value) -> Value {
    let mut o = o.clone();
    if let Value::Object(m) = &mut o {
        m.remove("metadata");
        m.remove("status");
        m.remove("kind");
        m.remove("apiVersion");
    }
    o
}

/// POST: name or generateName, server-owned metadata, defaults and admission; 201.
pub fn create(
    sh: &Shared,
    st: &mut Store,
    res: &Resource,
    ns: &str,
    mut obj: Value,
    user: &User,
) -> Reply {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    let body_ns = meta::namespace(&obj).to_string();
    if res.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let mut name = meta::name(&obj).to_string();
    if name.is_empty() {
        let prefix = obj
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                res.kind,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        name = format!("{prefix}{}", meta::random_suffix(5));
    }
    if st.get(&res.id(), ns, &name).is_some() {
        return Err(ApiError::already_exists(res.plural, res.group, &name));
    }
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind);
    let m = meta::meta_mut(&mut obj);
    m.insert("name".into(), json!(name));
    if res.namespaced {
        m.insert("namespace".into(), json!(ns));
    } else {
        m.remove("namespace");
    }
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(meta::now()));
    for k in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "generation",
    ] {
        m.remove(k);
    }
    if obj.get("spec").is_some() {
        meta::meta_mut(&mut obj).insert("generation".into(), json!(1));
    }
    match res.id().as_str() {
        "pods" => {
            obj["status"] = json!({});
            defaults::default_pod(&mut obj);
            defaults::admit_pod_create(&mut obj, &meta::random_suffix(5));
        }
        "services" => defaults::default_service(&mut obj, || sh.next_service_ip()),
        "namespaces" => defaults::default_namespace(&mut obj),
        "certificatesigningrequests.certificates.k8s.io" => csr::prepare_create(&mut obj, user)?,
        _ => {}
    }
    Ok((201, st.put(&res.id(), ns, &name, obj)))
}

/// PUT of the object or of a subresource (status, approval).
pub fn update(
    st: &mut Store,
    res: &Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    new: Value,
) -> Reply {
    let old = st
        .get(&res.id(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res.plural, res.group, name))?;
    if !new.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    if !meta::name(&new).is_empty() && meta::name(&new) != name {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let want_rv = meta::resource_version(&new);
    if !want_rv.is_empty() && want_rv != meta::resource_version(&old) {
        return Err(ApiError::conflict(
            res.plural,
            res.group,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let mut obj = match sub {
        Some("status") => {
            let mut o = old.clone();
            o["status"] = new.get("status").cloned().unwrap_or(json!({}));
            o
        }
        Some("approval") => csr::apply_approval(&old, &new)?,
        _ => {
            let mut o = new;
            let m = meta::meta_mut(&mut o);
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match old.pointer(&format!("/metadata/{k}")) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            o["apiVersion"] = old["apiVersion"].clone();
            o["kind"] = old["kind"].clone();
            if res.has_status() {
                match old.get("status") {
                    Some(s) => o["status"] = s.clone(),
                    None => {
                        if let Value::Object(m) = &mut o {
                            m.remove("status");
                        }
                    }
                }
            }
            o
        }
    };
    match res.id().as_str() {
        "pods" => {
            defaults::default_pod(&mut obj);
            if sub.is_none() {
                check_pod_spec_update(&old, &obj, name)?;
            }
        }
        "services" => {
            let ip = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            defaults::default_service(&mut obj, || ip);
        }
        _ => {}
    }
    if spec_of(&obj) != spec_of(&old) && old.pointer("/metadata/generation").is_some() {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta::meta_mut(&mut obj).insert("generation".into(), json!(g + 1));
    }
    meta::meta_mut(&mut obj).insert(
        "resourceVersion".into(),
        json!(meta::resource_version(&old)),
    );
    if obj == old {
        return Ok((200, old));
    }
    // An object marked for deletion goes once its last finalizer is gone.
    let finalizers_left = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    let graceful_pod = res.id() == "pods"
        && obj
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            > 0;
    if obj.pointer("/metadata/deletionTimestamp").is_some() && !finalizers_left && !graceful_pod {
        st.remove(&res.id(), ns, name);
        return Ok((200, obj));
    }
    Ok((200, st.put(&res.id(), ns, name, obj)))
}

/// Pod spec updates may only change images, activeDeadlineSeconds, tolerations (additions)
/// and terminationGracePeriodSeconds, as ValidatePodUpdate.
fn check_pod_spec_update(old: &Value, new: &Value, name: &str) -> Result<(), ApiError> {
    let mask = |p: &Value| -> Value {
        let mut s = p.get("spec").cloned().unwrap_or(Value::Null);
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = s.get_mut(list) {
                for c in cs.iter_mut().filter(|c| c.is_object()) {
                    c["image"] = Value::Null;
                }
            }
        }
        if let Value::Object(m) = &mut s {
            for k in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(k);
            }
        }
        s
    };
    if mask(old) != mask(new) {
        return Err(ApiError::invalid(
            "Pod",
            name,
            "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        ));
    }
    Ok(())
}

/// PATCH by content type, then the same path as an update; a resourceVersion in the
/// patch is a precondition, as on the real server.
pub fn patch(
    st: &mut Store,
    res: &Resource,
    ns: &str,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Reply {
    let old = st
        .get(&res.id(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(res.plural, res.group, name))?;
    let p: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut doc = old.clone();
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let result = match ct {
        "application/merge-patch+json" => {
            patch::merge_patch(&mut doc, &p);
            Ok(())
        }
        "application/strategic-merge-patch+json" => patch::strategic_merge_patch(&mut doc, &p),
        "application/json-patch+json" => patch::json_patch(&mut doc, &p),
        other => return Err(ApiError::unsupported_media(other)),
    };
    if let Err(e) = result {
        return Err(match e {
            patch::PatchError::JsonPatch(m) => ApiError::invalid(res.kind, name, &m),
            other => ApiError::bad_request(other.to_string()),
        });
    }
    // A patch that leaves resourceVersion as stored carries no precondition.
    if meta::resource_version(&doc) == meta::resource_version(&old) {
        meta::meta_mut(&mut doc).remove("resourceVersion");
    }
    update(st, res, ns, name, sub, doc)
}
