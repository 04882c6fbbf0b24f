//! RunPodSandbox: what the pod's holder is set up with, from a PodSandboxConfig, as
//! plain data (containerd's sandboxContainerSpec and setupSandboxFiles, without the pause
//! container): hostname, the /etc/hostname, /etc/hosts and /etc/resolv.conf it serves to
//! the pod's containers, namespace modes, sysctls, port mappings, cgroup path, and the
//! security settings, each checked.

use std::collections::BTreeMap;
use std::net::IpAddr;

use cri_proto::v1::PodSandboxConfig;

use super::error::{Result, SpecError};
use super::namespaces::{CONTAINER, NODE, POD, TARGET};
use super::security;
use super::user;

/// containerd's defaultSandboxOOMAdj: the holder should be the last thing killed.
pub const DEFAULT_SANDBOX_OOM_ADJ: i32 = -998;
/// containerd's defaultShmSize for the pod's /dev/shm tmpfs.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Sandbox settings containerd keeps in its CRI config (containerd 2.x defaults).
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Add net.ipv4.ip_unprivileged_port_start=0 to pods with their own network.
    pub enable_unprivileged_ports: bool,
    /// Add net.ipv4.ping_group_range="0 2147483647" to pods with their own network.
    pub enable_unprivileged_icmp: bool,
    pub restrict_oom_score_adj: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            enable_unprivileged_ports: true,
            enable_unprivileged_icmp: true,
            restrict_oom_score_adj: false,
        }
    }
}

/// Whether the pod has its own namespace of a kind or uses the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pod,
    Node,
}

/// The pod's PID namespace: shared by its containers, one per container, or the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidMode {
    Pod,
    Container,
    Node,
}

/// The sandbox's /etc/resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvConf {
    /// Written with this content (a dns_config was given).
    Content(String),
    /// A copy of the node's /etc/resolv.conf (no dns_config).
    CopyHost,
}

/// A validated port mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    /// "tcp", "udp" or "sctp".
    pub protocol: &'static str,
    pub container_port: u16,
    /// 0: not published on the host.
    pub host_port: u16,
    pub host_ip: Option<IpAddr>,
}

/// What the holder of a pod is set up with.
#[derive(Debug, Clone)]
pub struct SandboxPlan {
    pub hostname: String,
    /// The content of the pod's /etc/hostname.
    pub hostname_file: String,
    pub resolv_conf: ResolvConf,
    /// containerd gives the sandbox a copy of the node's /etc/hosts (kubelet then mounts
    /// its own managed file into each container).
    pub hosts_from_node: bool,
    pub network: Mode,
    pub ipc: Mode,
    pub pid: PidMode,
    /// Sorted, validated against the namespaces the pod has.
    pub sysctls: BTreeMap<String, String>,
    pub port_mappings: Vec<PortMap>,
    /// `<cgroup_parent>/<sandbox id>`, or none without a parent.
    pub cgroups_path: Option<String>,
    pub privileged: bool,
    /// The user string the sandbox asked to run as (`uid[:gid]`), if any.
    pub run_as: Option<String>,
    pub oom_score_adj: i32,
    /// The pod's /dev/shm size, when it has its own IPC namespace.
    pub shm_size: Option<u64>,
    /// The holder's cgroup CPU shares (containerd's DefaultSandboxCPUshares).
    pub cpu_shares: u64,
    /// containerd's sandbox annotations (DefaultCRIAnnotations, sandbox resources).
    pub annotations: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

/// containerd's DefaultSandboxCPUshares.
pub const DEFAULT_SANDBOX_CPU_SHARES: u64 = 2;

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

/// runc's sysctl rule: only sysctls of a namespace the pod has; kernel.hostname has its
/// own field. `uts` follows the network mode (a host-network pod uses the host's UTS).
pub fn check_sysctl(object: &str, key: &str, network: Mode, ipc: Mode) -> Result<()> {
    let field = format!("linux.sysctls[{key}]");
    let refuse = |reason: String| Err(SpecError::invalid(object, field.clone(), reason));
    if key.is_empty() || key.contains('/') || key.split('.').any(str::is_empty) {
        return refuse(format!("{key:?} is not a sysctl name"));
    }
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return match ipc {
            Mode::Pod => Ok(()),
            Mode::Node => refuse(format!(
                "sysctl {key:?} is not allowed in the host's ipc namespace"
            )),
        };
    }
    if key.starts_with("net.") {
        return match network {
            Mode::Pod => Ok(()),
            Mode::Node => refuse(format!(
                "sysctl {key:?} is not allowed in the host's network namespace"
            )),
        };
    }
    if network == Mode::Pod {
        match key {
            "kernel.domainname" => return Ok(()),
            "kernel.hostname" => {
                return refuse(format!(
                    "sysctl {key:?} is not allowed as it conflicts with the hostname field"
                ));
            }
            _ => {}
        }
    }
    refuse(format!(
        "sysctl {key:?} is not in a separate kernel namespace"
    ))
}

