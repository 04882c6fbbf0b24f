//! The spec's data: the network configuration every plugin reads and the result it
//! returns, in the JSON shapes of CNI 1.1 (and 0.4.0, which differs only in `ips[].version`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Code, Error, Result};

/// The spec versions these plugins accept on stdin and emit results in (0.3.x results
/// have the same shape as 0.4.0).
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The oldest version that knows the STATUS and GC verbs.
pub const VERSION_WITH_GC: &str = "1.1.0";

/// The fields every plugin configuration carries.
#[derive(Debug, Clone, Deserialize)]
pub struct Common {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "prevResult", default)]
    pub prev_result: Option<serde_json::Value>,
}

impl Common {
    /// Checks the version and the name; the spec's code 1 for an unknown version.
    pub fn validate(&self) -> Result<()> {
        if !SUPPORTED_VERSIONS.contains(&self.cni_version.as_str()) {
            return Err(Error::new(
                Code::IncompatibleVersion,
                format!(
                    "incompatible CNI versions: config is {:?}, plugin supports {:?}",
                    self.cni_version, SUPPORTED_VERSIONS
                ),
            ));
        }
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(Error::config(format!(
                "network name {:?}: must be non-empty and only letters, digits, '_', '.', '-'",
                self.name
            )));
        }
        Ok(())
    }

    /// The previous plugin's result, if any, parsed.
    pub fn prev_result(&self) -> Result<Option<CniResult>> {
        self.prev_result
            .as_ref()
            .map(|v| {
                serde_json::from_value(v.clone())
                    .map_err(|e| Error::new(Code::Decode, "decode prevResult").with_details(e))
            })
            .transpose()
    }
}

/// A plugin's result (ADD), as chained through `prevResult`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Only in 0.4.0 results: "4" or "6".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl CniResult {
    /// The result in the shape of `version` (0.4.0 carries `ips[].version`).
    pub fn for_version(mut self, version: &str) -> Self {
        self.cni_version = version.to_string();
        let old = version.starts_with("0.");
        for ip in &mut self.ips {
            ip.version = old.then(|| {
                if ip.address.addr().is_ipv4() {
                    "4"
                } else {
                    "6"
                }
                .into()
            });
        }
        self
    }
}

/// Parses a plugin's whole configuration from stdin, naming the bad field on failure.
pub fn parse_conf<T: serde::de::DeserializeOwned>(stdin: &[u8]) -> Result<T> {
    serde_json::from_slice(stdin)
        .map_err(|e| Error::new(Code::Decode, "decode network configuration").with_details(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_round_trips_and_versions() {
        let j = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
            "ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}]}"#;
        let r: CniResult = serde_json::from_str(j).expect("parse");
        assert_eq!(r.ips[0].address.to_string(), "10.1.0.5/24");
        let old = r.clone().for_version("0.4.0");
        assert_eq!(old.ips[0].version.as_deref(), Some("4"));
        let v = serde_json::to_value(r.for_version("1.1.0")).expect("ser");
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn unknown_version_is_code_1() {
        let c: Common =
            serde_json::from_str(r#"{"cniVersion":"9.9.9","name":"n","type":"t"}"#).expect("p");
        assert_eq!(
            c.validate().expect_err("bad").code,
            Code::IncompatibleVersion
        );
    }
}
