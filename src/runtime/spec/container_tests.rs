//! Whole-request tests of [`super::container::container_spec`]: each checks one
//! containerd rule in the finished spec, and that berth's OCI runtime accepts it.

use std::path::{Path, PathBuf};

use cri_proto::v1::{
    Capability, ContainerConfig, ContainerMetadata, Device, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, SeLinuxOption, SecurityProfile,
};
use oci_spec::runtime::Spec;

use super::container::*;
use super::host::HostDevice;
use super::mounts::SandboxFiles;
use super::mounts::tests::FakeHost;
use super::namespaces::{Ns, PodNamespaces};
use super::resources::CgroupFacts;
use super::user::UserDb;
use super::{ImageView, SpecError};

fn sandbox(privileged: bool) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/podu1".into(),
            security_context: Some(LinuxSandboxSecurityContext {
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn config(sc: LinuxContainerSecurityContext) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        envs: vec![KeyValue {
            key: "FOO".into(),
            value: "bar".into(),
        }],
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(sc),
        }),
        ..Default::default()
    }
}

fn pod() -> PodContext {
    PodContext {
        sandbox_id: "sb1".into(),
        namespaces: PodNamespaces {
            network: Ns::Path("/run/h/net".into()),
            ipc: Ns::Path("/run/h/ipc".into()),
            uts: Ns::Path("/run/h/uts".into()),
            // no namespace options: the pod shares one PID namespace (mode POD)
            pid: Some(Ns::Path("/run/h/pid".into())),
        },
        files: SandboxFiles {
            hostname: Some("/sb/hostname".into()),
            hosts: Some("/sb/hosts".into()),
            resolv_conf: Some("/sb/resolv.conf".into()),
            shm: Some("/sb/shm".into()),
        },
        target_pid_ns: None,
    }
}

fn image() -> ImageView {
    ImageView {
        entrypoint: vec!["/bin/sh".into()],
        cmd: vec!["-c".into(), "sleep 1".into()],
        env: vec!["PATH=/bin".into()],
        volumes: vec!["/data".into()],
        ..Default::default()
    }
}

fn facts() -> HostFacts {
    HostFacts {
        hostname: "node-1".into(),
        cgroups: CgroupFacts {
            unified: false,
            swap: true,
            hugetlb: false,
        },
        current_caps: vec![
            "CAP_CHOWN".into(),
            "CAP_SYS_ADMIN".into(),
            "CAP_KILL".into(),
        ],
        current_oom_score_adj: 0,
        can_lower_oom_score_adj: false,
    }
}

fn host() -> FakeHost {
    FakeHost {
        devices: vec![HostDevice {
            path: "/dev/fuse".into(),
            kind: 'c',
            major: 10,
            minor: 229,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        }],
        ..Default::default()
    }
}

fn build_with(
    cfg: &ContainerConfig,
    sb: &PodSandboxConfig,
    opts: &RuntimeOptions,
    localhost: Option<&[u8]>,
) -> Result<ContainerSpec, SpecError> {
    build_on(cfg, sb, opts, localhost, &host())
}

fn build_on(
    cfg: &ContainerConfig,
    sb: &PodSandboxConfig,
    opts: &RuntimeOptions,
    localhost: Option<&[u8]>,
    host: &FakeHost,
) -> Result<ContainerSpec, SpecError> {
    let pod = pod();
    let img = image();
    let users = UserDb {
        passwd: Some("root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n".into()),
        group: Some("root:x:0:\nstaff:x:50:app\n".into()),
    };
    let req = ContainerRequest {
        id: "c1",
        config: cfg,
        sandbox_config: sb,
        pod: &pod,
        image: &img,
        image_name: "docker.io/library/busybox:latest",
        rootfs: PathBuf::from("/ctr/c1/rootfs"),
        volumes_dir: PathBuf::from("/ctr/c1/volumes"),
        users: &users,
        localhost_seccomp: localhost,
    };
    let out = container_spec(&req, opts, &facts(), host)?;
    // berth's OCI runtime accepts what was built
    let json = serde_json::to_vec(&out.spec).expect("json");
    crate::oci::spec::parse("c1", &json).expect("berth's runtime parses the spec");
    Ok(out)
}

fn build(cfg: &ContainerConfig) -> Result<ContainerSpec, SpecError> {
    build_with(cfg, &sandbox(false), &RuntimeOptions::default(), None)
}

