//! berth-bridge's configuration and its validation.

use serde::Deserialize;

use crate::entry::{Request, validate_ifname};
use crate::error::{Code, Error, Result};
use crate::hostlocal::config::Attachment;
use crate::types::parse_conf;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    pub name: String,
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub is_default_gateway: bool,
    #[serde(default)]
    pub force_address: bool,
    #[serde(default)]
    pub ip_masq: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub hairpin_mode: bool,
    #[serde(default)]
    pub promisc_mode: bool,
    #[serde(default)]
    pub ipam: Option<Ipam>,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Vec<Attachment>,
}

#[derive(Debug, Deserialize)]
pub struct Ipam {
    #[serde(rename = "type")]
    pub kind: String,
}

fn default_bridge() -> String {
    "cni0".into()
}

impl NetConf {
    pub fn load(req: &Request) -> Result<Self> {
        let mut conf: NetConf = parse_conf(&req.stdin)?;
        if req.command == crate::entry::Command::Del {
            // DEL is best-effort: a value ADD would reject must not keep its teardown
            // from running.
            return Ok(conf);
        }
        validate_ifname(&conf.bridge)
            .map_err(|e| Error::config(format!("bridge: {}", e.msg.replace("CNI_IFNAME ", ""))))?;
        if let Some(mtu) = conf.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(Error::config(format!(
                "mtu {mtu}: must be between 68 and 65535"
            )));
        }
        if conf.is_default_gateway {
            // A default gateway on the bridge means the bridge is the gateway.
            conf.is_gateway = true;
        }
        if conf.hairpin_mode && conf.promisc_mode {
            return Err(Error::config(
                "hairpinMode and promiscMode cannot both be set",
            ));
        }
        Ok(conf)
    }

    /// The IPAM plugin's name; bridge without IPAM is not supported.
    pub fn ipam_type(&self) -> Result<&str> {
        self.ipam
            .as_ref()
            .map(|i| i.kind.as_str())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Error::new(Code::InvalidConfig, "ipam.type: required"))
    }
}

/// The host end of the pod's veth: derived from the attachment so that DEL finds it
/// without the pod's namespace (FNV-1a; 12 hex digits keep collisions out of reach).
pub fn host_veth_name(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("vb{:012x}", h & 0xffff_ffff_ffff)
}

/// True for names [`host_veth_name`] makes.
pub fn is_host_veth_name(name: &str) -> bool {
    name.len() == 14 && name.starts_with("vb") && name[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The tag berth-bridge puts on the nftables objects of one attachment.
pub fn tag(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{network}:{container_id}:{ifname}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_short_and_distinct() {
        let a = host_veth_name("abc", "eth0");
        assert_eq!(a, host_veth_name("abc", "eth0"));
        assert_ne!(a, host_veth_name("abc", "eth1"));
        assert!(a.len() < 16);
        assert!(is_host_veth_name(&a));
        assert!(!is_host_veth_name("veth1234"));
    }
}
