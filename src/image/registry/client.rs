//! HTTP(S) access to one repository of one registry, through its configured endpoints
//! (mirrors first). Authentication follows the registry's challenge: a bearer token from
//! its token service (with basic credentials, or an identity token), or basic auth.
//! Transient failures (connection errors, 429, 5xx) are retried with backoff.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RANGE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;

use super::auth::{Challenge, Credentials, parse_challenge};
use super::hosts::{HostConfig, RegistryHosts, api_host};
use crate::image::content::MAX_JSON_BLOB;
use crate::image::digest::Digest;
use crate::image::error::{Error, Result};

const ATTEMPTS: u32 = 4;

#[derive(Debug)]
struct Endpoint {
    host: String,
    base: String,
    http: reqwest::Client,
    /// The Authorization header value that last worked (token or basic).
    auth: tokio::sync::Mutex<Option<String>>,
}

/// A client for `registry/repository`.
#[derive(Debug)]
pub struct RegistryClient {
    registry: String,
    repository: String,
    endpoints: Vec<Endpoint>,
    creds: Option<Credentials>,
}

/// A manifest or index as served.
#[derive(Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub digest: Digest,
}

impl RegistryClient {
    pub fn new(
        hosts: &RegistryHosts,
        registry: &str,
        repository: &str,
        creds: Option<Credentials>,
    ) -> Result<Self> {
        let endpoints = hosts
            .endpoints(registry)
            .into_iter()
            .map(|h| endpoint(&h, &hosts.get(&h)))
            .collect::<Result<_>>()?;
        Ok(Self {
            registry: registry.into(),
            repository: repository.into(),
            endpoints,
            creds,
        })
    }

