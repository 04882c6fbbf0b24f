//! CreateContainer: a CRI ContainerConfig, its PodSandboxConfig and the image's config
//! turned into the OCI spec berth's runtime runs, step for step as containerd's CRI
//! plugin builds it (buildLinuxSpec, then platformSpecOpts).

use std::collections::HashMap;
use std::path::PathBuf;

use cri_proto::v1::{ContainerConfig, PodSandboxConfig};
use oci_spec::runtime::Spec;
use serde_json::{Value, json};

use super::devices::{self, DeviceRequest};
use super::error::{Result, SpecError};
use super::host::HostView;
use super::mounts::{self, BindRequest, SandboxFiles};
use super::namespaces::{self, PodNamespaces};
use super::resources::{self, CgroupFacts, ResourcesRequest};
use super::security::{self, Profile};
use super::user::{self, GroupsPolicy, UserDb, UserRequest};
use super::{ImageView, cgroups_path, object_name};

/// containerd's default masked paths, used only with `disable_proc_mount`.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default read-only paths, used only with `disable_proc_mount`.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The runtime's settings that containerd keeps in its CRI config; the defaults are
/// containerd's.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Ignore CRI masked/readonly paths and keep the defaults (for kubelets <= 1.11).
    pub disable_proc_mount: bool,
    /// Raise oom_score_adj to the runtime's own value even where it could be lowered.
    pub restrict_oom_score_adj: bool,
    /// Privileged containers do not get the host's device nodes.
    pub privileged_without_host_devices: bool,
    /// Non-zero run_as_user/run_as_group own the container's device nodes.
    pub device_ownership_from_security_context: bool,
    /// Do not give containers volumes for the image's VOLUMEs.
    pub ignore_image_defined_volumes: bool,
    /// Mount /sys/fs/cgroup read-write.
    pub cgroup_writable: bool,
    /// The seccomp profile path used when a request names none ("" = none).
    pub unset_seccomp_profile: String,
}

/// Facts about the host the caller looked up once.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The node's hostname (HOSTNAME of a pod without one).
    pub hostname: String,
    pub cgroups: CgroupFacts,
    /// The runtime process's own capabilities: what "ALL" and privileged mean.
    pub current_caps: Vec<String>,
    /// The runtime process's own oom_score_adj.
    pub current_oom_score_adj: i32,
    /// false without CAP_SYS_RESOURCE: oom_score_adj cannot go below the current value.
    pub can_lower_oom_score_adj: bool,
}

/// Everything CreateContainer knows about the pod, besides its config.
#[derive(Debug, Clone)]
pub struct PodContext {
    pub sandbox_id: String,
    pub namespaces: PodNamespaces,
    pub files: SandboxFiles,
    /// The pid namespace of the target container (NamespaceMode TARGET).
    pub target_pid_ns: Option<PathBuf>,
}

/// One CreateContainer request, with what the caller read for it.
#[derive(Debug)]
pub struct ContainerRequest<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub sandbox_config: &'a PodSandboxConfig,
    pub pod: &'a PodContext,
    pub image: &'a ImageView,
    /// The image's name in the store, for the annotation (the config's
    /// `image.user_specified_image` wins when set, as in containerd).
    pub image_name: &'a str,
    /// The container's root filesystem (the spec's root.path).
    pub rootfs: PathBuf,
    /// Where the image's VOLUMEs get their directories.
    pub volumes_dir: PathBuf,
    /// The rootfs's /etc/passwd and /etc/group.
    pub users: &'a UserDb,
    /// The Localhost seccomp profile's bytes, read by the caller from the named file.
    pub localhost_seccomp: Option<&'a [u8]>,
}

/// The spec and what the caller must still do or report.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub spec: Spec,
    /// Image volumes the caller fills from the image before start (containerd's
    /// WithVolumes copy-up).
    pub image_volumes: Vec<BindRequest>,
    /// Requests this host lowered or skipped (to log and surface as events).
    pub warnings: Vec<String>,
}

/// The container's seccomp profile and the field that chose it; a Localhost profile's
/// path is checked here (see [`security::check_localhost_path`]).
fn seccomp_profile(
    object: &str,
    sc: Option<&cri_proto::v1::LinuxContainerSecurityContext>,
    unset: &str,
) -> Result<(Option<Profile>, &'static str)> {
    let (profile, field) = seccomp_profile_unchecked(object, sc, unset)?;
    if let Some(Profile::Localhost(path)) = &profile {
        let f = if field == TYPED_SECCOMP {
            format!("{field}.localhost_ref")
        } else {
            field.to_string()
        };
        security::check_localhost_path(object, &f, path)?;
    }
    Ok((profile, field))
}

const TYPED_SECCOMP: &str = "linux.security_context.seccomp";

