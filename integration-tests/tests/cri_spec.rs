//! A CRI ContainerConfig with a restrictive security context, turned into an OCI spec by
//! berth::runtime::spec and run by berth's in-process runtime on the busybox rootfs;
//! the effect is asserted from inside the container.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use berth::oci::{CreateOptions, Exit, Runtime};
use berth::runtime::spec::cri::{
    Capability, ContainerConfig, ContainerMetadata, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, Mount, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
    SecurityProfile,
};
use berth::runtime::spec::{
    ContainerRequest, HostFacts, ImageView, LinuxHost, Ns, PodContext, PodNamespaces,
    RuntimeOptions, SandboxFiles, UserDb, container_spec,
};
use berth_integration_tests::{TestEnv, require_root};

/// Holds an IPC and a UTS namespace for the test pod, as the holder would; killed on drop.
struct NsHolder(Child);

impl NsHolder {
    fn new(env: &TestEnv) -> NsHolder {
        let child = env
            .command("unshare")
            .args(["--ipc", "--uts", "--", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let pid = child.id();
        let own = std::fs::read_link("/proc/self/ns/ipc").expect("own ipc");
        berth_integration_tests::util::wait_for(Duration::from_secs(5), || {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/ipc")).ok()?;
            (ns != own).then_some(())
        })
        .expect("unshare made its namespaces");
        NsHolder(child)
    }

    fn ns(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.0.id()))
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn restrictive_security_context_takes_effect_inside() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rootfs = env.subdir("rootfs").expect("rootfs");
    berth_integration_tests::fixtures::busybox_rootfs(&rootfs).expect("busybox");
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .expect("group");
    std::fs::create_dir_all(rootfs.join("out")).expect("mkdir out");
    let out = env.subdir("out").expect("out");
    std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod out");
    let sbdir = env.subdir("sandbox").expect("sandbox dir");
    std::fs::write(sbdir.join("hostname"), "web-0\n").expect("hostname");
    std::fs::write(sbdir.join("hosts"), "127.0.0.1\tlocalhost\n").expect("hosts");
    // writable by the container's user: only the read-only mount refuses the write
    std::fs::set_permissions(
        sbdir.join("hosts"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod hosts");
    std::fs::write(sbdir.join("resolv.conf"), "nameserver 10.0.0.10\n").expect("resolv");
    let shm = env.subdir("shm").expect("shm");
    std::fs::set_permissions(&shm, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
        .expect("chmod shm");

    let netns = env.pod_netns("spec").expect("pod netns");
    let holder = NsHolder::new(&env);
    let pod = PodContext {
        sandbox_id: "sb-spec".into(),
        namespaces: PodNamespaces {
            network: Ns::Path(netns.path()),
            ipc: Ns::Path(holder.ns("ipc")),
            uts: Ns::Path(holder.ns("uts")),
            pid: None,
        },
        files: SandboxFiles {
            hostname: Some(sbdir.join("hostname")),
            hosts: Some(sbdir.join("hosts")),
            resolv_conf: Some(sbdir.join("resolv.conf")),
            shm: Some(shm),
        },
        target_pid_ns: None,
    };
    let sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{}", env.id()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let script = "cat /proc/self/status > /out/status; id > /out/id; \
        (touch /probe) 2> /out/rootwrite; (echo x >> /etc/hosts) 2> /out/hostswrite; \
        cat /etc/hostname > /out/hostname; cat /etc/resolv.conf > /out/resolv; \
        echo \"$HOSTNAME $FOO\" > /out/env; wc -c < /proc/version > /out/masked; \
        cat /proc/self/oom_score_adj > /out/oom; touch /dev/shm/x 2> /out/shm; \
        (echo 1 > /proc/sys/kernel/shmmax) 2> /out/procsys; echo ok > /out/done";
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        envs: vec![KeyValue {
            key: "FOO".into(),
            value: "bar".into(),
        }],
        mounts: vec![Mount {
            container_path: "/out".into(),
            host_path: out.to_string_lossy().into_owned(),
            ..Default::default()
        }],
        linux: Some(LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                cpu_shares: 512,
                // kubelet's value for a Guaranteed pod; this host cannot go below 0
                oom_score_adj: -997,
                ..Default::default()
            }),
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["NET_BIND_SERVICE".into()],
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                namespace_options: Some(NamespaceOption {
                    pid: 1, // CONTAINER, as kubelet sends for a pod without shared PIDs
                    ..Default::default()
                }),
                run_as_user: Some(Int64Value { value: 1000 }),
                supplemental_groups: vec![3000],
                readonly_rootfs: true,
                no_new_privs: true,
                seccomp: Some(SecurityProfile {
                    profile_type: 0,
                    localhost_ref: String::new(),
                }),
                masked_paths: vec!["/proc/version".into()],
                readonly_paths: vec!["/proc/sys".into()],
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let users = UserDb {
        passwd: std::fs::read_to_string(rootfs.join("etc/passwd")).ok(),
        group: std::fs::read_to_string(rootfs.join("etc/group")).ok(),
    };
    let image = ImageView {
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let req = ContainerRequest {
        id: "spec",
        config: &config,
        sandbox_config: &sandbox,
        pod: &pod,
        image: &image,
        image_name: "busybox:test",
        rootfs: rootfs.clone(),
        volumes_dir: env.subdir("volumes").expect("volumes"),
        users: &users,
        localhost_seccomp: None,
    };
    let facts = HostFacts::detect();
    let built = container_spec(&req, &RuntimeOptions::default(), &facts, &LinuxHost).expect("spec");
    if !facts.can_lower_oom_score_adj {
        assert_eq!(built.warnings.len(), 1, "{:?}", built.warnings);
    }

    let rt = Runtime::new(env.subdir("state").expect("state"));
    let bundle = env.subdir("bundle").expect("bundle");
    let st = rt
        .create(
            "spec",
            &CreateOptions {
                bundle,
                spec: Some(built.spec.clone()),
                ..Default::default()
            },
        )
        .expect("create");
    let mem = env.cgroups().dir("memory").expect("memory").join("spec");
    assert_eq!(
        std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .expect("limit")
            .trim(),
        (64u64 << 20).to_string()
    );
    rt.start("spec").expect("start");
    let exit = berth::oci::wait(st.pid).expect("wait");
    assert_eq!(exit, Exit::Code(0), "{}", read(&out, "status"));
    assert_eq!(read(&out, "done").trim(), "ok");

    let status = read(&out, "status");
    // a non-root process keeps no effective capabilities after exec; the bounding set
    // holds only NET_BIND_SERVICE (bit 10)
    assert_eq!(
        status_field(&status, "CapBnd"),
        "0000000000000400",
        "{status}"
    );
    assert_eq!(
        status_field(&status, "CapEff"),
        "0000000000000000",
        "{status}"
    );
    assert_eq!(
        status_field(&status, "CapAmb"),
        "0000000000000000",
        "{status}"
    );
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{status}");
    let id = read(&out, "id");
    assert!(
        id.starts_with("uid=1000(app) gid=1000(app) groups=50(staff),1000(app),3000"),
        "{id}"
    );
    assert!(
        read(&out, "rootwrite").contains("Read-only file system"),
        "{}",
        read(&out, "rootwrite")
    );
    assert!(
        read(&out, "hostswrite").contains("Read-only file system"),
        "{}",
        read(&out, "hostswrite")
    );
    assert_eq!(read(&out, "hostname"), "web-0\n");
    assert_eq!(read(&out, "resolv"), "nameserver 10.0.0.10\n");
    assert_eq!(read(&out, "env").trim(), "web-0 bar");
    assert_eq!(
        read(&out, "masked").trim(),
        "0",
        "masked /proc/version reads empty"
    );
    assert_eq!(
        read(&out, "oom").trim(),
        built
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.oom_score_adj())
            .unwrap_or_default()
            .to_string()
    );
    assert_eq!(read(&out, "shm"), "", "the pod's /dev/shm is writable");
    assert!(
        !read(&out, "procsys").is_empty(),
        "a read-only path took a write"
    );
    rt.delete("spec", false).expect("delete");
    assert!(!mem.exists());
}

/// A pod without sandbox files in its own network, IPC and UTS namespaces, and a busybox
/// rootfs whose /etc/passwd knows `app` (1000).
/// Fields drop in order: the namespace holder and netns go before the test env.
struct SmallPod {
    _holder: NsHolder,
    _netns: berth_integration_tests::netns::NetNs,
    pod: PodContext,
    rootfs: PathBuf,
    out: PathBuf,
    env: TestEnv,
}

impl SmallPod {
    fn new(tag: &str) -> SmallPod {
        let env = TestEnv::new().expect("env");
        let rootfs = env.subdir("rootfs").expect("rootfs");
        berth_integration_tests::fixtures::busybox_rootfs(&rootfs).expect("busybox");
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::create_dir_all(rootfs.join("out")).expect("mkdir out");
        let out = env.subdir("out").expect("out");
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod out");
        let netns = env.pod_netns(tag).expect("pod netns");
        let holder = NsHolder::new(&env);
        let pod = PodContext {
            sandbox_id: format!("sb-{tag}"),
            namespaces: PodNamespaces {
                network: Ns::Path(netns.path()),
                ipc: Ns::Path(holder.ns("ipc")),
                uts: Ns::Path(holder.ns("uts")),
                pid: None,
            },
            files: SandboxFiles::default(),
            target_pid_ns: None,
        };
        SmallPod {
            env,
            rootfs,
            out,
            _netns: netns,
            _holder: holder,
            pod,
        }
    }

    fn sandbox(&self, privileged: bool) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "small".into(),
                uid: "u2".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}", self.env.id()),
                security_context: Some(LinuxSandboxSecurityContext {
                    privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn config(&self, script: &str, sc: LinuxContainerSecurityContext) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            }),
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            mounts: vec![Mount {
                container_path: "/out".into(),
                host_path: self.out.to_string_lossy().into_owned(),
                ..Default::default()
            }],
            linux: Some(LinuxContainerConfig {
                resources: None,
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        pid: 1,
                        ..Default::default()
                    }),
                    ..sc
                }),
            }),
            ..Default::default()
        }
    }

    fn build(
        &self,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
        image: &ImageView,
    ) -> Result<berth::runtime::spec::ContainerSpec, berth::runtime::spec::SpecError> {
        self.build_with_profile(config, sandbox, image, None)
    }

    fn build_with_profile(
        &self,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
        image: &ImageView,
        localhost_seccomp: Option<&[u8]>,
    ) -> Result<berth::runtime::spec::ContainerSpec, berth::runtime::spec::SpecError> {
        let users = UserDb {
            passwd: std::fs::read_to_string(self.rootfs.join("etc/passwd")).ok(),
            group: None,
        };
        container_spec(
            &ContainerRequest {
                id: "c",
                config,
                sandbox_config: sandbox,
                pod: &self.pod,
                image,
                image_name: "busybox:test",
                rootfs: self.rootfs.clone(),
                volumes_dir: self.env.dir().join("volumes"),
                users: &users,
                localhost_seccomp,
            },
            &RuntimeOptions::default(),
            &HostFacts::detect(),
            &LinuxHost,
        )
    }

    /// Runs the spec to completion; the container must exit 0.
    fn run(&self, spec: oci_spec::runtime::Spec) {
        let rt = Runtime::new(self.env.subdir("state").expect("state"));
        let st = rt
            .create(
                "c",
                &CreateOptions {
                    bundle: self.env.subdir("bundle").expect("bundle"),
                    spec: Some(spec),
                    ..Default::default()
                },
            )
            .expect("create");
        rt.start("c").expect("start");
        assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(0));
        rt.delete("c", false).expect("delete");
    }
}

