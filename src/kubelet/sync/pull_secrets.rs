//! The credentials an image pull tries, from the pod's imagePullSecrets (upstream
//! pkg/credentialprovider: secrets.MakeDockerKeyring, BasicDockerKeyring and URLsMatch).
//! A `kubernetes.io/dockerconfigjson` Secret's `.dockerconfigjson` (`{"auths": {...}}`)
//! or a `kubernetes.io/dockercfg` Secret's `.dockercfg` (the map itself) name registries:
//! a host with an optional port and path prefix, `https://` or `http://` and a leading
//! `/v1/` or `/v2/` ignored, `*` and `?` as wildcards within a host label. An image gets
//! every matching entry, the most specific key first; with none, an image on Docker Hub
//! gets `index.docker.io`'s. Plain data in, plain data out.

use std::collections::BTreeMap;

use base64::Engine;
use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::image::reference::Reference;

const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
const DOCKERCFG_KEY: &str = ".dockercfg";
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";

/// Why a pull secret could not be read; names the Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullSecretError {
    #[error("pull secret {namespace}/{name}: {key}: {reason}")]
    Parse {
        namespace: String,
        name: String,
        key: &'static str,
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// base64 of `username:password`; it wins over the two fields.
    #[serde(default)]
    auth: String,
}

/// Registry keys to the credentials given for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keyring {
    /// Keys, most specific (reverse-sorted) first.
    index: Vec<String>,
    creds: BTreeMap<String, Vec<cri::AuthConfig>>,
}

/// The keyring of the pod's pull secrets, in their order; a Secret of another type, or
/// without its key, adds nothing. A Secret that does not parse fails the whole pull, as
/// upstream's does.
pub fn keyring(secrets: &[&Secret]) -> Result<Keyring, PullSecretError> {
    let mut k = Keyring::default();
    for s in secrets {
        let namespace = s.metadata.namespace.clone().unwrap_or_default();
        let name = s.metadata.name.clone().unwrap_or_default();
        let data = |key: &str| s.data.as_ref().and_then(|d| d.get(key)).map(|b| &b.0[..]);
        let ty = s.type_.as_deref().unwrap_or_default();
        let err = |key: &'static str, reason: String| PullSecretError::Parse {
            namespace: namespace.clone(),
            name: name.clone(),
            key,
            reason,
        };
        let entries = match (ty, data(DOCKER_CONFIG_JSON_KEY), data(DOCKERCFG_KEY)) {
            (DOCKER_CONFIG_JSON_TYPE, Some(b), _) if !b.is_empty() => {
                serde_json::from_slice::<DockerConfigJson>(b)
                    .map_err(|e| err(DOCKER_CONFIG_JSON_KEY, e.to_string()))?
                    .auths
            }
            (DOCKERCFG_TYPE, _, Some(b)) if !b.is_empty() => {
                serde_json::from_slice::<BTreeMap<String, DockerConfigEntry>>(b)
                    .map_err(|e| err(DOCKERCFG_KEY, e.to_string()))?
            }
            _ => continue,
        };
        let key_name = if ty == DOCKERCFG_TYPE {
            DOCKERCFG_KEY
        } else {
            DOCKER_CONFIG_JSON_KEY
        };
        for (registry, entry) in entries {
            let (username, password) = decode_entry(&entry)
                .map_err(|reason| err(key_name, format!("{registry}: {reason}")))?;
            k.add(&registry, username, password);
        }
    }
    Ok(k)
}

/// The username and password of an entry; `auth` decoded when given.
fn decode_entry(e: &DockerConfigEntry) -> Result<(String, String), String> {
    if e.auth.is_empty() {
        return Ok((e.username.clone(), e.password.clone()));
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e.auth.trim())
        .map_err(|err| format!("auth is not base64: {err}"))?;
    let s = String::from_utf8(raw).map_err(|_| "auth is not UTF-8".to_string())?;
    match s.split_once(':') {
        Some((u, p)) => Ok((u.to_string(), p.trim_matches('\0').to_string())),
        None => Err("auth is not username:password".into()),
    }
}

