//! Registry credentials: from a CRI `AuthConfig`, a docker-config-style file
//! (`{"auths": {"host": {"auth": base64(user:pass)}}}`) or a `user:password` flag; and the
//! `WWW-Authenticate` challenges registries answer with.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::image::error::{Error, Result};

/// What a client presents to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token exchanged at the token endpoint.
    IdentityToken(String),
    /// A bearer token used as is.
    RegistryToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

/// The CRI's `AuthConfig` message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
    pub auth: String,
    pub server_address: String,
    pub identity_token: String,
    pub registry_token: String,
}

impl AuthConfig {
    /// The credentials it carries, if any.
    pub fn credentials(&self) -> Result<Option<Credentials>> {
        if !self.registry_token.is_empty() {
            return Ok(Some(Credentials::RegistryToken(
                self.registry_token.clone(),
            )));
        }
        if !self.identity_token.is_empty() {
            return Ok(Some(Credentials::IdentityToken(
                self.identity_token.clone(),
            )));
        }
        if !self.username.is_empty() {
            return Ok(Some(Credentials::Basic {
                username: self.username.clone(),
                password: self.password.clone(),
            }));
        }
        if !self.auth.is_empty() {
            return decode_auth(&self.auth, "AuthConfig.auth").map(Some);
        }
        Ok(None)
    }
}

/// `user:password` as a flag gives it.
pub fn parse_user_pass(s: &str) -> Result<Credentials> {
    let (u, p) = s
        .split_once(':')
        .ok_or_else(|| Error::invalid("--creds", "expected USER:PASSWORD"))?;
    if u.is_empty() {
        return Err(Error::invalid("--creds", "empty user name"));
    }
    Ok(Credentials::Basic {
        username: u.into(),
        password: p.into(),
    })
}

fn decode_auth(b64: &str, object: &str) -> Result<Credentials> {
    let raw = STANDARD
        .decode(b64.trim())
        .map_err(|e| Error::invalid(object, format!("not base64: {e}")))?;
    let s = String::from_utf8(raw).map_err(|_| Error::invalid(object, "not UTF-8"))?;
    parse_user_pass(&s).map_err(|_| Error::invalid(object, "expected base64 of user:password"))
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DockerAuth {
    auth: String,
    username: String,
    password: String,
    identitytoken: String,
    registrytoken: String,
}

/// The credentials a docker-config-style file holds for `registry`. Keys may be a bare
/// host or a URL (`https://index.docker.io/v1/` for docker.io).
pub fn from_docker_config(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let bytes = std::fs::read(path).map_err(Error::io("read auth file", path))?;
    let cfg: DockerConfig = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        object: path.display().to_string(),
        source,
    })?;
    let wanted = |k: &str| {
        let host = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host);
        host == registry
            || (registry == "docker.io"
                && matches!(
                    host,
                    "index.docker.io" | "registry-1.docker.io" | "docker.io"
                ))
    };
    let Some((key, a)) = cfg.auths.iter().find(|(k, _)| wanted(k)) else {
        return Ok(None);
    };
    let object = format!("{}: auths.{key}", path.display());
    let c = AuthConfig {
        username: a.username.clone(),
        password: a.password.clone(),
        auth: a.auth.clone(),
        identity_token: a.identitytoken.clone(),
        registry_token: a.registrytoken.clone(),
        server_address: key.clone(),
    };
    c.credentials()
        .map_err(|e| Error::invalid(object, e.to_string()))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (k, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(k.trim().to_ascii_lowercase(), v);
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into())
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="berth-test""#),
            Some(Challenge::Basic)
        );
    }

    #[test]
    fn cri_auth_config_gives_credentials() {
        let c = AuthConfig {
            auth: STANDARD.encode("u:p"),
            ..AuthConfig::default()
        };
        assert_eq!(
            c.credentials().unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        let c = AuthConfig {
            registry_token: "t".into(),
            username: "u".into(),
            ..AuthConfig::default()
        };
        assert_eq!(
            c.credentials().unwrap(),
            Some(Credentials::RegistryToken("t".into()))
        );
        assert_eq!(AuthConfig::default().credentials().unwrap(), None);
        assert!(
            AuthConfig {
                auth: "%%%".into(),
                ..AuthConfig::default()
            }
            .credentials()
            .is_err()
        );
    }

    #[test]
    fn docker_config_auth_decodes() {
        let dir = std::env::temp_dir().join(format!("berth-unit-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.json");
        let auth = STANDARD.encode("u:p:w");
        std::fs::write(&p, format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},"r:5000":{{"username":"a","password":"b"}}}}}}"#)).unwrap();
        assert_eq!(
            from_docker_config(&p, "docker.io").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p:w".into()
            })
        );
        assert_eq!(
            from_docker_config(&p, "r:5000").unwrap(),
            Some(Credentials::Basic {
                username: "a".into(),
                password: "b".into()
            })
        );
        assert_eq!(from_docker_config(&p, "other").unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