/// The file of the container's Localhost seccomp profile, checked, for the caller to
/// read before [`container_spec`]; `None` for any other profile.
pub fn localhost_seccomp_path(
    cfg: &cri_proto::v1::ContainerConfig,
    sandbox: &cri_proto::v1::PodSandboxConfig,
    opts: &RuntimeOptions,
) -> Result<Option<String>> {
    let object = object_name(
        cfg.metadata.as_ref().map_or("", |m| m.name.as_str()),
        sandbox.metadata.as_ref(),
    );
    let sc = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
    Ok(
        match seccomp_profile(&object, sc, &opts.unset_seccomp_profile)?.0 {
            Some(Profile::Localhost(path)) => Some(path),
            _ => None,
        },
    )
}

fn seccomp_profile_unchecked(
    object: &str,
    sc: Option<&cri_proto::v1::LinuxContainerSecurityContext>,
    unset: &str,
) -> Result<(Option<Profile>, &'static str)> {
    const TYPED: &str = TYPED_SECCOMP;
    const PATH: &str = "linux.security_context.seccomp_profile_path";
    if let Some(p) = sc.and_then(|s| s.seccomp.as_ref()) {
        return Ok((
            Some(security::profile_from_cri(
                object,
                TYPED,
                p.profile_type,
                &p.localhost_ref,
            )?),
            TYPED,
        ));
    }
    #[allow(deprecated)]
    let path = sc.map(|s| s.seccomp_profile_path.as_str()).unwrap_or("");
    if !path.is_empty() {
        return Ok((Some(security::profile_from_path(object, PATH, path)?), PATH));
    }
    if !unset.is_empty() {
        return Ok((
            Some(security::profile_from_path(object, PATH, unset)?),
            PATH,
        ));
    }
    Ok((None, TYPED))
}

fn apparmor_profile(
    object: &str,
    sc: Option<&cri_proto::v1::LinuxContainerSecurityContext>,
) -> Result<()> {
    if let Some(p) = sc.and_then(|s| s.apparmor.as_ref()) {
        let f = "linux.security_context.apparmor";
        let prof = security::profile_from_cri(object, f, p.profile_type, &p.localhost_ref)?;
        return security::apparmor(object, f, Some(&prof));
    }
    #[allow(deprecated)]
    let path = sc.map(|s| s.apparmor_profile.as_str()).unwrap_or("");
    if path.is_empty() {
        return Ok(());
    }
    let f = "linux.security_context.apparmor_profile";
    let prof = security::profile_from_path(object, f, path)?;
    security::apparmor(object, f, Some(&prof))
}

fn paths(object: &str, field: &str, list: &[String]) -> Result<Vec<String>> {
    for (i, p) in list.iter().enumerate() {
        if !p.starts_with('/') {
            return Err(SpecError::invalid(
                object,
                format!("{field}[{i}]"),
                format!("{p:?} is not an absolute path"),
            ));
        }
    }
    Ok(list.to_vec())
}

