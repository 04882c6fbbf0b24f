//! Service-account tokens: TokenRequest (serviceaccounts/<name>/token) minting JWTs with
//! the claims the real server puts in them, and their verification for authentication and
//! for tests that check a projected token file.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::meta;
use super::status::ApiError;
use super::store::Store;

/// The issuer and default audience, as a kubeadm cluster's.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Signs and verifies tokens with a key made at start (HS256: nothing outside the fixture
/// verifies them, and a node agent must treat tokens as opaque).
pub struct TokenSigner {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").finish_non_exhaustive()
    }
}

impl Default for TokenSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenSigner {
    pub fn new() -> Self {
        TokenSigner {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &meta::random_bytes::<32>()),
        }
    }

    pub fn mint(&self, claims: &Value) -> String {
        let head = B64.encode(br#"{"alg":"HS256","typ":"JWT","kid":"berth-test"}"#);
        let body = B64.encode(claims.to_string());
        let signing_input = format!("{head}.{body}");
        let sig = ring::hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }

    /// The claims of a token this server minted that is valid now.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let (input, sig) = token.rsplit_once('.')?;
        let sig = B64.decode(sig).ok()?;
        ring::hmac::verify(&self.key, input.as_bytes(), &sig).ok()?;
        let (_, body) = input.split_once('.')?;
        let claims: Value = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        let now = jiff::Timestamp::now().as_second();
        let exp = claims.get("exp").and_then(Value::as_i64)?;
        let nbf = claims.get("nbf").and_then(Value::as_i64).unwrap_or(0);
        (nbf <= now && now < exp).then_some(claims)
    }
}

/// Serves POST .../serviceaccounts/<sa>/token: the TokenRequest with spec defaulted and
/// status.token and status.expirationTimestamp set.
pub fn token_request(
    store: &Store,
    signer: &TokenSigner,
    min_expiration: i64,
    ns: &str,
    sa_name: &str,
    mut req: Value,
) -> Result<Value, ApiError> {
    let sa = store
        .get("serviceaccounts", ns, sa_name)
        .ok_or_else(|| ApiError::not_found("serviceaccounts", "", sa_name))?;
    if !req.get("spec").is_some_and(Value::is_object) {
        req["spec"] = json!({});
    }
    let spec = &mut req["spec"];
    let exp_secs = spec
        .get("expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if exp_secs < min_expiration {
        return Err(ApiError::invalid(
            "TokenRequest",
            sa_name,
            &format!(
                "spec.expirationSeconds: Invalid value: {exp_secs}: may not specify a duration less than {min_expiration} seconds"
            ),
        ));
    }
    spec["expirationSeconds"] = json!(exp_secs);
    let audiences = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a.clone(),
        _ => vec![json!(ISSUER)],
    };
    spec["audiences"] = Value::Array(audiences.clone());
    let now = jiff::Timestamp::now();
    let exp = now.as_second() + exp_secs;
    let mut k8s = json!({
        "namespace": ns,
        "serviceaccount": {"name": sa_name, "uid": meta::uid(sa)},
    });
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| b.is_object()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let want_uid = bound.get("uid").and_then(Value::as_str).unwrap_or("");
        let (plural, key) = match kind {
            "Pod" => ("pods", "pod"),
            "Secret" => ("secrets", "secret"),
            "Node" => ("nodes", "node"),
            _ => {
                return Err(ApiError::invalid(
                    "TokenRequest",
                    sa_name,
                    &format!("spec.boundObjectRef.kind: Unsupported value: {kind:?}"),
                ));
            }
        };
        let obj_ns = if kind == "Node" { "" } else { ns };
        let obj = store
            .get(plural, obj_ns, name)
            .ok_or_else(|| ApiError::not_found(plural, "", name))?;
        if !want_uid.is_empty() && meta::uid(obj) != want_uid {
            return Err(ApiError::conflict(
                plural,
                "",
                name,
                &format!(
                    "the UID in the bound object reference ({want_uid}) does not match the UID in record"
                ),
            ));
        }
        k8s[key] = json!({"name": name, "uid": meta::uid(obj)});
    }
    let claims = json!({
        "aud": audiences, "exp": exp, "iat": now.as_second(), "nbf": now.as_second(),
        "iss": ISSUER, "jti": meta::new_uid(),
        "sub": format!("system:serviceaccount:{ns}:{sa_name}"),
        "kubernetes.io": k8s,
    });
    let expires = jiff::Timestamp::from_second(exp).unwrap_or(now);
    req["kind"] = json!("TokenRequest");
    req["apiVersion"] = json!("authentication.k8s.io/v1");
    let m = meta::meta_mut(&mut req);
    m.insert("name".into(), json!(sa_name));
    m.insert("namespace".into(), json!(ns));
    m.insert("creationTimestamp".into(), Value::Null);
    req["status"] =
        json!({"token": signer.mint(&claims), "expirationTimestamp": meta::rfc3339(expires)});
    Ok(req)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn minted_tokens_verify_and_tampered_do_not() {
        let s = TokenSigner::new();
        let exp = jiff::Timestamp::now().as_second() + 60;
        let t = s.mint(&json!({"sub": "x", "exp": exp}));
        assert_eq!(s.verify(&t).unwrap()["sub"], "x");
        let mut bad = t.clone();
        bad.push('A');
        assert!(s.verify(&bad).is_none());
        assert!(TokenSigner::new().verify(&t).is_none());
    }
}