    /// Fetches the manifest (or index) named by a tag or digest; a digest-pinned fetch is
    /// verified against the digest.
    pub async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let path = format!("/v2/{}/manifests/{reference}", self.repository);
        let path = path.as_str();
        self.each_endpoint(|ep| async move {
            let resp = self
                .get(ep, path, Some(crate::image::manifest::ACCEPT), None)
                .await?;
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let url = resp.url().to_string();
            let bytes = read_limited(resp, MAX_JSON_BLOB, &self.registry, &url).await?;
            let digest = Digest::of(&bytes);
            if let Ok(pinned) = Digest::parse(reference)
                && pinned != digest
            {
                return Err(Error::DigestMismatch {
                    object: format!("manifest {url}"),
                    expected: pinned.to_string(),
                    actual: digest.to_string(),
                });
            }
            Ok(FetchedManifest {
                bytes,
                content_type,
                digest,
            })
        })
        .await
    }

    /// Fetches a small blob (a config) whole, verified.
    pub async fn small_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let resp = self.blob(digest, 0).await?;
        let url = resp.url().to_string();
        let bytes = read_limited(resp, MAX_JSON_BLOB, &self.registry, &url).await?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                object: format!("blob {url}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Starts a blob download from byte `offset`: the response is 200 (whole blob) or
    /// 206 (from `offset`; check [`range_start`]).
    pub async fn blob(&self, digest: &Digest, offset: u64) -> Result<Response> {
        let path = format!("/v2/{}/blobs/{digest}", self.repository);
        let range = (offset > 0).then(|| format!("bytes={offset}-"));
        self.each_endpoint(|ep| {
            let (path, range) = (path.clone(), range.clone());
            async move { self.get(ep, &path, None, range.as_deref()).await }
        })
        .await
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    async fn each_endpoint<'a, T, F, Fut>(&'a self, f: F) -> Result<T>
    where
        F: Fn(&'a Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last = None;
        for ep in &self.endpoints {
            match f(ep).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if self.endpoints.len() > 1 {
                        tracing::warn!(registry = %self.registry, endpoint = %ep.host, "endpoint failed, trying the next: {e}");
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::invalid(&self.registry, "no endpoints")))
    }

    /// GET with authentication and retries.
    async fn get(
        &self,
        ep: &Endpoint,
        path: &str,
        accept: Option<&str>,
        range: Option<&str>,
    ) -> Result<Response> {
        let url = format!("{}{path}", ep.base);
        // A mirror that refuses connections hands over to the next endpoint at once.
        let has_fallback = self
            .endpoints
            .last()
            .is_some_and(|last| !std::ptr::eq(last, ep));
        let mut authed_after_challenge = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = ep.http.get(&url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(r) = range {
                req = req.header(RANGE, r);
            }
            if let Some(h) = ep.auth.lock().await.clone() {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(source)
                    if attempt < ATTEMPTS
                        && !(source.is_connect() && has_fallback)
                        && (source.is_connect() || source.is_timeout() || source.is_request()) =>
                {
                    tracing::debug!(url, attempt, "retrying after: {source}");
                    backoff(attempt).await;
                    continue;
                }
                Err(source) => {
                    return Err(Error::Http {
                        registry: self.registry.clone(),
                        url,
                        source,
                    });
                }
            };
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED {
                if authed_after_challenge {
                    let reason = match &self.creds {
                        Some(_) => format!(
                            "{url}: the registry rejected the credentials (401 Unauthorized)"
                        ),
                        None => format!(
                            "{url}: the registry requires credentials and none were given (401 Unauthorized)"
                        ),
                    };
                    return Err(Error::Auth {
                        registry: self.registry.clone(),
                        reason,
                    });
                }
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let header = self.authenticate(ep, challenge, &url).await?;
                *ep.auth.lock().await = Some(header);
                authed_after_challenge = true;
                continue;
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
                && attempt < ATTEMPTS
            {
                tracing::debug!(url, attempt, %status, "retrying");
                backoff(attempt).await;
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            let body: String = body.chars().take(512).collect();
            if status == StatusCode::FORBIDDEN {
                return Err(Error::Auth {
                    registry: self.registry.clone(),
                    reason: format!("{url}: access denied (403): {body}"),
                });
            }
            return Err(Error::Registry {
                registry: self.registry.clone(),
                url,
                status: status.as_u16(),
                body,
            });
        }
    }

    /// Answers a challenge with an Authorization header value.
    async fn authenticate(
        &self,
        ep: &Endpoint,
        challenge: Option<Challenge>,
        url: &str,
    ) -> Result<String> {
        let auth_err = |reason: String| Error::Auth {
            registry: self.registry.clone(),
            reason,
        };
        match challenge {
            Some(Challenge::Basic) => match &self.creds {
                Some(Credentials::Basic { username, password }) => Ok(basic(username, password)),
                Some(_) => Err(auth_err(format!(
                    "{url}: the registry wants basic auth, but only a token was given"
                ))),
                None => Err(auth_err(format!(
                    "{url}: the registry requires credentials and none were given (401 Unauthorized)"
                ))),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                if let Some(Credentials::RegistryToken(t)) = &self.creds {
                    return Ok(format!("Bearer {t}"));
                }
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let mut token_url = reqwest::Url::parse(&realm)
                    .map_err(|e| auth_err(format!("token realm {realm:?}: {e}")))?;
                {
                    let mut q = token_url.query_pairs_mut();
                    if let Some(s) = &service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &scope);
                }
                let req = match &self.creds {
                    Some(Credentials::IdentityToken(t)) => {
                        let mut form =
                            reqwest::Url::parse("x:/").map_err(|e| auth_err(e.to_string()))?;
                        form.query_pairs_mut()
                            .append_pair("grant_type", "refresh_token")
                            .append_pair("refresh_token", t)
                            .append_pair("service", service.as_deref().unwrap_or_default())
                            .append_pair("scope", &scope)
                            .append_pair("client_id", "berth");
                        ep.http
                            .post(realm.as_str())
                            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .body(form.query().unwrap_or_default().to_string())
                    }
                    Some(Credentials::Basic { username, password }) => ep
                        .http
                        .get(token_url.clone())
                        .header(AUTHORIZATION, basic(username, password)),
                    _ => ep.http.get(token_url.clone()),
                };
                let resp = req.send().await.map_err(|source| Error::Http {
                    registry: self.registry.clone(),
                    url: realm.clone(),
                    source,
                })?;
                if !resp.status().is_success() {
                    return Err(auth_err(format!(
                        "token service {realm} answered {}",
                        resp.status()
                    )));
                }
                #[derive(Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let body = read_limited(resp, 1 << 20, &self.registry, &realm).await?;
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| auth_err(format!("token service {realm}: {e}")))?;
                let t = t
                    .token
                    .or(t.access_token)
                    .ok_or_else(|| auth_err(format!("token service {realm} returned no token")))?;
                Ok(format!("Bearer {t}"))
            }
            None => Err(auth_err(format!(
                "{url}: 401 without a usable WWW-Authenticate challenge"
            ))),
        }
    }
}

/// Where a 206 response's content starts (its Content-Range), if it says.
pub fn range_start(resp: &Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(100 * 4u64.pow(attempt - 1))).await;
}

async fn read_limited(
    mut resp: Response,
    limit: u64,
    registry: &str,
    url: &str,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|source| Error::Http {
        registry: registry.into(),
        url: url.into(),
        source,
    })? {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > limit {
            return Err(Error::invalid(
                url,
                format!("response larger than {limit} bytes"),
            ));
        }
    }
    Ok(out)
}

