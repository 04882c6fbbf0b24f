//! The httpGet probe (upstream's pkg/probe/http): GET with kubelet's User-Agent and
//! Accept, 200 <= status < 400 is success; redirects are followed only to the same host
//! (a redirect elsewhere ends the chain and is a success with a warning); certificates are
//! not verified; at most 10 KiB of the body is read.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use reqwest::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, USER_AGENT};

use super::exec::MAX_OUTPUT;
use super::port;
use super::probe::Probed;

/// The User-Agent upstream's kubelet 1.35 sends (`kube-probe/<major>.<minor>`).
pub(crate) const PROBE_USER_AGENT: &str = "kube-probe/1.35";

/// Go's http client stops after 10 redirects.
const MAX_REDIRECTS: usize = 10;

/// The client every httpGet probe shares: no proxy, no kept-alive connections (each probe
/// opens its own, as upstream's transport with DisableKeepAlives), no certificate checks.
pub(crate) fn client() -> Result<reqwest::Client, reqwest::Error> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().and_then(|u| u.host_str());
        if attempt.url().host_str() != first {
            attempt.stop()
        } else if attempt.previous().len() >= MAX_REDIRECTS {
            attempt.error("stopped after 10 redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(policy)
        .build()
}

/// The GET an httpGet action makes.
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    pub url: String,
    /// The action names no host and the pod has no IP (yet).
    pub no_host: bool,
    /// As given, plus User-Agent and Accept; a Host header names the virtual host
    /// (hyper keeps a Host header that is set).
    pub headers: HeaderMap,
}

/// The request an httpGet action makes (upstream's NewRequestForHTTPGetAction). `Err` is a
/// port that does not resolve.
pub(crate) fn request(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: Option<IpAddr>,
) -> Result<HttpRequest, String> {
    let scheme = match action.scheme.as_deref() {
        None | Some("") => "http".to_string(),
        Some(s) => s.to_ascii_lowercase(),
    };
    let host = match action.host.as_deref() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
    };
    let port = port::resolve(&action.port, container)?;
    let path = action.path.as_deref().unwrap_or("");
    // Go's url.URL puts a slash between host and a relative path.
    let sep = if path.is_empty() || path.starts_with('/') || path.starts_with('?') {
        ""
    } else {
        "/"
    };
    let url = format!(
        "{scheme}://{}{sep}{path}",
        port::join_host_port(&host, port)
    );

    let mut headers = HeaderMap::new();
    for h in action.http_headers.iter().flatten() {
        match (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(&h.value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => {
                tracing::warn!(header = %h.name, "httpGet probe: header not valid in HTTP, left out")
            }
        }
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, HeaderValue::from_static(PROBE_USER_AGENT));
    }
    // An Accept header set to nothing is sent empty: upstream leaves it out, but the
    // HTTP client would then add `*/*`, and an empty one asks for the same as none.
    if !headers.contains_key(ACCEPT) {
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    }
    Ok(HttpRequest {
        url,
        no_host: host.is_empty(),
        headers,
    })
}

/// Runs one GET of `url` within `timeout`.
pub(crate) async fn probe(client: &reqwest::Client, req: HttpRequest, timeout: Duration) -> Probed {
    let url = req.url.as_str();
    let get = |detail: &str| format!("Get {url:?}: {detail}");
    if req.no_host {
        return Probed::failure(get("http: no Host in request URL"));
    }
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Probed::failure(get(&e.to_string())),
    };
    let headers = req.headers;
    let timed_out =
        || get("context deadline exceeded (Client.Timeout exceeded while awaiting headers)");
    let exchange = async {
        let mut res = client
            .get(parsed)
            .headers(headers)
            .timeout(timeout)
            .send()
            .await?;
        let status = res.status();
        let mut body = Vec::new();
        while body.len() < MAX_OUTPUT {
            match res.chunk().await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_OUTPUT);
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => return Probed::failure(timed_out()),
        Ok(Err(e)) if e.is_timeout() => return Probed::failure(timed_out()),
        Ok(Err(e)) => return Probed::failure(get(&error_chain(&e))),
        Ok(Ok(answer)) => answer,
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    let code = status.as_u16();
    if (200..400).contains(&code) {
        if code >= 300 {
            // The chain stopped at a redirect to another host.
            return Probed::warning(format!("Probe terminated redirects, Response body: {body}"));
        }
        return Probed::success(body);
    }
    // Upstream keeps the body out of the failure message (it reaches events).
    Probed::failure(format!("HTTP probe failed with statuscode: {code}"))
}

/// The error and its causes, innermost last, without reqwest's own wrapper line.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cause {
        parts.push(c.to_string());
        cause = c.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}