fn caps(s: &Spec) -> Vec<String> {
    s.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .map(|b| {
            let mut v: Vec<String> = b.iter().map(|c| format!("CAP_{c}")).collect();
            v.sort();
            v
        })
        .unwrap_or_default()
}

fn mount_opts(s: &Spec, dest: &str) -> Option<Vec<String>> {
    s.mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == Path::new(dest))
        .and_then(|m| m.options().clone())
}

// buildLinuxSpec with an empty security context: the defaults
#[test]
fn defaults_of_a_plain_container() {
    let out = build(&config(LinuxContainerSecurityContext::default())).expect("spec");
    let s = &out.spec;
    let p = s.process().as_ref().expect("process");
    assert_eq!(
        p.args().as_deref(),
        Some(&["/bin/sh".to_string(), "-c".into(), "sleep 1".into()][..])
    );
    assert_eq!(
        p.env().as_deref(),
        Some(
            &[
                "PATH=/bin".to_string(),
                "HOSTNAME=web-0".into(),
                "FOO=bar".into()
            ][..]
        )
    );
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.user().additional_gids().as_deref(), Some(&[0u32][..]));
    assert_eq!(caps(s).len(), super::security::DEFAULT_CAPS.len());
    assert!(
        p.capabilities()
            .as_ref()
            .and_then(|c| c.ambient().as_ref())
            .is_none_or(|a| a.is_empty())
    );
    assert_eq!(p.no_new_privileges(), Some(false));
    assert!(!p.terminal().unwrap_or(false));
    let linux = s.linux().as_ref().expect("linux");
    assert!(linux.seccomp().is_none(), "no profile asked, none set");
    assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/podu1/c1"))
    );
    let ns: Vec<String> = linux
        .namespaces()
        .iter()
        .flatten()
        .map(|n| format!("{:?}={:?}", n.typ(), n.path()))
        .collect();
    assert_eq!(ns.len(), 5, "{ns:?}");
    assert!(
        ns.iter()
            .any(|n| n.contains("Network") && n.contains("/run/h/net")),
        "{ns:?}"
    );
    assert_eq!(s.root().as_ref().map(|r| r.readonly()), Some(Some(false)));
    assert_eq!(
        mount_opts(s, "/sys")
            .and_then(|o| o.last().cloned())
            .as_deref(),
        Some("ro")
    );
    assert!(mount_opts(s, "/data").is_some(), "image volume mounted");
    assert_eq!(out.image_volumes.len(), 1);
    let a = s.annotations().clone().expect("annotations");
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-id", "sb1"),
        ("io.kubernetes.cri.container-name", "app"),
        (
            "io.kubernetes.cri.image-name",
            "docker.io/library/busybox:latest",
        ),
        ("io.kubernetes.cri.sandbox-name", "web"),
        ("io.kubernetes.cri.sandbox-namespace", "default"),
        ("io.kubernetes.cri.sandbox-uid", "u1"),
    ] {
        assert_eq!(a.get(k).map(String::as_str), Some(v), "{k}");
    }
}

// the restrictive context the integration test runs for real
#[test]
fn restrictive_security_context() {
    let sc = LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        }),
        run_as_user: Some(Int64Value { value: 1000 }),
        readonly_rootfs: true,
        no_new_privs: true,
        supplemental_groups: vec![3000],
        seccomp: Some(SecurityProfile {
            profile_type: 0,
            localhost_ref: String::new(),
        }),
        masked_paths: vec!["/proc/kcore".into()],
        readonly_paths: vec!["/proc/sys".into()],
        ..Default::default()
    };
    let mut cfg = config(sc);
    cfg.tty = true;
    let out = build(&cfg).expect("spec");
    let s = &out.spec;
    let p = s.process().as_ref().expect("process");
    assert_eq!(caps(s), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(
        p.user().additional_gids().as_deref(),
        Some(&[50u32, 1000, 3000][..])
    );
    assert_eq!(p.no_new_privileges(), Some(true));
    assert!(p.terminal().unwrap_or(false));
    assert!(p.env().iter().flatten().any(|e| e == "TERM=xterm"));
    assert_eq!(s.root().as_ref().and_then(|r| r.readonly()), Some(true));
    let linux = s.linux().as_ref().expect("linux");
    let sc = linux.seccomp().clone().expect("seccomp");
    assert_eq!(
        sc,
        crate::oci::seccomp_default::runtime_default(&["CAP_NET_BIND_SERVICE".into()])
    );
    assert_eq!(
        linux.masked_paths().as_deref(),
        Some(&["/proc/kcore".to_string()][..])
    );
    assert_eq!(
        mount_opts(s, "/etc/hosts")
            .and_then(|o| o.last().cloned())
            .as_deref(),
        Some("ro")
    );
    assert_eq!(
        mount_opts(s, "/dev/shm")
            .and_then(|o| o.last().cloned())
            .as_deref(),
        Some("rw")
    );
}

