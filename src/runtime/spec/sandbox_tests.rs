//! Tests of [`super::sandbox::sandbox_plan`], one per rule.

use super::error::Result;
use super::namespaces::{CONTAINER, NODE, POD, TARGET};
use super::sandbox::*;
use cri_proto::v1::{
    DnsConfig, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PortMapping, SecurityProfile,
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

fn facts(can_lower: bool) -> super::container::HostFacts {
    super::container::HostFacts {
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
    assert_eq!(
        p.holder_namespaces(),
        HolderNamespaces {
            network: false,
            uts: false,
            ipc: false,
            pid: false
        }
    );
    let p = plan(&cfg()).expect("defaults");
    assert_eq!(
        p.holder_namespaces(),
        HolderNamespaces {
            network: true,
            uts: true,
            ipc: true,
            pid: true
        }
    );
    let p = plan(&with_ns(POD, CONTAINER, POD)).expect("pod");
    assert!(!p.holder_namespaces().pid);
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
        assert_eq!(check_sysctl("p", k, *n, *i).expect(k), *k);
    }
    // runc's slash form: '.' and '/' swap roles when the first separator is a '/'
    for (slash, dotted, file) in [
        (
            "net/ipv4/ip_forward",
            "net.ipv4.ip_forward",
            "net/ipv4/ip_forward",
        ),
        (
            "net/ipv4/conf/eth0.100/rp_filter",
            "net.ipv4.conf.eth0/100.rp_filter",
            "net/ipv4/conf/eth0.100/rp_filter",
        ),
        (
            "kernel/shm_rmid_forced",
            "kernel.shm_rmid_forced",
            "kernel/shm_rmid_forced",
        ),
    ] {
        assert_eq!(
            check_sysctl("p", slash, Mode::Pod, Mode::Pod).expect(slash),
            dotted
        );
        assert_eq!(
            check_sysctl("p", dotted, Mode::Pod, Mode::Pod).expect(dotted),
            dotted
        );
        assert_eq!(crate::sys::sysctl::proc_path(dotted), file);
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
            Mode::Node,
            Mode::Pod,
            "host's network namespace",
        ),
        ("kernel/panic", Mode::Pod, Mode::Pod, "not in a separate"),
        ("net..x", Mode::Pod, Mode::Pod, "not a sysctl name"),
        ("net/ipv4//x", Mode::Pod, Mode::Pod, "not a sysctl name"),
        ("net.ipv4.a=b", Mode::Pod, Mode::Pod, "not a sysctl name"),
        ("net.ipv4.a b", Mode::Pod, Mode::Pod, "not a sysctl name"),
        (
            "net.ipv4.conf./..",
            Mode::Pod,
            Mode::Pod,
            "not a sysctl name",
        ),
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
    c.linux.get_or_insert_default().sysctls =
        [("net/ipv4/ip_forward".to_string(), "1".to_string())].into();
    assert_eq!(
        plan(&c).expect("slash form").sysctls["net.ipv4.ip_forward"],
        "1",
        "planned in dotted form"
    );
    c.linux.get_or_insert_default().sysctls = [
        ("net/ipv4/ip_forward".to_string(), "1".to_string()),
        ("net.ipv4.ip_forward".to_string(), "0".to_string()),
    ]
    .into();
    let e = plan(&c).expect_err("twice");
    assert!(e.to_string().contains("given twice"), "{e}");
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
    let p = sandbox_plan("sb1", &cfg(), &SandboxOptions::default(), &facts(true)).expect("plan");
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

// Refused before anything is made: a NUL would reach the holder's arguments and CNI_ARGS.
#[test]
fn metadata_with_nul_names_the_field() {
    for field in ["name", "namespace", "uid"] {
        let mut c = cfg();
        let m = c.metadata.as_mut().expect("metadata");
        match field {
            "name" => m.name = "we\0b".into(),
            "namespace" => m.namespace = "def\0ault".into(),
            _ => m.uid = "u\0x".into(),
        }
        let e = plan(&c).expect_err(field);
        assert_eq!(e.field(), Some(format!("metadata.{field}").as_str()), "{e}");
        assert!(!e.to_string().contains('\0'), "{e:?}");
    }
}

// containerd takes any log_directory; berth refuses a relative one, which CreateContainer
// would otherwise resolve against its own working directory.
#[test]
fn log_directory_absolute() {
    let mut c = cfg();
    c.log_directory = "/var/log/pods/default_web_u1".into();
    plan(&c).expect("absolute");
    c.log_directory = "var/log/pods".into();
    let e = plan(&c).expect_err("relative");
    assert_eq!(e.field(), Some("log_directory"), "{e}");
}
