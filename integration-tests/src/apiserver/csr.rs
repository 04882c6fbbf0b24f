//! CertificateSigningRequests: the requester's identity stamped on create, the approval
//! subresource, and the signer (as kube-controller-manager's csrsigning) issuing the
//! certificate for an approved request of a kubernetes.io signer it serves.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::auth::User;
use super::meta;
use super::status::ApiError;
use super::store::Store;
use super::tls::{self, Ca};

pub const RESOURCE: &str = "certificatesigningrequests.certificates.k8s.io";
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const SIGNERS: &[&str] = &[
    KUBELET_CLIENT_SIGNER,
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kubelet-serving",
];

fn request_pem(obj: &Value) -> Option<String> {
    let b = obj.pointer("/spec/request").and_then(Value::as_str)?;
    String::from_utf8(B64.decode(b).ok()?).ok()
}

/// On create: the request must parse; username, groups and uid come from the requester;
/// status starts empty.
pub fn prepare_create(obj: &mut Value, user: &User) -> Result<(), ApiError> {
    let name = meta::name(obj).to_string();
    let invalid = |why: &str| ApiError::invalid("CertificateSigningRequest", &name, why);
    let pem = request_pem(obj).ok_or_else(|| {
        invalid(
            "spec.request: Invalid value: []byte{...}: PEM block type must be CERTIFICATE REQUEST",
        )
    })?;
    tls::csr_identity(&pem).ok_or_else(|| {
        invalid("spec.request: Invalid value: []byte{...}: could not parse the certificate request")
    })?;
    if obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return Err(invalid("spec.signerName: Required value"));
    }
    let spec = &mut obj["spec"];
    spec["username"] = json!(user.name);
    spec["groups"] = json!(user.groups);
    spec["uid"] = json!("");
    obj["status"] = json!({});
    Ok(())
}

/// PUT .../approval: the new conditions (Approved or Denied, never both) on the old object.
pub fn apply_approval(old: &Value, new: &Value) -> Result<Value, ApiError> {
    let name = meta::name(old);
    let conds = new
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has = |t: &str| {
        conds
            .iter()
            .any(|c| c.get("type").and_then(Value::as_str) == Some(t))
    };
    if has("Approved") && has("Denied") {
        return Err(ApiError::invalid(
            "CertificateSigningRequest",
            name,
            "status.conditions: Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive",
        ));
    }
    let was_approved = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some("Approved"))
        });
    if was_approved && has("Denied") {
        return Err(ApiError::invalid(
            "CertificateSigningRequest",
            name,
            "status.conditions: Forbidden: updates may not remove the Approved condition",
        ));
    }
    let now = meta::now();
    let conds: Vec<Value> = conds
        .into_iter()
        .map(|mut c| {
            for k in ["lastUpdateTime", "lastTransitionTime"] {
                if c.get(k).is_none_or(Value::is_null) {
                    c[k] = json!(now);
                }
            }
            if c.get("status").is_none() {
                c["status"] = json!("True");
            }
            c
        })
        .collect();
    let mut o = old.clone();
    if !o.get("status").is_some_and(Value::is_object) {
        o["status"] = json!({});
    }
    o["status"]["conditions"] = Value::Array(conds);
    Ok(o)
}

fn condition(obj: &Value, t: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(t))
        })
}

/// Why the kubelet client signer refuses a request, as upstream's
/// IsKubeletClientCSR checks: CN system:node:<name>, O exactly system:nodes, client usages.
pub fn kubelet_client_refusal(cn: &str, orgs: &[String], usages: &[String]) -> Option<String> {
    if !cn.starts_with("system:node:") || cn.len() == "system:node:".len() {
        return Some(format!(
            "subject common name {cn:?} must begin with \"system:node:\""
        ));
    }
    if orgs != ["system:nodes"] {
        return Some(format!(
            "subject organization {orgs:?} must be [\"system:nodes\"]"
        ));
    }
    let allowed = ["digital signature", "key encipherment", "client auth"];
    if !usages.iter().any(|u| u == "client auth")
        || usages.iter().any(|u| !allowed.contains(&u.as_str()))
    {
        return Some(format!(
            "usages {usages:?} must include \"client auth\" and only {allowed:?}"
        ));
    }
    None
}

/// Approves a CSR as `approver` says (a separate write, as kubectl certificate approve).
pub fn approve(st: &mut Store, name: &str, reason: &str, message: &str) -> Result<Value, ApiError> {
    let old = st.get(RESOURCE, "", name).cloned().ok_or_else(|| {
        ApiError::not_found("certificatesigningrequests", "certificates.k8s.io", name)
    })?;
    if condition(&old, "Approved") {
        return Ok(old);
    }
    let mut conds = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conds.push(json!({"type": "Approved", "status": "True", "reason": reason, "message": message}));
    let new = json!({"status": {"conditions": conds}});
    let obj = apply_approval(&old, &new)?;
    Ok(st.put(RESOURCE, "", name, obj))
}

/// The signer's pass over one CSR: an approved, unsigned request of a served signer gets
/// status.certificate (or a Failed condition); anything else is left alone.
pub fn sign(st: &mut Store, ca: &Ca, name: &str, max_validity: Duration) {
    let Some(obj) = st.get(RESOURCE, "", name).cloned() else {
        return;
    };
    let signer = obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !condition(&obj, "Approved")
        || condition(&obj, "Failed")
        || !SIGNERS.contains(&signer)
        || obj.pointer("/status/certificate").is_some()
    {
        return;
    }
    let usages: Vec<String> = obj
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|u| {
            u.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pem = request_pem(&obj).unwrap_or_default();
    let refusal = match tls::csr_identity(&pem) {
        None => Some("the request does not parse".to_string()),
        Some((cn, orgs)) if signer == KUBELET_CLIENT_SIGNER => {
            kubelet_client_refusal(&cn, &orgs, &usages)
        }
        Some(_) => None,
    };
    let mut validity = max_validity;
    if let Some(s) = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_u64)
    {
        validity = validity.min(Duration::from_secs(s));
    }
    let mut new = obj.clone();
    let result = match refusal {
        Some(why) => Err(why),
        None => ca
            .sign_csr(&pem, &usages, validity)
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(cert) => new["status"]["certificate"] = json!(B64.encode(cert)),
        Err(why) => {
            let now = meta::now();
            if let Some(Value::Array(c)) = new.pointer_mut("/status/conditions") {
                c.push(
                    json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                    "message": why, "lastUpdateTime": now, "lastTransitionTime": now}),
                );
            }
        }
    }
    st.put(RESOURCE, "", name, new);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_client_rules() {
        let u = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            kubelet_client_refusal(
                "system:node:n1",
                &u(&["system:nodes"]),
                &u(&["digital signature", "client auth"])
            )
            .is_none()
        );
        assert!(
            kubelet_client_refusal("n1", &u(&["system:nodes"]), &u(&["client auth"])).is_some()
        );
        assert!(
            kubelet_client_refusal("system:node:n1", &u(&["x"]), &u(&["client auth"])).is_some()
        );
        assert!(
            kubelet_client_refusal(
                "system:node:n1",
                &u(&["system:nodes"]),
                &u(&["server auth"])
            )
            .is_some()
        );
    }
}
