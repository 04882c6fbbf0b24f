//! The default network for a node: berth's bridge with host-local addresses from the
//! node's pod CIDR, masquerade for traffic leaving it, and host ports.

use serde_json::{Value, json};

/// The file name the default list is installed under in /etc/cni/net.d.
pub const FILE_NAME: &str = "10-berth.conflist";

/// The default network list for a node whose pods get addresses from `pod_cidrs` (one
/// IPv4 and/or one IPv6 CIDR, e.g. the Node's `spec.podCIDRs`).
pub fn default_conflist(pod_cidrs: &[&str]) -> Value {
    let ranges: Vec<Value> = pod_cidrs.iter().map(|c| json!([{"subnet": c}])).collect();
    let routes: Vec<Value> = pod_cidrs
        .iter()
        .map(|c| json!({"dst": if c.contains(':') { "::/0" } else { "0.0.0.0/0" }}))
        .collect();
    json!({
        "cniVersion": "1.1.0",
        "name": "berth",
        "plugins": [
            {
                "type": "berth-bridge",
                "bridge": "berth0",
                "isGateway": true,
                "isDefaultGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {"type": "berth-host-local", "ranges": ranges, "routes": routes}
            },
            {"type": "berth-portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::cni::NetworkList;

    #[test]
    fn shipped_file_is_the_default_and_valid() {
        let shipped = include_str!("../../../systemd/10-berth.conflist");
        let v: Value = serde_json::from_str(shipped).expect("shipped conflist is JSON");
        assert_eq!(v, default_conflist(&["10.244.0.0/24"]));
        let list = NetworkList::parse(std::path::Path::new(FILE_NAME), shipped.as_bytes())
            .expect("valid list");
        assert_eq!(list.plugins.len(), 2);
        let dual = default_conflist(&["10.244.0.0/24", "fd00:10:244::/64"]);
        assert_eq!(dual["plugins"][0]["ipam"]["routes"][1]["dst"], "::/0");
    }
}