// WithPrivileged + WithHostDevices + WithAllDevicesAllowed
#[test]
fn privileged_container() {
    let sc = LinuxContainerSecurityContext {
        privileged: true,
        seccomp: Some(SecurityProfile::default()),
        masked_paths: vec!["/proc/kcore".into()],
        capabilities: Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let cfg = config(sc);
    let e = build(&cfg).expect_err("pod not privileged");
    assert!(
        e.to_string()
            .contains("no privileged container allowed in sandbox"),
        "{e}"
    );
    let out = build_with(&cfg, &sandbox(true), &RuntimeOptions::default(), None).expect("spec");
    let s = &out.spec;
    assert_eq!(caps(s), ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]);
    let linux = s.linux().as_ref().expect("linux");
    assert!(linux.seccomp().is_none());
    assert_eq!(linux.masked_paths().as_deref(), Some(&[][..]));
    assert_eq!(linux.devices().as_ref().map(Vec::len), Some(1));
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("rules");
    assert_eq!(rules.len(), 1, "allow-all replaces the rules");
    assert!(rules[0].allow() && rules[0].major().is_none());
    assert_eq!(
        mount_opts(s, "/sys")
            .and_then(|o| o.last().cloned())
            .as_deref(),
        Some("rw")
    );
    let opts = RuntimeOptions {
        privileged_without_host_devices: true,
        ..Default::default()
    };
    let out = build_with(&cfg, &sandbox(true), &opts, None).expect("spec");
    assert_eq!(
        out.spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().as_ref())
            .map(Vec::len),
        Some(0)
    );
}

#[test]
fn proc_mount_defaults_and_deprecated_seccomp_path() {
    let opts = RuntimeOptions {
        disable_proc_mount: true,
        unset_seccomp_profile: "runtime/default".into(),
        ..Default::default()
    };
    let out = build_with(&config(Default::default()), &sandbox(false), &opts, None).expect("spec");
    let linux = out.spec.linux().clone().expect("linux");
    assert_eq!(
        linux.masked_paths().as_ref().map(Vec::len),
        Some(DEFAULT_MASKED_PATHS.len())
    );
    assert!(linux.seccomp().is_some(), "unset_seccomp_profile applies");
    #[allow(deprecated)]
    let sc = LinuxContainerSecurityContext {
        seccomp_profile_path: "unconfined".into(),
        ..Default::default()
    };
    let out = build_with(&config(sc), &sandbox(false), &opts, None).expect("spec");
    assert!(
        out.spec
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .is_none()
    );
    let profile = br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
    let sc = LinuxContainerSecurityContext {
        seccomp: Some(SecurityProfile {
            profile_type: 2,
            localhost_ref: "/var/lib/kubelet/seccomp/p.json".into(),
        }),
        ..Default::default()
    };
    let out = build_with(
        &config(sc),
        &sandbox(false),
        &RuntimeOptions::default(),
        Some(profile),
    )
    .expect("spec");
    let got = out
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .expect("local");
    assert_eq!(got.syscalls().as_ref().map(Vec::len), Some(1));
}

#[test]
fn resources_devices_and_oom() {
    let mut cfg = config(Default::default());
    cfg.linux.as_mut().expect("linux").resources = Some(LinuxContainerResources {
        cpu_shares: 512,
        memory_limit_in_bytes: 1 << 26,
        oom_score_adj: -997,
        ..Default::default()
    });
    cfg.devices = vec![Device {
        container_path: "/dev/fuse".into(),
        host_path: "/dev/fuse".into(),
        permissions: "rwm".into(),
    }];
    let out = build(&cfg).expect("spec");
    assert_eq!(
        out.spec.process().as_ref().and_then(|p| p.oom_score_adj()),
        Some(0)
    );
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    let linux = out.spec.linux().clone().expect("linux");
    let r = linux.resources().clone().expect("resources");
    assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(1 << 26));
    assert_eq!(r.cpu().as_ref().and_then(|c| c.shares()), Some(512));
    let rules = r.devices().clone().expect("rules");
    assert!(!rules[0].allow(), "deny all first");
    assert_eq!(rules[1].major(), Some(10));
    assert_eq!(linux.devices().as_ref().map(Vec::len), Some(1));
}

