//! The pod's DNS config (kubelet's pkg/kubelet/network/dns): ClusterFirst uses the
//! cluster's DNS (--cluster-dns, with the searches of the pod's namespace under
//! --cluster-domain and ndots:5), and falls back to Default (the node's resolv.conf) with
//! no cluster DNS or for a host-network pod, as kubelet does; ClusterFirstWithHostNet uses
//! the cluster's DNS for host-network pods too; None takes only the pod's dnsConfig;
//! dnsConfig is merged in.

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::Pod;

/// The node's resolv.conf as kubelet reads it (--resolv-conf).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
    /// kubelet's --cluster-dns: the cluster DNS service's addresses (none in standalone
    /// mode).
    pub cluster_servers: Vec<String>,
    /// kubelet's --cluster-domain (e.g. cluster.local).
    pub cluster_domain: String,
}

impl HostDns {
    /// Parses a resolv.conf (nameserver, search, domain, options lines).
    pub fn parse(text: &str) -> HostDns {
        let mut d = HostDns::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut f = line.split_whitespace();
            match f.next() {
                Some("nameserver") => d.servers.extend(f.next().map(String::from)),
                Some("search") | Some("domain") => d.searches = f.map(String::from).collect(),
                Some("options") => d.options.extend(f.map(String::from)),
                _ => {}
            }
        }
        // kubelet keeps at most 3 nameservers and 32 search domains.
        d.servers.truncate(3);
        d.searches.truncate(32);
        d
    }

    pub fn read(path: &std::path::Path) -> std::io::Result<HostDns> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }
}

fn push_unique(v: &mut Vec<String>, x: impl IntoIterator<Item = String>) {
    for s in x {
        if !v.contains(&s) {
            v.push(s);
        }
    }
}

/// The pod's DNS config.
pub fn pod_dns(pod: &Pod, host: &HostDns) -> cri::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network == Some(true);
    let cluster = !host.cluster_servers.is_empty()
        && match policy {
            "ClusterFirst" => !host_network,
            "ClusterFirstWithHostNet" => true,
            _ => false,
        };
    let mut out = if policy == "None" {
        cri::DnsConfig::default()
    } else if cluster {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut searches = Vec::new();
        if !host.cluster_domain.is_empty() {
            let d = &host.cluster_domain;
            searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        }
        push_unique(&mut searches, host.searches.clone());
        cri::DnsConfig {
            servers: host.cluster_servers.clone(),
            searches,
            options: vec!["ndots:5".to_string()],
        }
    } else {
        cri::DnsConfig {
            servers: host.servers.clone(),
            searches: host.searches.clone(),
            options: host.options.clone(),
        }
    };
    if let Some(c) = spec.dns_config {
        push_unique(&mut out.servers, c.nameservers.unwrap_or_default());
        push_unique(&mut out.searches, c.searches.unwrap_or_default());
        for o in c.options.unwrap_or_default() {
            let s = match o.value {
                Some(v) => format!("{}:{v}", o.name.unwrap_or_default()),
                None => o.name.unwrap_or_default(),
            };
            // A pod option replaces the host's option of the same name.
            let key = s.split(':').next().unwrap_or_default().to_string();
            out.options
                .retain(|x| x.split(':').next().unwrap_or_default() != key);
            out.options.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_and_dns_config_merge_as_kubelet_merges_them() {
        let host = HostDns::parse(
            "# c\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch a.example b.example\noptions ndots:2 edns0\n",
        );
        assert_eq!(host.servers, ["10.0.0.1", "10.0.0.2"]);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {"containers": [], "dnsConfig": {
                "nameservers": ["1.1.1.1"], "searches": ["c.example"],
                "options": [{"name": "ndots", "value": "5"}]}}
        }))
        .expect("pod");
        let d = pod_dns(&pod, &host);
        assert_eq!(d.servers, ["10.0.0.1", "10.0.0.2", "1.1.1.1"]);
        assert_eq!(d.searches, ["a.example", "b.example", "c.example"]);
        assert_eq!(d.options, ["edns0", "ndots:5"]);
        let mut none = pod.clone();
        none.spec.as_mut().expect("spec").dns_policy = Some("None".into());
        assert_eq!(pod_dns(&none, &host).servers, ["1.1.1.1"]);
    }

    #[test]
    fn cluster_first_uses_the_cluster_dns_but_not_for_host_network_pods() {
        let mut host = HostDns::parse("nameserver 10.0.0.1\nsearch corp.example\n");
        host.cluster_servers = vec!["10.96.0.10".into()];
        host.cluster_domain = "cluster.local".into();
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop"}, "spec": {"containers": []}
        }))
        .expect("pod");
        let d = pod_dns(&pod, &host);
        assert_eq!(d.servers, ["10.96.0.10"]);
        assert_eq!(
            d.searches,
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(d.options, ["ndots:5"]);
        let spec = pod.spec.as_mut().expect("spec");
        spec.host_network = Some(true);
        assert_eq!(pod_dns(&pod, &host).servers, ["10.0.0.1"]);
        pod.spec.as_mut().expect("spec").dns_policy = Some("ClusterFirstWithHostNet".into());
        assert_eq!(pod_dns(&pod, &host).servers, ["10.96.0.10"]);
    }
}