fn port_mappings(object: &str, cfg: &PodSandboxConfig, network: Mode) -> Result<Vec<PortMap>> {
    let mut out = vec![];
    for (i, p) in cfg.port_mappings.iter().enumerate() {
        let field = |f: &str| format!("port_mappings[{i}].{f}");
        let protocol = match p.protocol {
            0 => "tcp",
            1 => "udp",
            2 => "sctp",
            x => {
                return Err(SpecError::invalid(
                    object,
                    field("protocol"),
                    format!("unknown protocol {x}"),
                ));
            }
        };
        let container_port = u16::try_from(p.container_port)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                SpecError::invalid(
                    object,
                    field("container_port"),
                    format!("{} is outside 1..65535", p.container_port),
                )
            })?;
        let host_port = u16::try_from(p.host_port).map_err(|_| {
            SpecError::invalid(
                object,
                field("host_port"),
                format!("{} is outside 0..65535", p.host_port),
            )
        })?;
        let host_ip = if p.host_ip.is_empty() {
            None
        } else {
            Some(p.host_ip.parse::<IpAddr>().map_err(|_| {
                SpecError::invalid(
                    object,
                    field("host_ip"),
                    format!("{:?} is not an IP address", p.host_ip),
                )
            })?)
        };
        // A host-network pod's ports are the node's already; kubelet still reports them.
        if network == Mode::Node && host_port != 0 && host_port != container_port {
            return Err(SpecError::invalid(
                object,
                field("host_port"),
                format!(
                    "a host-network pod cannot map host port {host_port} to container port {container_port}"
                ),
            ));
        }
        out.push(PortMap {
            protocol,
            container_port,
            host_port,
            host_ip,
        });
    }
    Ok(out)
}

