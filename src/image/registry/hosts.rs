//! Per-registry settings from berth's config, in the spirit of containerd's hosts.toml:
//!
//! ```yaml
//! registries:
//!   docker.io:
//!     mirrors: ["mirror.example.com:5000"]   # tried in order before docker.io itself
//!   "mirror.example.com:5000":
//!     caFiles: [/etc/berth/certs/mirror-ca.crt]
//!   "10.0.0.5:5000":
//!     plainHttp: true                          # http://, no TLS
//!   "lab.example.com":
//!     insecureSkipVerify: true                 # TLS without certificate checks
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image::error::{Error, Result};

/// The settings of one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct HostConfig {
    /// Other hosts serving this registry's content, tried in order before it.
    pub mirrors: Vec<String>,
    /// Speak plain HTTP to this host.
    pub plain_http: bool,
    /// Use TLS but do not verify the server certificate.
    pub insecure_skip_verify: bool,
    /// PEM CA bundles trusted for this host, besides the system roots.
    pub ca_files: Vec<PathBuf>,
}

/// Every configured registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryHosts {
    pub registries: BTreeMap<String, HostConfig>,
}

impl RegistryHosts {
    /// Reads a YAML (or JSON) file and validates it.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(Error::io("read registry config", path))?;
        let hosts: Self = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        hosts
            .validate()
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        Ok(hosts)
    }

    pub fn validate(&self) -> Result<()> {
        for (host, c) in &self.registries {
            check_host(host).map_err(|r| Error::invalid(format!("registries.{host}"), r))?;
            for (i, m) in c.mirrors.iter().enumerate() {
                check_host(m)
                    .map_err(|r| Error::invalid(format!("registries.{host}.mirrors[{i}]"), r))?;
            }
            if c.plain_http && (c.insecure_skip_verify || !c.ca_files.is_empty()) {
                return Err(Error::invalid(
                    format!("registries.{host}.plainHttp"),
                    "plain HTTP has no TLS settings (insecureSkipVerify, caFiles)",
                ));
            }
        }
        Ok(())
    }

    /// The settings for `host` (defaults when it is not listed).
    pub fn get(&self, host: &str) -> HostConfig {
        self.registries.get(host).cloned().unwrap_or_default()
    }

    /// The hosts to try for `registry`, in order: its mirrors, then itself.
    pub fn endpoints(&self, registry: &str) -> Vec<String> {
        let mut out = self.get(registry).mirrors;
        out.push(registry.to_string());
        out
    }
}

/// A host is `name[:port]`: no scheme, path or credentials.
fn check_host(h: &str) -> std::result::Result<(), &'static str> {
    if h.is_empty() || h.contains("://") || h.contains(['/', '@', ' ']) {
        return Err("expected host[:port] without scheme or path");
    }
    Ok(())
}

/// The host name requests go to: docker.io's API lives at registry-1.docker.io.
pub fn api_host(registry: &str) -> &str {
    if registry == "docker.io" || registry == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let y = "registries:\n  docker.io:\n    mirrors: [\"127.0.0.1:5001\"]\n  \"127.0.0.1:5001\":\n    plainHttp: true\n";
        let h: RegistryHosts = serde_yaml_ng::from_str(y).unwrap();
        h.validate().unwrap();
        assert_eq!(
            h.endpoints("docker.io"),
            vec!["127.0.0.1:5001", "docker.io"]
        );
        assert!(h.get("127.0.0.1:5001").plain_http);
        let bad: RegistryHosts =
            serde_yaml_ng::from_str("registries:\n  \"https://x\": {}\n").unwrap();
        assert!(bad.validate().is_err());
        assert!(
            serde_yaml_ng::from_str::<RegistryHosts>("registries:\n  x:\n    plainhttp: true\n")
                .is_err()
        );
    }
}
