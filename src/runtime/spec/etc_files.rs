//! The pod's /etc files as upstream writes them: resolv.conf (containerd's
//! parseDNSOptions) and kubelet's two /etc/hosts forms.

/// containerd's parseDNSOptions: `search`, then one `nameserver` per server, then
/// `options`; an empty config gives empty content.
pub fn resolv_conf_content(servers: &[String], searches: &[String], options: &[String]) -> String {
    let mut s = String::new();
    if !searches.is_empty() {
        s += &format!("search {}\n", searches.join(" "));
    }
    if !servers.is_empty() {
        s += &format!("nameserver {}\n", servers.join("\nnameserver "));
    }
    if !options.is_empty() {
        s += &format!("options {}\n", options.join(" "));
    }
    s
}

/// One HostAlias of a pod (for kubelet's managed hosts file).
#[derive(Debug, Clone, Default)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

fn alias_lines(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n# Entries added by HostAliases.\n");
    for a in aliases {
        for h in &a.hostnames {
            s += &format!("{}\t{h}\n", a.ip);
        }
    }
    s
}

/// kubelet's managedHostsFileContent: the /etc/hosts kubelet mounts into the containers
/// of a pod with its own network.
pub fn managed_hosts(
    pod_ips: &[String],
    hostname: &str,
    domain: &str,
    aliases: &[HostAlias],
) -> String {
    let mut s = String::from("# Kubernetes-managed hosts file.\n");
    s += "127.0.0.1\tlocalhost\n";
    s += "::1\tlocalhost ip6-localhost ip6-loopback\n";
    s += "fe00::0\tip6-localnet\n";
    s += "fe00::0\tip6-mcastprefix\n";
    s += "fe00::1\tip6-allnodes\n";
    s += "fe00::2\tip6-allrouters\n";
    for ip in pod_ips {
        if domain.is_empty() {
            s += &format!("{ip}\t{hostname}\n");
        } else {
            s += &format!("{ip}\t{hostname}.{domain}\t{hostname}\n");
        }
    }
    s + &alias_lines(aliases)
}

/// kubelet's nodeHostsFileContent: the node's /etc/hosts for a host-network pod.
pub fn node_hosts(node_hosts: &str, aliases: &[HostAlias]) -> String {
    format!(
        "# Kubernetes-managed hosts file (host network).\n{node_hosts}{}",
        alias_lines(aliases)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // containerd parseDNSOptions
    #[test]
    fn resolv_conf_content_like_containerd() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolv_conf_content(
                &s(&["10.0.0.10", "8.8.8.8"]),
                &s(&["default.svc.cluster.local", "svc.cluster.local"]),
                &s(&["ndots:5"])
            ),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 8.8.8.8\noptions ndots:5\n"
        );
        assert_eq!(resolv_conf_content(&[], &[], &[]), "");
        assert_eq!(
            resolv_conf_content(&s(&["1.1.1.1"]), &[], &[]),
            "nameserver 1.1.1.1\n"
        );
    }

    // kubelet managedHostsFileContent / nodeHostsFileContent
    #[test]
    fn hosts_files_like_kubelet() {
        let aliases = [HostAlias {
            ip: "10.1.1.1".into(),
            hostnames: vec!["a".into(), "b".into()],
        }];
        assert_eq!(
            managed_hosts(
                &["10.244.0.5".into()],
                "web-0",
                "web.default.svc.cluster.local",
                &aliases
            ),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.0.5\tweb-0.web.default.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n10.1.1.1\ta\n10.1.1.1\tb\n"
        );
        assert!(
            managed_hosts(&["10.0.0.1".into(), "fd00::1".into()], "p", "", &[])
                .ends_with("10.0.0.1\tp\nfd00::1\tp\n")
        );
        assert_eq!(
            node_hosts("127.0.0.1 localhost\n", &[]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n"
        );
    }

    // containerd DefaultCRIAnnotations(sandbox = true) and the sandbox resource annotations
}
