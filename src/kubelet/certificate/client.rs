//! The kube::Client of the node, built as kube builds its own (kube-client
//! client/builder.rs: HTTP connector, rustls, connect/read/write timeouts, base URI,
//! server-error retries, Authorization for tokens, extra headers, an HTTP span), with
//! one change: the TLS client certificate comes from a [`CertSource`] at every
//! handshake, and connections close after a rotation (see transport.rs).

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ConfigExt, DynBody, retry::RetryPolicy};
use kube::config::KubeConfigOptions;
use tower::{BoxError, ServiceBuilder, ServiceExt as _, retry::RetryLayer};
use tower_http::ServiceExt as _;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;
use tracing::Span;

use super::error::CertError;
use super::kubeconfig::{Credential, NodeKubeconfig};
use super::transport::{CertSource, RotatingConnector};

/// Builds the client for `kc`. With a `source`, the kubeconfig's own client certificate
/// is ignored and the source's is presented; without one, kube's handling of the
/// kubeconfig (certificate, token, tokenFile) is used unchanged.
pub async fn build(
    kc: &NodeKubeconfig,
    source: Option<Arc<CertSource>>,
) -> Result<kube::Client, CertError> {
    let err = |reason: String| CertError::Client {
        server: kc.server.clone(),
        reason,
    };
    let mut raw = kc.raw.clone();
    if source.is_some() && matches!(kc.credential, Credential::ClientCert { .. }) {
        // The source owns the identity; a fixed one in the TLS config would shadow it.
        for named in raw
            .auth_infos
            .iter_mut()
            .filter(|a| Some(&a.name) == kc.user.as_ref())
        {
            if let Some(auth) = named.auth_info.as_mut() {
                auth.client_certificate = None;
                auth.client_certificate_data = None;
                auth.client_key = None;
                auth.client_key_data = None;
            }
        }
    }
    let config = kube::Config::from_custom_kubeconfig(raw, &KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    let Some(source) = source else {
        return kube::Client::try_from(config).map_err(|e| err(e.to_string()));
    };

    let mut tls = config
        .rustls_client_config()
        .map_err(|e| err(e.to_string()))?;
    tls.client_auth_cert_resolver = source.clone();
    // A resumed TLS session keeps the identity of the session it resumes: after a
    // rotation the server would still see the old certificate. client-go sets no
    // session cache, so every handshake is a full one; so here.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = name
            .clone()
            .try_into()
            .map_err(|e| err(format!("tls-server-name {name:?}: {e}")))?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    // HTTP/2 when the server offers it, as client-go: every request and watch of the
    // node shares one connection (and one TLS session's buffers) instead of a pooled
    // HTTP/1.1 connection each.
    let https = https.enable_all_versions().wrap_connector(http);
    let mut connector =
        hyper_timeout::TimeoutConnector::new(RotatingConnector::new(https, &source));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper_client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);

    let auth_layer = config.auth_layer().map_err(|e| err(e.to_string()))?;
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(auth_layer)
        .layer(
            config
                .extra_headers_layer()
                .map_err(|e| err(e.to_string()))?,
        )
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<Body>| {
                    tracing::debug_span!(
                        "HTTP",
                        http.method = %req.method(),
                        http.url = %req.uri(),
                        http.status_code = tracing::field::Empty,
                        otel.kind = "client",
                        otel.status_code = tracing::field::Empty,
                    )
                })
                .on_response(
                    |res: &Response<hyper::body::Incoming>, _: Duration, span: &Span| {
                        let status = res.status();
                        span.record("http.status_code", status.as_u16());
                        if status.is_client_error() || status.is_server_error() {
                            span.record("otel.status_code", "ERROR");
                        }
                    },
                )
                .on_body_chunk(())
                .on_failure(|ec: ServerErrorsFailureClass, _: Duration, span: &Span| {
                    span.record("otel.status_code", "ERROR");
                    match ec {
                        ServerErrorsFailureClass::StatusCode(status) => {
                            span.record("http.status_code", status.as_u16());
                            tracing::error!("failed with status {}", status)
                        }
                        ServerErrorsFailureClass::Error(e) => {
                            tracing::error!("failed with error {}", e)
                        }
                    }
                }),
        )
        .map_err(BoxError::from)
        .service(hyper_client);
    let service = service
        .map_response_body(|body| {
            Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
        })
        .boxed();
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace).build())
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