// kubelet's most common case: allowPrivilegeEscalation unset (no no_new_privs), a
// non-root user and RuntimeDefault; the filter must still load after the user switch.
#[test]
fn runtime_default_seccomp_without_no_new_privs() {
    require_root!();
    let p = SmallPod::new("nnp");
    let config = p.config(
        "cat /proc/self/status > /out/status; id -u > /out/uid",
        LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            seccomp: Some(SecurityProfile::default()),
            ..Default::default()
        },
    );
    let built = p
        .build(&config, &p.sandbox(false), &ImageView::default())
        .expect("spec");
    p.run(built.spec);
    let status = read(&p.out, "status");
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
    assert_eq!(status_field(&status, "NoNewPrivs"), "0", "{status}");
    // Docker's 14 default capabilities bound the process, none effective for uid 1000
    assert_eq!(
        status_field(&status, "CapBnd"),
        "00000000a80425fb",
        "{status}"
    );
    assert_eq!(read(&p.out, "uid").trim(), "1000");
}

// A Localhost seccomp profile (the bytes kubelet's profile file holds) takes effect: its
// rule makes mkdir answer EXDEV.
#[test]
fn localhost_seccomp_profile_takes_effect() {
    require_root!();
    let p = SmallPod::new("local");
    let config = p.config(
        "cat /proc/self/status > /out/status; mkdir /tmp/x 2> /out/mkdir; touch /out/done",
        LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: 2,
                localhost_ref: "/var/lib/kubelet/seccomp/profiles/mkdir-exdev.json".into(),
            }),
            ..Default::default()
        },
    );
    let profile = br#"{"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]}"#;
    let e = p
        .build(&config, &p.sandbox(false), &ImageView::default())
        .expect_err("a Localhost profile needs its bytes");
    assert!(
        e.to_string().contains("linux.security_context.seccomp"),
        "{e}"
    );
    let built = p
        .build_with_profile(
            &config,
            &p.sandbox(false),
            &ImageView::default(),
            Some(profile),
        )
        .expect("spec");
    p.run(built.spec);
    assert_eq!(status_field(&read(&p.out, "status"), "Seccomp"), "2");
    assert!(
        read(&p.out, "mkdir").contains("cross-device"),
        "{}",
        read(&p.out, "mkdir")
    );
}

