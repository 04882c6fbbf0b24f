//! The kubelet-managed /etc/hosts of a pod's containers (upstream kubelet_pods.go
//! managedHostsFileContent, nodeHostsFileContent, GeneratePodHostNameAndDomain): the
//! localhost lines and the pod's IPs with its hostname, or on the host network the node's
//! own file; then the pod's hostAliases.

use k8s_openapi::api::core::v1::{HostAlias, Pod};

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const MANAGED_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";
const HOSTNAME_MAX_LEN: usize = 63;

/// The pod's hostname (spec.hostname or its name, cut to 63 characters without a
/// trailing `-` or `.`) and domain (`<subdomain>.<namespace>.svc.<cluster domain>` when
/// a subdomain is set, else empty).
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, String) {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut hostname = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or(name);
    if hostname.len() > HOSTNAME_MAX_LEN {
        let mut cut = HOSTNAME_MAX_LEN;
        while !hostname.is_char_boundary(cut) {
            cut -= 1;
        }
        hostname.truncate(cut);
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    let domain = match spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|s| !s.is_empty())
    {
        Some(sub) => format!(
            "{sub}.{}.svc.{cluster_domain}",
            pod.metadata.namespace.as_deref().unwrap_or_default()
        ),
        None => String::new(),
    };
    (hostname, domain)
}

/// The managed file of a pod on its own network.
pub fn managed_content(
    ips: &[String],
    hostname: &str,
    domain: &str,
    aliases: &[HostAlias],
) -> String {
    let mut s = String::from(MANAGED_HEADER);
    s.push_str("127.0.0.1\tlocalhost\n");
    s.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    s.push_str("fe00::0\tip6-localnet\n");
    s.push_str("fe00::0\tip6-mcastprefix\n");
    s.push_str("fe00::1\tip6-allnodes\n");
    s.push_str("fe00::2\tip6-allrouters\n");
    for ip in ips {
        if domain.is_empty() {
            s.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            s.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    s.push_str(&alias_entries(aliases));
    s
}

/// The file of a host-network pod: the node's own, then the aliases.
pub fn host_network_content(node_hosts: &str, aliases: &[HostAlias]) -> String {
    format!(
        "{MANAGED_HEADER_HOST_NETWORK}{node_hosts}{}",
        alias_entries(aliases)
    )
}

fn alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        let names = a.hostnames.as_deref().unwrap_or_default().join("\t");
        s.push_str(&format!("{}\t{names}\n", a.ip));
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "prod"},
            "spec": spec,
        }))
        .unwrap()
    }

    const LOCAL: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";

    #[test]
    fn plain_pod() {
        let p = pod(json!({"containers": []}));
        let (h, d) = hostname_and_domain(&p, "cluster.local");
        assert_eq!((h.as_str(), d.as_str()), ("web-0", ""));
        let ips = vec!["10.1.0.4".to_string(), "fd00::4".to_string()];
        assert_eq!(
            managed_content(&ips, &h, &d, &[]),
            format!("{LOCAL}10.1.0.4\tweb-0\nfd00::4\tweb-0\n")
        );
    }

    #[test]
    fn subdomain_and_aliases() {
        let p = pod(
            json!({"containers": [], "hostname": "db", "subdomain": "svc1",
            "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["foo", "bar"]}, {"ip": "::5", "hostnames": ["baz"]}]}),
        );
        let (h, d) = hostname_and_domain(&p, "cluster.local");
        assert_eq!(d, "svc1.prod.svc.cluster.local");
        let aliases = p.spec.as_ref().unwrap().host_aliases.clone().unwrap();
        assert_eq!(
            managed_content(&["10.1.0.4".into()], &h, &d, &aliases),
            format!(
                "{LOCAL}10.1.0.4\tdb.svc1.prod.svc.cluster.local\tdb\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n::5\tbaz\n"
            )
        );
        assert_eq!(
            host_network_content("127.0.0.1 localhost\n", &aliases),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo\tbar\n::5\tbaz\n"
        );
    }

    #[test]
    fn long_hostname_is_cut() {
        let long = format!("{}-.{}", "a".repeat(61), "b".repeat(10));
        let p: Pod =
            serde_json::from_value(json!({"metadata": {"name": long}, "spec": {"containers": []}}))
                .unwrap();
        assert_eq!(hostname_and_domain(&p, "cluster.local").0, "a".repeat(61));
    }
}
