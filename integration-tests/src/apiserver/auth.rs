//! Authentication (client certificates, the static admin token, bootstrap tokens kept as
//! kube-system Secrets, service-account tokens) and a small authorizer with the real
//! shape: bootstrappers may only file and read CSRs, everyone else authenticated may do
//! anything.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::resources::Resource;
use super::status::ApiError;
use super::store::Store;
use super::token::TokenSigner;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    fn new(name: impl Into<String>, mut groups: Vec<String>) -> Self {
        groups.push("system:authenticated".into());
        User {
            name: name.into(),
            groups,
        }
    }
    pub fn in_group(&self, g: &str) -> bool {
        self.groups.iter().any(|x| x == g)
    }
}

/// Who sent a request: a verified client certificate's subject first, then the bearer token.
pub fn authenticate(
    store: &Store,
    signer: &TokenSigner,
    admin_token: &str,
    cert: Option<(String, Vec<String>)>,
    bearer: Option<&str>,
) -> Result<User, ApiError> {
    if let Some((cn, orgs)) = cert {
        return Ok(User::new(cn, orgs));
    }
    let Some(token) = bearer else {
        return Err(ApiError::unauthorized());
    };
    if token == admin_token {
        return Ok(User::new("admin", vec!["system:masters".into()]));
    }
    if let Some(user) = bootstrap_user(store, token) {
        return Ok(user);
    }
    if let Some(claims) = signer.verify(token) {
        let ns = claims
            .pointer("/kubernetes.io/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Ok(User::new(
            sub,
            vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ],
        ));
    }
    Err(ApiError::unauthorized())
}

/// `<id>.<secret>` checked against Secret kube-system/bootstrap-token-<id>, as the
/// bootstrap token authenticator does.
fn bootstrap_user(store: &Store, token: &str) -> Option<User> {
    let (id, secret) = token.split_once('.')?;
    if id.len() != 6 || secret.len() != 16 {
        return None;
    }
    let s = store.get("secrets", "kube-system", &format!("bootstrap-token-{id}"))?;
    if s.get("type").and_then(Value::as_str) != Some("bootstrap.kubernetes.io/token") {
        return None;
    }
    let field = |k: &str| -> Option<String> {
        let d = s.pointer(&format!("/data/{k}"))?.as_str()?;
        String::from_utf8(B64.decode(d).ok()?).ok()
    };
    if field("token-secret")? != secret
        || field("usage-bootstrap-authentication").as_deref() != Some("true")
    {
        return None;
    }
    if let Some(exp) = field("expiration")
        && exp
            .parse::<jiff::Timestamp>()
            .is_ok_and(|t| t <= jiff::Timestamp::now())
    {
        return None;
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    if let Some(extra) = field("auth-extra-groups") {
        groups.extend(
            extra
                .split(',')
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty()),
        );
    }
    Some(User::new(format!("system:bootstrap:{id}"), groups))
}

/// May `user` do `verb` on `res` (None: a non-resource path such as /api or /version)?
/// Bootstrappers hold only system:node-bootstrapper's rules.
pub fn authorize(user: &User, verb: &str, res: Option<&Resource>, sub: Option<&str>) -> bool {
    if !user.in_group("system:bootstrappers") || user.in_group("system:masters") {
        return true;
    }
    match res {
        None => true,
        Some(r) => {
            r.plural == "certificatesigningrequests"
                && sub.is_none()
                && matches!(verb, "create" | "get" | "list" | "watch")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources;

    #[test]
    fn bootstrappers_only_touch_csrs() {
        let b = User::new(
            "system:bootstrap:abcdef",
            vec!["system:bootstrappers".into()],
        );
        let csr = resources::find("certificates.k8s.io", "v1", "certificatesigningrequests");
        let pods = resources::core("pods");
        assert!(authorize(&b, "create", csr, None));
        assert!(!authorize(&b, "update", csr, Some("approval")));
        assert!(!authorize(&b, "list", pods, None));
        assert!(authorize(&b, "get", None, None));
        let n = User::new("system:node:n1", vec!["system:nodes".into()]);
        assert!(authorize(&n, "patch", pods, Some("status")));
    }
}