// A default container: root with Docker's 14 capabilities effective, no seccomp (none
// asked), the image's entrypoint, env and working dir, and a VOLUME backed by a directory
// under the container's volumes dir.
#[test]
fn defaults_image_config_and_volume() {
    require_root!();
    let p = SmallPod::new("dflt");
    let mut config = p.config("", LinuxContainerSecurityContext::default());
    config.command.clear();
    config.args = vec![
        "-c".into(),
        "cat /proc/self/status > /out/status; echo \"$GREETING $HOSTNAME\" > /out/env; \
         pwd > /out/pwd; echo kept > /data/f"
            .into(),
    ];
    let image = ImageView {
        entrypoint: vec!["/bin/sh".into()],
        cmd: vec!["-c".into(), "exit 3".into()],
        env: vec!["PATH=/bin".into(), "GREETING=hello".into()],
        working_dir: "/tmp".into(),
        volumes: vec!["/data".into()],
        ..Default::default()
    };
    let built = p.build(&config, &p.sandbox(false), &image).expect("spec");
    assert_eq!(built.image_volumes.len(), 1);
    let vol = PathBuf::from(&built.image_volumes[0].host_path);
    p.run(built.spec);
    let status = read(&p.out, "status");
    assert_eq!(
        status_field(&status, "CapEff"),
        "00000000a80425fb",
        "{status}"
    );
    assert_eq!(status_field(&status, "Seccomp"), "0", "{status}");
    let node = nix::unistd::gethostname().expect("hostname");
    assert_eq!(
        read(&p.out, "env").trim(),
        format!("hello {}", node.to_string_lossy())
    );
    assert_eq!(read(&p.out, "pwd").trim(), "/tmp");
    assert_eq!(
        read(&vol, "f").trim(),
        "kept",
        "the VOLUME is the host directory"
    );
}

