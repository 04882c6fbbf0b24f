//! The HTTPS front: TLS with optional client certificates, HTTP/1.1 per connection, the
//! request log, authentication and authorization, then routing to the verbs. Every
//! connection ends when the server restarts.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::routes::{self, Target};
use super::status::ApiError;
use super::{
    LoggedRequest, Shared, auth, csr, delete, discovery, tls, token, verbs, watch as watches,
};

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    *r.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status())
}

/// Accepts connections until `stop` changes; each connection also ends then.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<u64>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    continue;
                }
            },
        };
        let (acceptor, sh, mut stop) = (acceptor.clone(), sh.clone(), stop.clone());
        tokio::spawn(
            async move {
                let conn = async {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake");
                            return;
                        }
                    };
                    let ident = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| tls::cert_identity(c.as_ref()));
                    let svc = hyper::service::service_fn(move |req| {
                        let (sh, ident) = (sh.clone(), ident.clone());
                        async move { Ok::<_, Infallible>(handle(sh, ident, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    // HTTP/2 when the client offers it (client-go's default), else 1.1.
                    if let Err(e) = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, svc)
                    .await
                    {
                        tracing::debug!(error = %e, "connection");
                    }
                };
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = conn => {}
                }
            }
            .instrument(tracing::debug_span!("conn", %peer)),
        );
    }
}

async fn handle(
    sh: Arc<Shared>,
    ident: Option<(String, Vec<String>)>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(&ApiError::bad_request(format!("reading the body: {e}"))),
    };
    let header = |k: &str| {
        parts
            .headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header("content-type");
    let path = parts.uri.path().to_string();
    let q = routes::query(parts.uri.query());
    let bearer = header("authorization")
        .strip_prefix("Bearer ")
        .map(|t| t.trim().to_string());
    let user = {
        let st = sh.lock_store();
        auth::authenticate(&st, &sh.signer, &sh.admin_token, ident, bearer.as_deref())
    };
    sh.log(LoggedRequest {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or(path.clone(), |p| p.to_string()),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        user: user.as_ref().map(|u| u.name.clone()).ok(),
    });
    if discovery::is_health(&path) {
        let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed_unsync());
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return r;
    }
    let user = match user {
        Ok(u) => u,
        Err(e) => return error(&e),
    };
    let Some(target) = routes::parse(&path) else {
        return error(&ApiError::path_not_found(&path));
    };
    let (res, ns, name, sub) = match &target {
        Target::NonResource(p) => {
            return match discovery::serve(p, &sh.addr.to_string()) {
                Some(v) => json_response(200, &v),
                None => error(&ApiError::path_not_found(p)),
            };
        }
        Target::Collection { res, ns } => (*res, ns.clone(), None, None),
        Target::Object { res, ns, name, sub } => {
            (*res, ns.clone(), Some(name.clone()), sub.clone())
        }
    };
    let is_watch = q.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&parts.method, name.is_some()) {
        (&Method::GET, false) if is_watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        (m, _) => return error(&ApiError::method_not_allowed(m.as_str())),
    };
    if !auth::authorize(&user, verb, Some(res), sub.as_deref()) {
        return error(&ApiError::forbidden(
            &user.name,
            verb,
            res.plural,
            res.group,
            ns.as_deref(),
        ));
    }
    if verb == "watch" {
        return match watches::start(sh.clone(), res, ns, &q) {
            Ok(rx) => {
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv()
                        .await
                        .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
                });
                let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
                r.headers_mut().insert(
                    "content-type",
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => error(&e),
        };
    }
    let parsed = || -> Result<Value, ApiError> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        })
    };
    let ns_str = ns.clone().unwrap_or_default();
    let name_str = name.clone().unwrap_or_default();
    let result = {
        let mut st = sh.lock_store();
        let st = &mut *st;
        match (verb, sub.as_deref()) {
            ("list", _) => verbs::list(st, res, ns.as_deref(), &q),
            ("get", _) => verbs::get(st, res, &ns_str, &name_str),
            ("create", Some("token")) => parsed().and_then(|b| {
                token::token_request(
                    st,
                    &sh.signer,
                    sh.opts.min_token_expiration_seconds,
                    &ns_str,
                    &name_str,
                    b,
                )
                .map(|v| (201, v))
            }),
            ("create", Some("eviction")) => {
                parsed().and_then(|b| delete::evict(st, res, &ns_str, &name_str, &b))
            }
            ("create", None) if name.is_none() => {
                parsed().and_then(|b| verbs::create(&sh, st, res, &ns_str, b, &user))
            }
            ("update", _) => {
                parsed().and_then(|b| verbs::update(st, res, &ns_str, &name_str, sub.as_deref(), b))
            }
            ("patch", _) => verbs::patch(
                st,
                res,
                &ns_str,
                &name_str,
                sub.as_deref(),
                &content_type,
                &body,
            ),
            ("delete", None) => {
                let mut opts = parsed().unwrap_or_else(|_| json!({}));
                if let Some(g) = q
                    .get("gracePeriodSeconds")
                    .and_then(|g| g.parse::<i64>().ok())
                {
                    opts["gracePeriodSeconds"] = json!(g);
                }
                delete::delete(st, res, &ns_str, &name_str, &opts)
            }
            _ => Err(ApiError::method_not_allowed(parts.method.as_str())),
        }
    };
    match result {
        Ok((code, v)) => {
            after_write(&sh, res.id().as_str(), verb, &v);
            json_response(code, &v)
        }
        Err(e) => error(&e),
    }
}

/// What the controllers of a real cluster do after a write: namespace defaults, the CSR
/// approver (when auto-approval is on) and signer. Separate writes, as theirs are.
fn after_write(sh: &Shared, resource: &str, verb: &str, obj: &Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    match resource {
        "namespaces" if verb == "create" => sh.ensure_namespace_defaults(name),
        csr::RESOURCE => {
            let mut st = sh.lock_store();
            let kubelet = obj.pointer("/spec/signerName").and_then(Value::as_str)
                == Some(csr::KUBELET_CLIENT_SIGNER);
            if verb == "create" && kubelet && sh.opts.auto_approve_csrs {
                let _ = csr::approve(
                    &mut st,
                    name,
                    "AutoApproved",
                    "Auto approving kubelet client certificate after SubjectAccessReview.",
                );
            }
            csr::sign(&mut st, &sh.ca, name, sh.opts.cert_validity);
        }
        _ => {}
    }
}
