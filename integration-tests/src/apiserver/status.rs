//! API errors as the real server writes them: a metav1.Status with code, reason and a
//! message worded as kube-apiserver words it, since clients (kube-rs, kubectl, berth)
//! branch on `reason` and `code`.

use serde_json::{Value, json};

/// A failed request, turned into a metav1.Status body by [`ApiError::to_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<(String, String)>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }
    fn with_details(mut self, kind: &str, name: &str) -> Self {
        self.details = Some((kind.to_string(), name.to_string()));
        self
    }
    pub fn not_found(plural: &str, group: &str, name: &str) -> Self {
        let what = qualified(plural, group);
        Self::new(404, "NotFound", format!("{what} \"{name}\" not found"))
            .with_details(plural, name)
    }
    pub fn already_exists(plural: &str, group: &str, name: &str) -> Self {
        let what = qualified(plural, group);
        Self::new(
            409,
            "AlreadyExists",
            format!("{what} \"{name}\" already exists"),
        )
        .with_details(plural, name)
    }
    /// The optimistic-concurrency failure of an update on a stale resourceVersion.
    pub fn conflict(plural: &str, group: &str, name: &str, why: &str) -> Self {
        let what = qualified(plural, group);
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {what} \"{name}\": {why}"),
        )
        .with_details(plural, name)
    }
    pub fn invalid(kind: &str, name: &str, why: &str) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {why}"),
        )
        .with_details(kind, name)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }
    pub fn unsupported_media(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"
            ),
        )
    }
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }
    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized".to_string())
    }
    pub fn forbidden(user: &str, verb: &str, plural: &str, group: &str, ns: Option<&str>) -> Self {
        let scope = match ns {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{plural} is forbidden: User \"{user}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}"
            ),
        )
    }
    /// A resourceVersion older than the retained history (watch or exact list).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message.into())
    }
    pub fn too_large_rv(rv: u64) -> Self {
        Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {rv}, current: less"),
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message.into())
    }

    /// The metav1.Status body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some((kind, name)) = &self.details {
            s["details"] = json!({"name": name, "kind": kind});
        }
        s
    }
}

fn qualified(plural: &str, group: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// The Status of a successful delete or eviction.
pub fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}