/// Plans the holder of sandbox `id` from its config; `facts` gives the node's hostname
/// (for a pod without one) and this process's oom_score_adj limits (see
/// [`super::resources::oom_score_adj`]).
pub fn sandbox_plan(
    id: &str,
    cfg: &PodSandboxConfig,
    opts: &SandboxOptions,
    facts: &super::container::HostFacts,
) -> Result<SandboxPlan> {
    let node_hostname = facts.hostname.as_str();
    let object = match &cfg.metadata {
        Some(m) => format!("pod {}/{}", m.namespace, m.name),
        None => format!("pod sandbox {id}"),
    };
    let object = object.as_str();
    let Some(meta) = &cfg.metadata else {
        return Err(SpecError::invalid(
            object,
            "metadata",
            "pod sandbox config must include metadata",
        ));
    };
    if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
        return Err(SpecError::invalid(
            object,
            "metadata",
            "name, namespace and uid must all be set",
        ));
    }
    let mut warnings = vec![];
    let linux = cfg.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let ns = sc.and_then(|s| s.namespace_options.as_ref());
    let nsf = "linux.security_context.namespace_options";
    let mode = |v: i32, f: &str| -> Result<Mode> {
        match v {
            POD => Ok(Mode::Pod),
            NODE => Ok(Mode::Node),
            m => Err(SpecError::invalid(
                object,
                format!("{nsf}.{f}"),
                format!("mode {m} is not valid for a pod (POD or NODE)"),
            )),
        }
    };
    let network = mode(ns.map_or(POD, |n| n.network), "network")?;
    let ipc = mode(ns.map_or(POD, |n| n.ipc), "ipc")?;
    let pid = match ns.map_or(POD, |n| n.pid) {
        POD => PidMode::Pod,
        CONTAINER => PidMode::Container,
        NODE => PidMode::Node,
        TARGET => {
            return Err(SpecError::invalid(
                object,
                format!("{nsf}.pid"),
                "TARGET is only valid for a container",
            ));
        }
        m => {
            return Err(SpecError::invalid(
                object,
                format!("{nsf}.pid"),
                format!("unknown NamespaceMode {m}"),
            ));
        }
    };
    match ns.and_then(|n| n.userns_options.as_ref()).map(|u| u.mode) {
        None | Some(NODE) => {}
        Some(POD) => {
            return Err(SpecError::unsupported(
                object,
                format!("{nsf}.userns_options.mode"),
                "user namespaces for pods are not supported by berth yet (hostUsers: false)",
            ));
        }
        Some(m) => {
            return Err(SpecError::invalid(
                object,
                format!("{nsf}.userns_options.mode"),
                format!("unsupported user namespace mode {m}"),
            ));
        }
    }

    let hostname = if cfg.hostname.is_empty() {
        node_hostname.to_string()
    } else {
        cfg.hostname.clone()
    };
    if hostname.len() > 64 || hostname.contains(['/', '\0', '\n']) {
        return Err(SpecError::invalid(
            object,
            "hostname",
            format!("{hostname:?} is not a valid hostname (at most 64 bytes)"),
        ));
    }
    let resolv_conf = match &cfg.dns_config {
        Some(d) => {
            for (list, name) in [
                (&d.servers, "servers"),
                (&d.searches, "searches"),
                (&d.options, "options"),
            ] {
                for (i, s) in list.iter().enumerate() {
                    if s.is_empty() || s.contains(['\n', '\0']) || s.contains(char::is_whitespace) {
                        return Err(SpecError::invalid(
                            object,
                            format!("dns_config.{name}[{i}]"),
                            format!("{s:?} is not a single word"),
                        ));
                    }
                }
            }
            ResolvConf::Content(resolv_conf_content(&d.servers, &d.searches, &d.options))
        }
        None => ResolvConf::CopyHost,
    };

    let mut sysctls: BTreeMap<String, String> = linux
        .map(|l| l.sysctls.clone().into_iter().collect())
        .unwrap_or_default();
    for (k, v) in &sysctls {
        check_sysctl(object, k, network, ipc)?;
        if v.contains(['\n', '\0']) {
            return Err(SpecError::invalid(
                object,
                format!("linux.sysctls[{k}]"),
                "the value holds a newline or NUL",
            ));
        }
    }
    if network == Mode::Pod {
        if opts.enable_unprivileged_ports {
            sysctls
                .entry("net.ipv4.ip_unprivileged_port_start".into())
                .or_insert_with(|| "0".into());
        }
        if opts.enable_unprivileged_icmp {
            sysctls
                .entry("net.ipv4.ping_group_range".into())
                .or_insert_with(|| "0 2147483647".into());
        }
    }
    let port_mappings = port_mappings(object, cfg, network)?;
    let cgroups_path = super::cgroups_path(
        object,
        "linux.cgroup_parent",
        linux.map_or("", |l| l.cgroup_parent.as_str()),
        id,
    )?;

    let privileged = sc.is_some_and(|s| s.privileged);
    if let Some(o) = sc.and_then(|s| s.selinux_options.as_ref()) {
        security::selinux(
            object,
            "linux.security_context.selinux_options",
            &o.user,
            &o.role,
            &o.r#type,
            &o.level,
        )?;
    }
    if let Some(p) = sc.and_then(|s| s.apparmor.as_ref()) {
        let f = "linux.security_context.apparmor";
        let prof = security::profile_from_cri(object, f, p.profile_type, &p.localhost_ref)?;
        security::apparmor(object, f, Some(&prof))?;
    }
    if let Some(p) = sc.and_then(|s| s.seccomp.as_ref()) {
        // The holder runs no user code; the profile is only checked.
        security::profile_from_cri(
            object,
            "linux.security_context.seccomp",
            p.profile_type,
            &p.localhost_ref,
        )?;
    } else {
        #[allow(deprecated)]
        let path = sc.map_or("", |s| s.seccomp_profile_path.as_str());
        if !path.is_empty() {
            security::profile_from_path(
                object,
                "linux.security_context.seccomp_profile_path",
                path,
            )?;
        }
    }
    let run_as = user::user_string(
        object,
        "",
        sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value),
        sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value),
    )?;
    user::supplemental_gids(object, sc.map_or(&[][..], |s| &s.supplemental_groups))?;
    user::GroupsPolicy::from_cri(object, sc.map_or(0, |s| s.supplemental_groups_policy))?;
    let oom_score_adj = super::resources::oom_score_adj(
        object,
        DEFAULT_SANDBOX_OOM_ADJ as i64,
        facts.current_oom_score_adj,
        facts.can_lower_oom_score_adj,
        opts.restrict_oom_score_adj,
        &mut warnings,
    )?;
    let mut annotations: BTreeMap<String, String> = [
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.cri.sandbox-id", id),
        ("io.kubernetes.cri.sandbox-name", meta.name.as_str()),
        (
            "io.kubernetes.cri.sandbox-namespace",
            meta.namespace.as_str(),
        ),
        ("io.kubernetes.cri.sandbox-uid", meta.uid.as_str()),
        (
            "io.kubernetes.cri.sandbox-log-directory",
            cfg.log_directory.as_str(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(r) = linux.and_then(|l| l.resources.as_ref()) {
        for (k, v) in [
            ("io.kubernetes.cri.sandbox-cpu-period", r.cpu_period),
            ("io.kubernetes.cri.sandbox-cpu-quota", r.cpu_quota),
            ("io.kubernetes.cri.sandbox-cpu-shares", r.cpu_shares),
            ("io.kubernetes.cri.sandbox-memory", r.memory_limit_in_bytes),
        ] {
            annotations.insert(k.to_string(), v.to_string());
        }
    }
    Ok(SandboxPlan {
        cpu_shares: DEFAULT_SANDBOX_CPU_SHARES,
        annotations,
        hostname_file: format!("{hostname}\n"),
        hostname,
        resolv_conf,
        hosts_from_node: true,
        network,
        ipc,
        pid,
        sysctls,
        port_mappings,
        cgroups_path,
        privileged,
        run_as,
        oom_score_adj,
        shm_size: (ipc == Mode::Pod).then_some(DEFAULT_SHM_SIZE),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cri_proto::v1::{
        DnsConfig, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
        PodSandboxMetadata, PortMapping, SecurityProfile,
    };

    fn cfg() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web-0".into(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod-u1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_ns(network: i32, pid: i32, ipc: i32) -> PodSandboxConfig {
        let mut c = cfg();
        c.linux.get_or_insert_default().security_context = Some(LinuxSandboxSecurityContext {
            namespace_options: Some(NamespaceOption {
                network,
                pid,
                ipc,
                ..Default::default()
            }),
            ..Default::default()
        });
        c
    }

    fn facts(can_lower: bool) -> super::super::container::HostFacts {
        super::super::container::HostFacts {
            hostname: "node-1".into(),
            can_lower_oom_score_adj: can_lower,
            ..Default::default()
        }
    }

    fn plan(c: &PodSandboxConfig) -> Result<SandboxPlan> {
        sandbox_plan("sb1", c, &SandboxOptions::default(), &facts(false))
    }

    // containerd parseDNSOptions
    #[test]
    fn resolv_conf_like_containerd() {
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
        let mut c = cfg();
        c.dns_config = Some(DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec![],
            options: vec!["ndots:5".into()],
        });
        assert_eq!(
            plan(&c).expect("plan").resolv_conf,
            ResolvConf::Content("nameserver 10.0.0.10\noptions ndots:5\n".into())
        );
        assert_eq!(
            plan(&cfg()).expect("plan").resolv_conf,
            ResolvConf::CopyHost
        );
        c.dns_config = Some(DnsConfig {
            servers: vec!["10.0.0.10\nnameserver 6.6.6.6".into()],
            ..Default::default()
        });
        let e = plan(&c).expect_err("injection");
        assert!(e.to_string().contains("dns_config.servers[0]"), "{e}");
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
    #[test]
    fn sandbox_annotations() {
        let mut c = cfg();
        c.log_directory = "/var/log/pods/default_web_u1".into();
        c.linux.get_or_insert_default().resources = Some(cri_proto::v1::LinuxContainerResources {
            cpu_shares: 1024,
            memory_limit_in_bytes: 1 << 30,
            ..Default::default()
        });
        let p = plan(&c).expect("plan");
        let a = |k: &str| p.annotations.get(k).cloned().unwrap_or_default();
        assert_eq!(a("io.kubernetes.cri.container-type"), "sandbox");
        assert_eq!(a("io.kubernetes.cri.sandbox-id"), "sb1");
        assert_eq!(a("io.kubernetes.cri.sandbox-uid"), "u1");
        assert_eq!(
            a("io.kubernetes.cri.sandbox-log-directory"),
            "/var/log/pods/default_web_u1"
        );
        assert_eq!(a("io.kubernetes.cri.sandbox-cpu-shares"), "1024");
        assert_eq!(
            a("io.kubernetes.cri.sandbox-memory"),
            (1u64 << 30).to_string()
        );
        assert_eq!(p.cpu_shares, 2);
    }

    #[test]
    fn hostname_and_files() {
        let p = plan(&cfg()).expect("plan");
        assert_eq!(p.hostname, "web-0");
        assert_eq!(p.hostname_file, "web-0\n");
        assert_eq!(p.cgroups_path.as_deref(), Some("/kubepods/pod-u1/sb1"));
        assert_eq!(p.shm_size, Some(DEFAULT_SHM_SIZE));
        let mut c = cfg();
        c.hostname.clear();
        assert_eq!(plan(&c).expect("plan").hostname, "node-1");
        c.hostname = "x".repeat(65);
        assert!(
            plan(&c)
                .expect_err("long")
                .to_string()
                .contains("field hostname")
        );
    }

    // containerd sandboxContainerSpec namespace options
    #[test]
    fn namespace_modes() {
        let p = plan(&with_ns(NODE, NODE, NODE)).expect("host");
        assert_eq!(
            (p.network, p.ipc, p.pid),
            (Mode::Node, Mode::Node, PidMode::Node)
        );
        assert_eq!(p.shm_size, None);
        assert!(
            p.sysctls.is_empty(),
            "no unprivileged-port sysctls on the host network"
        );
        let p = plan(&with_ns(POD, CONTAINER, POD)).expect("pod");
        assert_eq!(p.pid, PidMode::Container);
        assert_eq!(
            p.sysctls
                .get("net.ipv4.ip_unprivileged_port_start")
                .map(String::as_str),
            Some("0")
        );
        assert_eq!(
            p.sysctls
                .get("net.ipv4.ping_group_range")
                .map(String::as_str),
            Some("0 2147483647")
        );
        for (c, want) in [
            (with_ns(CONTAINER, POD, POD), "namespace_options.network"),
            (with_ns(POD, TARGET, POD), "namespace_options.pid"),
            (with_ns(POD, POD, CONTAINER), "namespace_options.ipc"),
        ] {
            let e = plan(&c).expect_err(want);
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    // runc's validateSysctl, which containerd relies on
    #[test]
    fn sysctl_rules() {
        let ok: &[(&str, Mode, Mode)] = &[
            ("net.core.somaxconn", Mode::Pod, Mode::Node),
            ("kernel.shm_rmid_forced", Mode::Node, Mode::Pod),
            ("fs.mqueue.msg_max", Mode::Node, Mode::Pod),
            ("kernel.domainname", Mode::Pod, Mode::Node),
        ];
        for (k, n, i) in ok {
            check_sysctl("p", k, *n, *i).expect(k);
        }
        let bad: &[(&str, Mode, Mode, &str)] = &[
            (
                "net.core.somaxconn",
                Mode::Node,
                Mode::Pod,
                "host's network namespace",
            ),
            (
                "kernel.msgmax",
                Mode::Pod,
                Mode::Node,
                "host's ipc namespace",
            ),
            (
                "kernel.hostname",
                Mode::Pod,
                Mode::Pod,
                "conflicts with the hostname field",
            ),
            (
                "kernel.domainname",
                Mode::Node,
                Mode::Pod,
                "not in a separate kernel namespace",
            ),
            (
                "vm.swappiness",
                Mode::Pod,
                Mode::Pod,
                "not in a separate kernel namespace",
            ),
            (
                "net/ipv4/ip_forward",
                Mode::Pod,
                Mode::Pod,
                "not a sysctl name",
            ),
            ("net..x", Mode::Pod, Mode::Pod, "not a sysctl name"),
        ];
        for (k, n, i, want) in bad {
            let e = check_sysctl("p", k, *n, *i).expect_err(k);
            assert!(e.to_string().contains(want), "{k}: {e}");
            assert!(
                e.to_string().contains(&format!("linux.sysctls[{k}]")),
                "{e}"
            );
        }
        let mut c = with_ns(POD, POD, POD);
        c.linux.get_or_insert_default().sysctls = [(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "1024".to_string(),
        )]
        .into();
        let p = plan(&c).expect("plan");
        assert_eq!(
            p.sysctls["net.ipv4.ip_unprivileged_port_start"], "1024",
            "the pod's value wins"
        );
        c.linux.get_or_insert_default().sysctls =
            [("vm.overcommit_memory".to_string(), "1".to_string())].into();
        assert!(plan(&c).is_err());
    }

    #[test]
    fn port_mapping_checks() {
        let pm = |protocol, container_port, host_port, host_ip: &str| PortMapping {
            protocol,
            container_port,
            host_port,
            host_ip: host_ip.into(),
        };
        let mut c = cfg();
        c.port_mappings = vec![pm(0, 80, 8080, ""), pm(1, 53, 0, "127.0.0.1")];
        let p = plan(&c).expect("plan");
        assert_eq!(
            p.port_mappings[0],
            PortMap {
                protocol: "tcp",
                container_port: 80,
                host_port: 8080,
                host_ip: None
            }
        );
        assert_eq!(p.port_mappings[1].protocol, "udp");
        for (m, want) in [
            (pm(7, 80, 0, ""), "port_mappings[0].protocol"),
            (pm(0, 0, 0, ""), "port_mappings[0].container_port"),
            (pm(0, 70000, 0, ""), "port_mappings[0].container_port"),
            (pm(0, 80, -1, ""), "port_mappings[0].host_port"),
            (pm(0, 80, 80, "300.1.1.1"), "port_mappings[0].host_ip"),
        ] {
            c.port_mappings = vec![m];
            let e = plan(&c).expect_err(want);
            assert!(e.to_string().contains(want), "{e}");
        }
        let mut h = with_ns(NODE, POD, POD);
        h.port_mappings = vec![pm(0, 80, 8080, "")];
        assert!(
            plan(&h)
                .expect_err("remap")
                .to_string()
                .contains("host-network pod")
        );
    }

    #[test]
    fn security_and_oom() {
        let p = plan(&cfg()).expect("plan");
        assert_eq!(p.oom_score_adj, 0, "-998 raised to this process's value");
        assert_eq!(p.warnings.len(), 1);
        let p =
            sandbox_plan("sb1", &cfg(), &SandboxOptions::default(), &facts(true)).expect("plan");
        assert_eq!(p.oom_score_adj, DEFAULT_SANDBOX_OOM_ADJ);
        let mut c = cfg();
        c.linux.get_or_insert_default().security_context = Some(LinuxSandboxSecurityContext {
            run_as_user: Some(Int64Value { value: 65535 }),
            run_as_group: Some(Int64Value { value: 65535 }),
            seccomp: Some(SecurityProfile {
                profile_type: 0,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        });
        assert_eq!(
            plan(&c).expect("plan").run_as.as_deref(),
            Some("65535:65535")
        );
        c.linux.get_or_insert_default().security_context = Some(LinuxSandboxSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: 0,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        });
        assert!(
            plan(&c)
                .expect_err("apparmor")
                .to_string()
                .contains("apparmor is not supported")
        );
        let mut c = cfg();
        c.metadata = None;
        assert!(
            plan(&c)
                .expect_err("meta")
                .to_string()
                .contains("field metadata")
        );
        let mut c = cfg();
        c.linux.get_or_insert_default().cgroup_parent = "/kubepods.slice".into();
        assert!(
            plan(&c)
                .expect_err("slice")
                .to_string()
                .contains("systemd slice")
        );
    }
}