/// A registry location without its scheme: host (with port) and path.
fn split_location(loc: &str) -> (&str, &str) {
    let s = loc
        .strip_prefix("https://")
        .or_else(|| loc.strip_prefix("http://"))
        .unwrap_or(loc);
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

impl Keyring {
    fn add(&mut self, location: &str, username: String, password: String) {
        let (host, mut path) = split_location(location);
        if path.starts_with("/v2/") || path.starts_with("/v1/") {
            path = &path[3..];
        }
        let key = if path.is_empty() || path == "/" {
            host.to_string()
        } else {
            format!("{host}{path}")
        };
        let auth = cri::AuthConfig {
            username,
            password,
            server_address: host.to_string(),
            ..Default::default()
        };
        self.creds.entry(key.clone()).or_default().push(auth);
        if !self.index.contains(&key) {
            self.index.push(key);
            self.index.sort_by(|a, b| b.cmp(a));
        }
    }

    /// The credentials to try, in order, for an image's repository (`registry/repo`, as
    /// [`crate::image::reference::Reference`] normalises it).
    pub fn lookup(&self, repository: &str) -> Vec<cri::AuthConfig> {
        let mut out: Vec<cri::AuthConfig> = Vec::new();
        for k in &self.index {
            if urls_match(k, repository) {
                out.extend(self.creds[k].iter().cloned());
            }
        }
        if out.is_empty() && is_default_registry_match(repository) {
            out.extend(
                self.creds
                    .get(DEFAULT_REGISTRY_HOST)
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// The credentials to pull `image` with, one pull each in order until one succeeds;
/// `None` (anonymous) alone when nothing matches or the reference does not parse (the
/// pull then says why).
pub fn attempts(keyring: &Keyring, image: &str) -> Vec<Option<cri::AuthConfig>> {
    let creds = match Reference::parse(image) {
        Ok(r) => keyring.lookup(&format!("{}/{}", r.registry, r.repository)),
        Err(_) => Vec::new(),
    };
    if creds.is_empty() {
        vec![None]
    } else {
        creds.into_iter().map(Some).collect()
    }
}

/// The pull errors of every attempt, as upstream's aggregate error shows them: one
/// alone, several in brackets.
pub fn aggregate(mut errors: Vec<String>) -> String {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// Whether an image lives on Docker Hub (upstream isDefaultRegistryMatch).
fn is_default_registry_match(image: &str) -> bool {
    let Some(first) = image.split('/').next().filter(|f| !f.is_empty()) else {
        return false;
    };
    if !image.contains('/') || first == "docker.io" || first == DEFAULT_REGISTRY_HOST {
        return true;
    }
    !first.contains(['.', ':'])
}

/// Upstream URLsMatch: same port, same number of host labels each matching the glob's,
/// and the target's path under the glob's.
fn urls_match(glob: &str, target: &str) -> bool {
    let (g_host, g_path) = split_location(glob);
    let (t_host, t_path) = split_location(target);
    let split_port = |h: &str| -> (String, String) {
        match h.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => (name.to_string(), port.to_string()),
            _ => (h.to_string(), String::new()),
        }
    };
    let (g_name, g_port) = split_port(g_host);
    let (t_name, t_port) = split_port(t_host);
    if g_port != t_port {
        return false;
    }
    let g_parts: Vec<&str> = g_name.split('.').collect();
    let t_parts: Vec<&str> = t_name.split('.').collect();
    if g_parts.len() != t_parts.len() || !t_path.starts_with(g_path) {
        return false;
    }
    g_parts
        .iter()
        .zip(&t_parts)
        .all(|(g, t)| glob_match(g.as_bytes(), t.as_bytes()))
}

/// `*` (any run) and `?` (any one byte) within a host label; anything else literal.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_match(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob_match(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob_match(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, ty: &str, key: &str, value: serde_json::Value) -> Secret {
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            type_: Some(ty.into()),
            data: Some([(key.to_string(), ByteString(value.to_string().into_bytes()))].into()),
            ..Default::default()
        }
    }

    fn json_secret(name: &str, auths: serde_json::Value) -> Secret {
        secret(
            name,
            DOCKER_CONFIG_JSON_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            serde_json::json!({ "auths": auths }),
        )
    }

    fn users(k: &Keyring, image: &str) -> Vec<String> {
        k.lookup(image).into_iter().map(|a| a.username).collect()
    }

    #[test]
    fn host_port_and_path_prefix_match_as_upstream() {
        let s = json_secret(
            "pull",
            serde_json::json!({
                "https://registry.example.com/v2/": {"username": "host", "password": "p"},
                "registry.example.com/team": {"username": "team", "password": "p"},
                "registry.example.com:5000": {"username": "port", "password": "p"},
                "*.mirror.example.com": {"username": "glob", "password": "p"}
            }),
        );
        let k = keyring(&[&s]).unwrap();
        assert_eq!(users(&k, "registry.example.com/team/app"), ["team", "host"]);
        assert_eq!(users(&k, "registry.example.com/other/app"), ["host"]);
        assert_eq!(users(&k, "registry.example.com:5000/x"), ["port"]);
        assert_eq!(users(&k, "eu.mirror.example.com/x"), ["glob"]);
        // A wildcard stands for one label only.
        assert!(users(&k, "a.b.mirror.example.com/x").is_empty());
        assert!(users(&k, "docker.io/library/busybox").is_empty());
        let a = &k.lookup("registry.example.com/other/app")[0];
        assert_eq!(
            (a.password.as_str(), a.server_address.as_str()),
            ("p", "registry.example.com")
        );
    }

    #[test]
    fn docker_hub_images_get_index_docker_io() {
        let s = json_secret(
            "hub",
            serde_json::json!({"https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="}}),
        );
        let k = keyring(&[&s]).unwrap();
        let a = k.lookup("docker.io/library/busybox");
        assert_eq!(a.len(), 1);
        assert_eq!(
            (a[0].username.as_str(), a[0].password.as_str()),
            ("hub", "secret")
        );
        assert_eq!(users(&k, "docker.io/someone/app"), ["hub"]);
        assert!(users(&k, "quay.io/someone/app").is_empty());
        assert!(is_default_registry_match("busybox"));
        assert!(is_default_registry_match("someone/app"));
        assert!(!is_default_registry_match("localhost:5000/app"));
    }

    #[test]
    fn every_matching_secret_is_tried_in_order() {
        let a = json_secret(
            "a",
            serde_json::json!({"r.example.com": {"username": "first"}}),
        );
        let b = secret(
            "b",
            DOCKERCFG_TYPE,
            DOCKERCFG_KEY,
            serde_json::json!({"r.example.com": {"username": "second"}}),
        );
        let other = secret("c", "Opaque", DOCKER_CONFIG_JSON_KEY, serde_json::json!({}));
        let k = keyring(&[&a, &other, &b]).unwrap();
        assert_eq!(users(&k, "r.example.com/app"), ["first", "second"]);
    }

    #[test]
    fn a_bad_secret_names_itself() {
        let bad = secret(
            "broken",
            DOCKER_CONFIG_JSON_TYPE,
            DOCKER_CONFIG_JSON_KEY,
            serde_json::json!("not an object"),
        );
        let e = keyring(&[&bad]).unwrap_err().to_string();
        assert!(
            e.starts_with("pull secret ns/broken: .dockerconfigjson:"),
            "{e}"
        );
        let bad_auth = json_secret(
            "auth",
            serde_json::json!({"r.io": {"auth": "bm9jb2xvbg=="}}),
        );
        let e = keyring(&[&bad_auth]).unwrap_err().to_string();
        assert!(e.contains("r.io: auth is not username:password"), "{e}");
    }

    #[test]
    fn an_image_is_pulled_with_each_match_or_anonymously() {
        let s = json_secret(
            "hub",
            serde_json::json!({
                "docker.io": {"username": "a"},
                "https://index.docker.io/v1/": {"username": "b"}
            }),
        );
        let k = keyring(&[&s]).unwrap();
        let who = |image: &str| -> Vec<Option<String>> {
            attempts(&k, image)
                .into_iter()
                .map(|a| a.map(|a| a.username))
                .collect()
        };
        // `busybox` is docker.io/library/busybox: the docker.io key matches it.
        assert_eq!(who("busybox:1.36"), [Some("a".to_string())]);
        assert_eq!(
            who(
                "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            ),
            [None]
        );
        assert_eq!(who("Not A Reference"), [None]);
        assert_eq!(aggregate(vec!["one".into()]), "one");
        assert_eq!(aggregate(vec!["one".into(), "two".into()]), "[one, two]");
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"reg?", b"reg1"));
        assert!(!glob_match(b"reg?", b"reg"));
        assert!(glob_match(b"a*c", b"abbbc"));
        assert!(!glob_match(b"a*c", b"abd"));
    }
}
