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

pub use super::etc_files::{HostAlias, managed_hosts, node_hosts, resolv_conf_content};

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
    /// Sorted, in dotted form (see [`sysctl_dotted`]), validated against the namespaces
    /// the pod has.
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

/// Which namespaces the holder makes for its pod; the others are the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderNamespaces {
    pub network: bool,
    /// UTS follows the network: a host-network pod keeps the node's hostname.
    pub uts: bool,
    pub ipc: bool,
    /// Only a pod whose containers share one process namespace.
    pub pid: bool,
}

impl SandboxPlan {
    /// The namespaces the holder creates and keeps (containerd's sandbox spec: network
    /// and UTS unless host network, IPC unless host IPC, PID only when shared).
    pub fn holder_namespaces(&self) -> HolderNamespaces {
        HolderNamespaces {
            network: self.network == Mode::Pod,
            uts: self.network == Mode::Pod,
            ipc: self.ipc == Mode::Pod,
            pid: self.pid == PidMode::Pod,
        }
    }
}

/// containerd's DefaultSandboxCPUshares.
pub const DEFAULT_SANDBOX_CPU_SHARES: u64 = 2;

/// A sysctl name in its dotted form, as sysctl(8) and runc's
/// convertSysctlVariableToDotsSeparator read it: a name whose first separator is '/' is
/// the slash form (`net/ipv4/conf/eth0.100/rp_filter`), whose '.' and '/' swap roles
/// (`net.ipv4.conf.eth0/100.rp_filter`).
pub fn sysctl_dotted(key: &str) -> String {
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// runc's sysctl rule: only sysctls of a namespace the pod has; kernel.hostname has its
/// own field. `uts` follows the network mode (a host-network pod uses the host's UTS).
/// Both the dotted and the slash form are accepted; the dotted form is returned.
pub fn check_sysctl(object: &str, key: &str, network: Mode, ipc: Mode) -> Result<String> {
    let field = format!("linux.sysctls[{key}]");
    let refuse = |reason: String| Err(SpecError::invalid(object, field.clone(), reason));
    let dotted = sysctl_dotted(key);
    let bad_component =
        |c: &str| c.is_empty() || c.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    if key.is_empty()
        || key.len() > 256
        || key.contains(|c: char| c == '=' || c.is_whitespace() || c.is_control())
        || dotted.split('.').any(bad_component)
    {
        return refuse(format!("{key:?} is not a sysctl name"));
    }
    let key = dotted.as_str();
    let ok = || Ok(key.to_string());
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
            Mode::Pod => ok(),
            Mode::Node => refuse(format!(
                "sysctl {key:?} is not allowed in the host's ipc namespace"
            )),
        };
    }
    if key.starts_with("net.") {
        return match network {
            Mode::Pod => ok(),
            Mode::Node => refuse(format!(
                "sysctl {key:?} is not allowed in the host's network namespace"
            )),
        };
    }
    if network == Mode::Pod {
        match key {
            "kernel.domainname" => return ok(),
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
        Some(m) => format!(
            "pod {}/{}",
            m.namespace.escape_debug(),
            m.name.escape_debug()
        ),
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
    // Each goes into the holder's arguments, CNI_ARGS and file names, where a NUL ends
    // the string early or is refused deep inside a plugin.
    for (field, v) in [
        ("metadata.name", &meta.name),
        ("metadata.namespace", &meta.namespace),
        ("metadata.uid", &meta.uid),
    ] {
        if v.contains('\0') {
            return Err(SpecError::invalid(object, field, "holds a NUL byte"));
        }
    }
    super::logs::check_log_directory(object, "log_directory", &cfg.log_directory)?;
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

    let given: BTreeMap<&String, &String> = linux
        .map(|l| l.sysctls.iter().collect())
        .unwrap_or_default();
    let mut sysctls: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in given {
        let dotted = check_sysctl(object, k, network, ipc)?;
        if v.contains(['\n', '\0']) || v.len() > 4096 {
            return Err(SpecError::invalid(
                object,
                format!("linux.sysctls[{k}]"),
                "the value holds a newline or NUL, or is longer than 4096 bytes",
            ));
        }
        if sysctls.insert(dotted.clone(), v.clone()).is_some() {
            return Err(SpecError::invalid(
                object,
                format!("linux.sysctls[{k}]"),
                format!("{dotted:?} is given twice (dotted and slash form)"),
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