#[test]
fn privileged_container_gets_the_host_view() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let rootfs = env.subdir("rootfs").expect("rootfs");
    berth_integration_tests::fixtures::busybox_rootfs(&rootfs).expect("busybox");
    std::fs::create_dir_all(rootfs.join("out")).expect("mkdir out");
    let out = env.subdir("out").expect("out");
    let netns = env.pod_netns("priv").expect("pod netns");
    let holder = NsHolder::new(&env);
    let pod = PodContext {
        sandbox_id: "sb-priv".into(),
        namespaces: PodNamespaces {
            network: Ns::Path(netns.path()),
            ipc: Ns::Path(holder.ns("ipc")),
            uts: Ns::Path(holder.ns("uts")),
            pid: None,
        },
        files: SandboxFiles::default(),
        target_pid_ns: None,
    };
    let mut sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "priv".into(),
            uid: "u2".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{}", env.id()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let script = "cat /proc/self/status > /out/status; grep ' /sys ' /proc/mounts > /out/sys; \
        ls /dev > /out/dev; wc -c < /proc/version > /out/masked; echo ok > /out/done";
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "priv".into(),
            attempt: 0,
        }),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        mounts: vec![Mount {
            container_path: "/out".into(),
            host_path: out.to_string_lossy().into_owned(),
            ..Default::default()
        }],
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(LinuxContainerSecurityContext {
                privileged: true,
                namespace_options: Some(NamespaceOption {
                    pid: 1,
                    ..Default::default()
                }),
                seccomp: Some(SecurityProfile::default()),
                masked_paths: vec!["/proc/version".into()],
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let users = UserDb::default();
    let image = ImageView::default();
    let facts = HostFacts::detect();
    let build = |sandbox: &PodSandboxConfig| {
        container_spec(
            &ContainerRequest {
                id: "priv",
                config: &config,
                sandbox_config: sandbox,
                pod: &pod,
                image: &image,
                image_name: "busybox:test",
                rootfs: rootfs.clone(),
                volumes_dir: env.dir().join("volumes"),
                users: &users,
                localhost_seccomp: None,
            },
            &RuntimeOptions::default(),
            &facts,
            &LinuxHost,
        )
    };
    let e = build(&sandbox).expect_err("pod not privileged");
    assert!(
        e.to_string().contains("no privileged container allowed"),
        "{e}"
    );
    sandbox
        .linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .privileged = true;
    let built = build(&sandbox).expect("spec");
    let rt = Runtime::new(env.subdir("state").expect("state"));
    let st = rt
        .create(
            "priv",
            &CreateOptions {
                bundle: env.subdir("bundle").expect("bundle"),
                spec: Some(built.spec),
                ..Default::default()
            },
        )
        .expect("create");
    rt.start("priv").expect("start");
    assert_eq!(berth::oci::wait(st.pid).expect("wait"), Exit::Code(0));
    assert_eq!(read(&out, "done").trim(), "ok");
    let status = read(&out, "status");
    let own = std::fs::read_to_string("/proc/self/status").expect("own status");
    assert_eq!(
        status_field(&status, "CapEff"),
        status_field(&own, "CapEff"),
        "every capability berth has"
    );
    assert_eq!(
        status_field(&status, "Seccomp"),
        "0",
        "no seccomp when privileged"
    );
    assert!(
        read(&out, "sys").contains(" rw,"),
        "sysfs read-write: {}",
        read(&out, "sys")
    );
    assert_ne!(
        read(&out, "masked").trim(),
        "0",
        "no masked paths when privileged"
    );
    let dev = read(&out, "dev");
    for node in ["fuse", "loop-control", "null"] {
        if Path::new("/dev").join(node).exists() {
            assert!(
                dev.lines().any(|l| l == node),
                "host /dev/{node} missing: {dev}"
            );
        }
    }
    rt.delete("priv", false).expect("delete");
}
