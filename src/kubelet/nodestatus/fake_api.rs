//! A recording in-memory API server for the loop tests: nodes (get, create, patch of
//! status with strategic merge) and leases (get, create, update with the
//! resourceVersion check), answered through a tower service that kube::Client runs on.
//! It can be told to fail the next requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tonic::codegen::http::{Request, Response, StatusCode};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Debug, Default)]
pub struct State {
    pub nodes: BTreeMap<String, Value>,
    pub leases: BTreeMap<String, Value>,
    pub seen: Vec<Seen>,
    /// Requests still to fail with 500.
    pub fail_next: usize,
    rv: u64,
    uid: u64,
}

#[derive(Clone, Default)]
pub struct FakeApi(pub Arc<Mutex<State>>);

fn status(code: u16, reason: &str, msg: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "reason": reason, "code": code}),
    )
}

/// Strategic merge as the API server applies it, for what the node status sends.
fn apply(target: &mut Value, patch: &Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(tv @ Value::Object(_)), Value::Object(_)) => apply(tv, v),
            (Some(Value::Array(tl)), Value::Array(pl)) if k == "conditions" || k == "addresses" => {
                if pl.first().and_then(|e| e.get("$patch")) == Some(&json!("replace")) {
                    *tl = pl[1..].to_vec();
                    continue;
                }
                for e in pl {
                    let key = e.get("type").cloned();
                    let pos = tl.iter().position(|x| x.get("type").cloned() == key);
                    match (pos, e.get("$patch")) {
                        (Some(i), Some(_)) => {
                            tl.remove(i);
                        }
                        (Some(i), None) => apply(&mut tl[i], e),
                        (None, _) => tl.push(e.clone()),
                    }
                }
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn handle(&mut self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.seen.push(Seen {
            method: method.into(),
            path: path.into(),
            body: body.clone(),
        });
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return status(500, "InternalError", "injected failure");
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("GET", ["api", "v1", "nodes", name]) => match self.nodes.get(*name) {
                Some(n) => (200, n.clone()),
                None => status(404, "NotFound", &format!("nodes \"{name}\" not found")),
            },
            ("POST", ["api", "v1", "nodes"]) => {
                let mut n = body;
                let name = n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if self.nodes.contains_key(&name) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("nodes \"{name}\" already exists"),
                    );
                }
                self.uid += 1;
                n["metadata"]["uid"] = json!(format!("uid-{}", self.uid));
                n["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.nodes.insert(name, n.clone());
                (201, n)
            }
            ("PATCH", ["api", "v1", "nodes", name, "status"]) => {
                let rv = self.next_rv();
                let Some(n) = self.nodes.get_mut(*name) else {
                    return status(404, "NotFound", &format!("nodes \"{name}\" not found"));
                };
                let spec = n.get("spec").cloned();
                apply(n, &body);
                if let Some(s) = spec {
                    n["spec"] = s;
                }
                n["metadata"]["resourceVersion"] = json!(rv);
                (200, n.clone())
            }
            (
                "GET",
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    "kube-node-lease",
                    "leases",
                    name,
                ],
            ) => match self.leases.get(*name) {
                Some(l) => (200, l.clone()),
                None => status(404, "NotFound", &format!("leases \"{name}\" not found")),
            },
            (
                "POST",
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    "kube-node-lease",
                    "leases",
                ],
            ) => {
                let mut l = body;
                let name = l["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if self.leases.contains_key(&name) {
                    return status(409, "AlreadyExists", "exists");
                }
                l["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.leases.insert(name, l.clone());
                (201, l)
            }
            (
                "PUT",
                [
                    "apis",
                    "coordination.k8s.io",
                    "v1",
                    "namespaces",
                    "kube-node-lease",
                    "leases",
                    name,
                ],
            ) => {
                let rv = self.next_rv();
                let Some(have) = self.leases.get(*name) else {
                    return status(404, "NotFound", "gone");
                };
                if have["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                    return status(409, "Conflict", "the object has been modified");
                }
                let mut l = body;
                l["metadata"]["resourceVersion"] = json!(rv);
                self.leases.insert(name.to_string(), l.clone());
                (200, l)
            }
            _ => status(404, "NotFound", &format!("no route {method} {path}")),
        }
    }
}

impl FakeApi {
    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    /// A kube client whose every request this fake answers.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let me = me.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let bytes = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, v) = me.0.lock().unwrap().handle(&method, &path, body);
                let resp = Response::builder()
                    .status(StatusCode::from_u16(code).unwrap())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(serde_json::to_vec(&v).unwrap())))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        kube::Client::new(svc, "default")
    }
}