#[test]
fn user_specified_image_names_the_annotation() {
    let mut cfg = config(Default::default());
    cfg.image = Some(cri_proto::v1::ImageSpec {
        image: "sha256:abc".into(),
        user_specified_image: "busybox:1.36".into(),
        ..Default::default()
    });
    let out = build(&cfg).expect("spec");
    let a = out.spec.annotations().clone().expect("annotations");
    assert_eq!(
        a.get("io.kubernetes.cri.image-name").map(String::as_str),
        Some("busybox:1.36")
    );
}

// a refused request makes no bind source (the real host would create directories)
#[test]
fn refused_request_touches_no_host_path() {
    let mut cfg = config(LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: vec!["WARP_DRIVE".into()],
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/var/lib/kubelet/pods/u1/volumes/x".into(),
        ..Default::default()
    }];
    let h = host();
    build_on(&cfg, &sandbox(false), &RuntimeOptions::default(), None, &h).expect_err("bad cap");
    assert!(h.made.borrow().is_empty(), "{:?}", h.made.borrow());
    sc_of(&mut cfg).capabilities = None;
    build_on(&cfg, &sandbox(false), &RuntimeOptions::default(), None, &h).expect("valid");
    assert!(
        h.made
            .borrow()
            .contains(&PathBuf::from("/var/lib/kubelet/pods/u1/volumes/x"))
    );
}

// every refusal names its field
#[test]
fn refusals_name_the_field() {
    type Edit = Box<dyn Fn(&mut ContainerConfig)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|c| c.metadata = None), "field metadata"),
        (
            Box::new(|c| c.cdi_devices = vec![cri_proto::v1::CdiDevice { name: "x".into() }]),
            "CDI_devices",
        ),
        (
            Box::new(|c| {
                sc_of(c).selinux_options = Some(SeLinuxOption {
                    r#type: "spc_t".into(),
                    ..Default::default()
                })
            }),
            "linux.security_context.selinux_options",
        ),
        (
            Box::new(|c| sc_of(c).apparmor = Some(SecurityProfile::default())),
            "linux.security_context.apparmor",
        ),
        (
            Box::new(|c| {
                sc_of(c).capabilities = Some(Capability {
                    add_ambient_capabilities: vec!["NET_ADMIN".into()],
                    ..Default::default()
                })
            }),
            "add_ambient_capabilities",
        ),
        (
            Box::new(|c| {
                sc_of(c).capabilities = Some(Capability {
                    add_capabilities: vec!["WARP_DRIVE".into()],
                    ..Default::default()
                })
            }),
            "capabilities.add_capabilities[0]",
        ),
        (
            Box::new(|c| {
                c.mounts = vec![Mount {
                    container_path: "/x".into(),
                    host_path: "/h".into(),
                    uid_mappings: vec![Default::default()],
                    ..Default::default()
                }]
            }),
            "mounts[0].uidMappings",
        ),
        (
            Box::new(|c| {
                sc_of(c).seccomp = Some(SecurityProfile {
                    profile_type: 2,
                    localhost_ref: "/p.json".into(),
                })
            }),
            "linux.security_context.seccomp",
        ),
        (
            Box::new(|c| sc_of(c).masked_paths = vec!["proc/kcore".into()]),
            "masked_paths[0]",
        ),
        (
            Box::new(|c| {
                sc_of(c).namespace_options = Some(NamespaceOption {
                    pid: 3,
                    ..Default::default()
                })
            }),
            "namespace_options.target_id",
        ),
        (
            Box::new(|c| sc_of(c).run_as_group = Some(Int64Value { value: 5 })),
            "run_as_group",
        ),
        (Box::new(|c| c.working_dir = "tmp".into()), "working_dir"),
    ];
    for (edit, want) in cases {
        let mut cfg = config(Default::default());
        edit(&mut cfg);
        let e = build(&cfg).expect_err(want);
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    let mut sb = sandbox(false);
    sb.linux.as_mut().expect("linux").cgroup_parent = "/kubepods.slice".into();
    let e = build_with(
        &config(Default::default()),
        &sb,
        &RuntimeOptions::default(),
        None,
    )
    .expect_err("slice");
    assert!(e.to_string().contains("cgroup_parent"), "{e}");
}

fn sc_of(c: &mut ContainerConfig) -> &mut LinuxContainerSecurityContext {
    c.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
}