fn endpoint(host: &str, cfg: &HostConfig) -> Result<Endpoint> {
    let scheme = if cfg.plain_http { "http" } else { "https" };
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .danger_accept_invalid_certs(cfg.insecure_skip_verify)
        // A plain-HTTP host needs no trust roots: loading the system's costs megabytes.
        .tls_built_in_root_certs(!cfg.plain_http);
    for ca in &cfg.ca_files {
        let pem = std::fs::read(ca).map_err(Error::io("read CA file", ca))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::invalid(
                ca.display().to_string(),
                format!("not a PEM CA bundle: {e}"),
            )
        })?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    let http = b.build().map_err(|source| Error::Http {
        registry: host.into(),
        url: String::new(),
        source,
    })?;
    Ok(Endpoint {
        host: host.into(),
        base: format!("{scheme}://{}", api_host(host)),
        http,
        auth: tokio::sync::Mutex::new(None),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    //! The bearer-token flow against a small registry on loopback: the first request is
    //! challenged, the token service wants basic credentials, the token then opens the
    //! manifest. (The registry fixture does basic auth only.)
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::image::registry::hosts::HostConfig;

    const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

    /// Serves `count` connections; answers by path and Authorization header.
    fn token_registry(count: usize) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let realm = format!("http://{addr}/token");
        std::thread::spawn(move || {
            for conn in l.incoming().take(count).flatten() {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                let mut auth = String::new();
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization: ") {
                        auth = v.trim().to_string();
                    }
                }
                let basic = format!(
                    "basic {}",
                    base64::engine::general_purpose::STANDARD.encode("u:p")
                )
                .to_ascii_lowercase();
                let (status, extra, body): (&str, String, Vec<u8>) = if path.starts_with("/token?")
                {
                    if auth == basic && path.contains("scope=repository%3Arepo%3Apull") {
                        ("200 OK", String::new(), br#"{"token":"tok-123"}"#.to_vec())
                    } else {
                        ("401 Unauthorized", String::new(), b"bad creds".to_vec())
                    }
                } else if auth == "bearer tok-123" {
                    (
                        "200 OK",
                        "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".into(),
                        MANIFEST.to_vec(),
                    )
                } else {
                    let ch = format!(
                        "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"test\",scope=\"repository:repo:pull\"\r\n"
                    );
                    ("401 Unauthorized", ch, b"{}".to_vec())
                };
                let mut c = conn;
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(&body);
            }
        });
        addr
    }

    fn hosts(addr: &str) -> RegistryHosts {
        let mut h = RegistryHosts::default();
        h.registries.insert(
            addr.into(),
            HostConfig {
                plain_http: true,
                ..HostConfig::default()
            },
        );
        h
    }

    #[tokio::test]
    async fn bearer_token_flow_with_basic_credentials() {
        let addr = token_registry(3);
        let creds = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let c = RegistryClient::new(&hosts(&addr), &addr, "repo", Some(creds)).unwrap();
        let m = c.manifest("latest").await.unwrap();
        assert_eq!(m.bytes, MANIFEST);
        assert_eq!(m.digest, Digest::of(MANIFEST));
    }

    /// Answers 503 `failures` times, then serves the manifest.
    fn flaky_registry(failures: usize) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for (i, conn) in l.incoming().take(failures + 1).flatten().enumerate() {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let (status, body) = if i < failures {
                    ("503 Service Unavailable", &b"busy"[..])
                } else {
                    ("200 OK", MANIFEST)
                };
                let mut c = conn;
                let _ = write!(
                    c,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(body);
            }
        });
        addr
    }

    #[tokio::test]
    async fn transient_failures_are_retried() {
        let addr = flaky_registry(2);
        let c = RegistryClient::new(&hosts(&addr), &addr, "repo", None).unwrap();
        assert_eq!(c.manifest("latest").await.unwrap().bytes, MANIFEST);
        let addr = flaky_registry(ATTEMPTS as usize);
        let c = RegistryClient::new(&hosts(&addr), &addr, "repo", None).unwrap();
        let err = c.manifest("latest").await.unwrap_err();
        assert!(matches!(err, Error::Registry { status: 503, .. }), "{err}");
    }

    #[tokio::test]
    async fn a_refused_token_is_an_auth_error() {
        let addr = token_registry(2);
        let creds = Credentials::Basic {
            username: "u".into(),
            password: "wrong".into(),
        };
        let c = RegistryClient::new(&hosts(&addr), &addr, "repo", Some(creds)).unwrap();
        let err = c.manifest("latest").await.unwrap_err();
        assert!(matches!(err, Error::Auth { .. }), "{err}");
        assert!(err.to_string().contains("token service"), "{err}");
    }
}