/// Builds the OCI spec of a container (containerd's buildContainerSpec for Linux).
pub fn container_spec(
    req: &ContainerRequest<'_>,
    opts: &RuntimeOptions,
    facts: &HostFacts,
    host: &dyn HostView,
) -> Result<ContainerSpec> {
    let cfg = req.config;
    let sb = req.sandbox_config;
    let meta = cfg.metadata.as_ref();
    let sb_meta = sb.metadata.as_ref();
    let object = object_name(meta.map_or("", |m| m.name.as_str()), sb_meta);
    let object = object.as_str();
    let Some(meta) = meta else {
        return Err(SpecError::invalid(
            object,
            "metadata",
            "container config must include metadata",
        ));
    };
    let Some(sb_meta) = sb_meta else {
        return Err(SpecError::invalid(
            object,
            "sandbox_config.metadata",
            "pod sandbox config must include metadata",
        ));
    };
    if meta.name.is_empty() {
        return Err(SpecError::invalid(
            object,
            "metadata.name",
            "must not be empty",
        ));
    }
    if !cfg.cdi_devices.is_empty() {
        return Err(SpecError::unsupported(
            object,
            "CDI_devices",
            "CDI devices are not supported by berth yet",
        ));
    }
    let mut warnings = vec![];
    let linux = cfg.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let sb_sc = sb.linux.as_ref().and_then(|l| l.security_context.as_ref());
    if privileged && !sb_sc.is_some_and(|s| s.privileged) {
        return Err(SpecError::invalid(
            object,
            "linux.security_context.privileged",
            "no privileged container allowed in sandbox (the pod's security context is not privileged)",
        ));
    }
    let readonly_rootfs = sc.is_some_and(|s| s.readonly_rootfs);
    let tty = cfg.tty;

    // process: args, env, cwd
    let img = req.image;
    let image_proc = super::process::ImageProcess {
        entrypoint: &img.entrypoint,
        cmd: &img.cmd,
        env: &img.env,
        working_dir: &img.working_dir,
        user: &img.user,
    };
    let args = super::process::args(object, &cfg.command, &cfg.args, &image_proc)?;
    let hostname = if sb.hostname.is_empty() {
        facts.hostname.as_str()
    } else {
        sb.hostname.as_str()
    };
    let envs: Vec<(String, String)> = cfg
        .envs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let env = super::process::env(object, hostname, tty, &img.env, &envs)?;
    let cwd = super::process::cwd(object, &cfg.working_dir, &img.working_dir)?;

    // SELinux and AppArmor: this host has neither
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
    apparmor_profile(object, sc)?;

    // mounts
    let cri_mounts: Vec<BindRequest> = cfg
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
                return Err(SpecError::unsupported(
                    object,
                    format!("mounts[{i}].uidMappings"),
                    "idmapped mounts are not supported by berth yet",
                ));
            }
            Ok(BindRequest {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: m.propagation,
                recursive_read_only: m.recursive_read_only,
                selinux_relabel: m.selinux_relabel,
                image: m.image.as_ref().is_some_and(|i| !i.image.is_empty()),
            })
        })
        .collect::<Result<_>>()?;
    let mut extra = mounts::sandbox_mounts(&req.pod.files, &cri_mounts, readonly_rootfs);
    let image_volumes = if opts.ignore_image_defined_volumes {
        vec![]
    } else {
        mounts::image_volumes(&img.volumes, &cri_mounts, &req.volumes_dir)
    };
    extra.extend(image_volumes.iter().cloned());

    // masked and readonly paths
    let (mut masked, mut readonly): (Vec<String>, Vec<String>) = if opts.disable_proc_mount {
        (
            DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )
    } else {
        // containerd 2.x: empty unless the request lists them (kubelet sends its defaults
        // for procMount Default and nothing for Unmasked).
        (
            paths(
                object,
                "linux.security_context.masked_paths",
                sc.map_or(&[][..], |s| &s.masked_paths),
            )?,
            paths(
                object,
                "linux.security_context.readonly_paths",
                sc.map_or(&[][..], |s| &s.readonly_paths),
            )?,
        )
    };

    // devices
    let dev_from_host = cfg
        .mounts
        .iter()
        .any(|m| m.container_path == "/dev" && m.host_path == "/dev");
    let dev_reqs: Vec<DeviceRequest> = cfg
        .devices
        .iter()
        .map(|d| DeviceRequest {
            container_path: d.container_path.clone(),
            host_path: d.host_path.clone(),
            permissions: d.permissions.clone(),
        })
        .collect();
    let dev_reqs = devices::with_console(tty, dev_from_host, &dev_reqs);
    let owner = opts.device_ownership_from_security_context.then(|| {
        let v = |x: Option<&cri_proto::v1::Int64Value>| x.map_or(0, |v| v.value as u32);
        (
            v(sc.and_then(|s| s.run_as_user.as_ref())),
            v(sc.and_then(|s| s.run_as_group.as_ref())),
        )
    });
    let mut devs = devices::cri_devices(object, &dev_reqs, owner, host)?;

    // capabilities
    let caps_cfg = sc.and_then(|s| s.capabilities.as_ref());
    if caps_cfg.is_some_and(|c| !c.add_ambient_capabilities.is_empty()) {
        return Err(SpecError::unsupported(
            object,
            "linux.security_context.capabilities.add_ambient_capabilities",
            "ambient capabilities are not supported by berth yet",
        ));
    }
    let mut caps = match caps_cfg {
        Some(c) => security::capabilities(
            object,
            &c.add_capabilities,
            &c.drop_capabilities,
            &facts.current_caps,
        )?,
        None => security::DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let mut all_devices = None;
    if privileged {
        // WithPrivileged: every capability the runtime has, no masks, no seccomp.
        caps = facts.current_caps.clone();
        masked.clear();
        readonly.clear();
        if !opts.privileged_without_host_devices {
            let p = devices::privileged_devices(object, host)?;
            devs.devices.extend(p.devices);
            // WithAllDevicesAllowed replaces the rules with one allowing everything.
            all_devices = Some(p.rules);
        }
    }

    // resources and oom_score_adj
    let r = linux.and_then(|l| l.resources.as_ref());
    let rreq = r.map(ResourcesRequest::from_cri);
    let mut res = resources::resources(
        object,
        &rreq.clone().unwrap_or_default(),
        &facts.cgroups,
        devs.rules,
        &mut warnings,
    )?;
    if let Some(rules) = all_devices {
        res.set_devices(Some(rules));
    }
    let oom = match &rreq {
        Some(r) => Some(resources::oom_score_adj(
            object,
            r.oom_score_adj,
            facts.current_oom_score_adj,
            facts.can_lower_oom_score_adj,
            opts.restrict_oom_score_adj,
            &mut warnings,
        )?),
        None => None,
    };
    let cgroups_path = cgroups_path(
        object,
        "sandbox_config.linux.cgroup_parent",
        sb.linux.as_ref().map_or("", |l| l.cgroup_parent.as_str()),
        req.id,
    )?;

    // namespaces
    let ns_opts = sc.and_then(|s| s.namespace_options.as_ref());
    let ns = namespaces::container_namespaces(
        object,
        &req.pod.namespaces,
        ns_opts.map_or(namespaces::POD, |n| n.pid),
        req.pod.target_pid_ns.as_ref(),
        ns_opts
            .and_then(|n| n.userns_options.as_ref())
            .map(|u| u.mode),
        facts.cgroups.unified && !privileged,
    )?;

    // user and groups
    let policy = GroupsPolicy::from_cri(object, sc.map_or(0, |s| s.supplemental_groups_policy))?;
    let identity = user::container_identity(
        object,
        &UserRequest {
            run_as_username: sc.map_or("", |s| s.run_as_username.as_str()),
            run_as_user: sc.and_then(|s| s.run_as_user.as_ref()).map(|v| v.value),
            run_as_group: sc.and_then(|s| s.run_as_group.as_ref()).map(|v| v.value),
            supplemental_groups: sc.map_or(&[][..], |s| &s.supplemental_groups),
            image_user: &img.user,
        },
        policy,
        req.users,
    )?;

    // seccomp last: RuntimeDefault depends on the final bounding set
    let (profile, sfield) = seccomp_profile(object, sc, &opts.unset_seccomp_profile)?;
    let seccomp = security::seccomp(
        object,
        sfield,
        profile.as_ref(),
        privileged,
        &caps,
        req.localhost_seccomp,
    )?;

    // Last, once everything else is known to be valid: making bind sources creates
    // missing host directories, and a refused request must leave nothing behind.
    let defaults = mounts::default_mounts(privileged, opts.cgroup_writable);
    let built = mounts::build(object, &cri_mounts, &extra, defaults, host)?;

    let mut annotations: HashMap<&str, &str> = HashMap::new();
    annotations.insert("io.kubernetes.cri.sandbox-id", &req.pod.sandbox_id);
    annotations.insert("io.kubernetes.cri.sandbox-namespace", &sb_meta.namespace);
    annotations.insert("io.kubernetes.cri.sandbox-uid", &sb_meta.uid);
    annotations.insert("io.kubernetes.cri.sandbox-name", &sb_meta.name);
    annotations.insert("io.kubernetes.cri.container-name", &meta.name);
    let image_name = cfg
        .image
        .as_ref()
        .map(|i| i.user_specified_image.as_str())
        .filter(|n| !n.is_empty())
        .unwrap_or(req.image_name);
    annotations.insert("io.kubernetes.cri.image-name", image_name);
    annotations.insert("io.kubernetes.cri.container-type", "container");

    let mut process = json!({
        "terminal": tty,
        "user": {"uid": identity.uid, "gid": identity.gid, "additionalGids": identity.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.is_some_and(|s| s.no_new_privs),
    });
    if let Some(o) = oom {
        process["oomScoreAdj"] = json!(o);
    }
    let mut linux_v = json!({
        "namespaces": ns.iter().map(|(t, p)| match p {
            Some(p) => json!({"type": t, "path": p}),
            None => json!({"type": t}),
        }).collect::<Vec<_>>(),
        "resources": val(&res),
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        "devices": val(&devs.devices),
    });
    if let Some(p) = &cgroups_path {
        linux_v["cgroupsPath"] = json!(p);
    }
    if let Some(s) = &seccomp {
        linux_v["seccomp"] = val(s);
    }
    if let Some(p) = &built.rootfs_propagation {
        linux_v["rootfsPropagation"] = json!(p);
    }
    let spec = json!({
        "ociVersion": "1.2.0",
        "root": {"path": req.rootfs, "readonly": readonly_rootfs},
        "process": process,
        "mounts": val(&built.mounts),
        "linux": linux_v,
        "annotations": annotations,
    });
    let spec: Spec = serde_json::from_value(spec).map_err(|e| {
        SpecError::invalid(
            object,
            "spec",
            format!("the built spec does not parse: {e}"),
        )
    })?;
    for w in &warnings {
        tracing::warn!(container = object, "{w}");
    }
    Ok(ContainerSpec {
        spec,
        image_volumes,
        warnings,
    })
}

fn val<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
