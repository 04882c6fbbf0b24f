//! The container's mounts: containerd's default mounts, the sandbox's files (/etc/hosts,
//! /etc/resolv.conf, /etc/hostname, /dev/shm), the image's volumes and the CRI mounts,
//! merged and ordered as containerd's customopts.WithMounts does.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::error::{Result, SpecError};
use super::host::{HostView, Propagation};

/// One bind mount asked for by CRI (or made by the runtime for sandbox files and image
/// volumes, with the same fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindRequest {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    /// CRI MountPropagation: PRIVATE = 0, HOST_TO_CONTAINER = 1, BIDIRECTIONAL = 2.
    pub propagation: i32,
    pub recursive_read_only: bool,
    /// Accepted and ignored: this host has no SELinux, so there is nothing to relabel
    /// (containerd's label.Relabel is a no-op there too, and kubelet sets it on every
    /// emptyDir, secret and configMap volume).
    pub selinux_relabel: bool,
    /// An image volume (CRI's `image` field, KEP-4639): `host_path` is the read-only
    /// view of the image the runtime made (or the sub path's place in it). Bound
    /// read-only, nosuid, nodev and noexec.
    pub image: bool,
}

/// `filepath.Clean` for absolute or relative Unix paths.
pub fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = vec![];
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// containerd's defaultMounts without /run (WithoutRunMount), plus the cgroup mount
/// WithMounts adds; a privileged container gets sysfs and cgroupfs read-write
/// (WithWriteableSysfs, WithWriteableCgroupfs).
pub fn default_mounts(privileged: bool, cgroup_writable: bool) -> Vec<Mount> {
    let sys_mode = if privileged { "rw" } else { "ro" };
    let cg_mode = if privileged || cgroup_writable {
        "rw"
    } else {
        "ro"
    };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", cg_mode],
        ),
    ]
}

/// Where the sandbox keeps the files every container of the pod shares; `None` for a
/// file the sandbox does not have (it is then not mounted, as in containerd).
#[derive(Debug, Clone, Default)]
pub struct SandboxFiles {
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    /// The pod's /dev/shm (the host's /dev/shm for a host-IPC pod).
    pub shm: Option<PathBuf>,
}

fn in_cri(path: &str, cri: &[BindRequest]) -> bool {
    let c = clean(path);
    cri.iter().any(|m| clean(&m.container_path) == c)
}

/// containerd's linuxContainerMounts: the sandbox's files, each unless a CRI mount
/// already covers its path; read-only with a read-only rootfs, except /dev/shm.
pub fn sandbox_mounts(
    files: &SandboxFiles,
    cri: &[BindRequest],
    readonly_rootfs: bool,
) -> Vec<BindRequest> {
    let mut out = vec![];
    for (dst, src) in [
        ("/etc/hostname", &files.hostname),
        ("/etc/hosts", &files.hosts),
        ("/etc/resolv.conf", &files.resolv_conf),
    ] {
        if let Some(src) = src
            && !in_cri(dst, cri)
        {
            out.push(BindRequest {
                container_path: dst.into(),
                host_path: src.to_string_lossy().into_owned(),
                readonly: readonly_rootfs,
                ..Default::default()
            });
        }
    }
    if let Some(shm) = &files.shm
        && !in_cri("/dev/shm", cri)
    {
        out.push(BindRequest {
            container_path: "/dev/shm".into(),
            host_path: shm.to_string_lossy().into_owned(),
            ..Default::default()
        });
    }
    out
}

/// containerd's volumeMounts: one empty directory under `volumes_dir` per image VOLUME
/// that no CRI mount covers; a relative destination is made absolute. Sorted by
/// destination so the directory names are stable. The caller copies the image's content
/// at the destination into the directory before the container starts.
pub fn image_volumes(
    volumes: &[String],
    cri: &[BindRequest],
    volumes_dir: &Path,
) -> Vec<BindRequest> {
    let mut dsts: Vec<String> = volumes
        .iter()
        .map(|d| {
            if d.starts_with('/') {
                d.clone()
            } else {
                clean(&format!("/{d}"))
            }
        })
        .filter(|d| !in_cri(d, cri))
        .collect();
    dsts.sort();
    dsts.dedup();
    dsts.into_iter()
        .enumerate()
        .map(|(i, d)| BindRequest {
            container_path: d,
            host_path: volumes_dir
                .join(format!("volume-{i}"))
                .to_string_lossy()
                .into_owned(),
            ..Default::default()
        })
        .collect()
}

/// The merged mount list and the rootfs propagation it needs.
#[derive(Debug, Clone)]
pub struct Mounts {
    pub mounts: Vec<Mount>,
    /// `rshared` or `rslave` when a mount's propagation needs it.
    pub rootfs_propagation: Option<String>,
}

/// containerd's withMounts: CRI mounts win over extra mounts of the same path; the binds
/// are ordered by depth (stable) so that a parent never hides a child; default mounts
/// that a bind replaces (and everything under /dev when /dev is bound) are dropped.
pub fn build(
    object: &str,
    cri: &[BindRequest],
    extra: &[BindRequest],
    defaults: Vec<Mount>,
    host: &dyn HostView,
) -> Result<Mounts> {
    for (i, m) in cri.iter().enumerate() {
        let field = |f: &str| format!("mounts[{i}].{f}");
        if !m.container_path.starts_with('/') {
            return Err(SpecError::invalid(
                object,
                field("container_path"),
                format!("{:?} is not an absolute path", m.container_path),
            ));
        }
        if m.image {
            if !m.readonly {
                return Err(SpecError::invalid(
                    object,
                    field("readonly"),
                    "an image volume is read-only; a read-write mount is refused",
                ));
            }
            if m.host_path.is_empty() {
                // The runtime resolves image volumes to views before the spec is built;
                // a caller without an image store cannot.
                return Err(SpecError::unsupported(
                    object,
                    field("image"),
                    "image volumes need the image store to resolve them",
                ));
            }
        }
        if m.host_path.is_empty() || !m.host_path.starts_with('/') {
            return Err(SpecError::invalid(
                object,
                field("host_path"),
                format!("{:?} is not an absolute path", m.host_path),
            ));
        }
        if m.recursive_read_only {
            // containerd: "runtime handler does not support recursive read-only mounts"
            // unless the handler reports the feature; berth's runtime does not.
            if !m.readonly {
                return Err(SpecError::invalid(
                    object,
                    field("recursive_read_only"),
                    "recursive read-only mount conflicts with RW mount",
                ));
            }
            return Err(SpecError::unsupported(
                object,
                field("recursive_read_only"),
                "runtime handler does not support recursive read-only mounts",
            ));
        }
    }
    // (index into cri or None for extra, request)
    let mut binds: Vec<(Option<usize>, &BindRequest)> =
        cri.iter().enumerate().map(|(i, m)| (Some(i), m)).collect();
    for e in extra {
        if !in_cri(&e.container_path, cri) {
            binds.push((None, e));
        }
    }
    binds.sort_by_key(|(_, m)| clean(&m.container_path).matches('/').count());

    let set: Vec<String> = binds
        .iter()
        .map(|(_, m)| clean(&m.container_path))
        .collect();
    let dev_bound = set.iter().any(|d| d == "/dev");
    let mut out: Vec<Mount> = defaults
        .into_iter()
        .filter(|m| {
            let d = clean(&m.destination().to_string_lossy());
            !(set.contains(&d) || (dev_bound && d.starts_with("/dev/")))
        })
        .collect();

    let mut rootfs_propagation: Option<String> = None;
    for (idx, m) in binds {
        let field = |f: &str| match idx {
            Some(i) => format!("mounts[{i}].{f}"),
            None => format!("({}).{f}", m.container_path),
        };
        let src = host
            .mount_source(Path::new(&m.host_path))
            .map_err(|source| SpecError::Host {
                object: object.into(),
                field: field("host_path"),
                path: PathBuf::from(&m.host_path),
                source,
            })?;
        let mut options = vec!["rbind".to_string()];
        let check = |want: &[Propagation], what: &str| -> Result<()> {
            let p = host.propagation(&src).map_err(|source| SpecError::Host {
                object: object.into(),
                field: field("propagation"),
                path: src.clone(),
                source,
            })?;
            if want.contains(&p) {
                Ok(())
            } else {
                Err(SpecError::invalid(
                    object,
                    field("propagation"),
                    format!("path {:?} is not {what} mount", src.display().to_string()),
                ))
            }
        };
        match m.propagation {
            0 => options.push("rprivate".into()),
            1 => {
                check(
                    &[Propagation::Shared, Propagation::Slave],
                    "a shared or slave",
                )?;
                options.push("rslave".into());
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".into());
                }
            }
            2 => {
                check(&[Propagation::Shared], "a shared")?;
                options.push("rshared".into());
                rootfs_propagation = Some("rshared".into());
            }
            p => {
                tracing::warn!(object, host_path = %m.host_path, propagation = p,
                    "unknown mount propagation, using private");
                options.push("rprivate".into());
            }
        }
        // Other mounts stay writable under a read-only rootfs (containerd, unlike Docker).
        options.push(if m.readonly { "ro" } else { "rw" }.into());
        if m.image {
            options.extend(["nosuid", "nodev", "noexec"].map(String::from));
        }
        let mut b = Mount::default();
        b.set_destination(PathBuf::from(&m.container_path));
        b.set_typ(Some("bind".into()));
        b.set_source(Some(src));
        b.set_options(Some(options));
        out.push(b);
    }
    Ok(Mounts {
        mounts: out,
        rootfs_propagation,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::host::HostDevice;
    use super::*;
    use std::io;

    /// A host whose bind sources exist as given and whose mounts have fixed propagation.
    #[derive(Debug, Default)]
    pub(crate) struct FakeHost {
        pub shared: Vec<&'static str>,
        pub slave: Vec<&'static str>,
        pub missing: Vec<&'static str>,
        pub devices: Vec<HostDevice>,
        /// The bind sources asked for (a real host would create missing ones).
        pub made: std::cell::RefCell<Vec<PathBuf>>,
    }

    impl HostView for FakeHost {
        fn mount_source(&self, p: &Path) -> io::Result<PathBuf> {
            if self.missing.iter().any(|m| Path::new(m) == p) {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
            self.made.borrow_mut().push(p.to_path_buf());
            Ok(p.to_path_buf())
        }
        fn propagation(&self, p: &Path) -> io::Result<Propagation> {
            Ok(if self.shared.iter().any(|s| p.starts_with(s)) {
                Propagation::Shared
            } else if self.slave.iter().any(|s| p.starts_with(s)) {
                Propagation::Slave
            } else {
                Propagation::Private
            })
        }
        fn devices(&self, host: &Path, cp: &Path) -> io::Result<Vec<HostDevice>> {
            let d = self
                .devices
                .iter()
                .find(|d| d.path == host)
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            Ok(vec![HostDevice {
                path: cp.to_path_buf(),
                ..d.clone()
            }])
        }
        fn host_devices(&self) -> io::Result<Vec<HostDevice>> {
            Ok(self.devices.clone())
        }
    }

    fn bind(c: &str, h: &str) -> BindRequest {
        BindRequest {
            container_path: c.into(),
            host_path: h.into(),
            ..Default::default()
        }
    }

    fn dests(m: &Mounts) -> Vec<String> {
        m.mounts
            .iter()
            .map(|m| m.destination().to_string_lossy().into_owned())
            .collect()
    }

    fn opts_of(m: &Mounts, dest: &str) -> Vec<String> {
        m.mounts
            .iter()
            .find(|m| m.destination() == Path::new(dest))
            .and_then(|m| m.options().clone())
            .unwrap_or_default()
    }

    #[test]
    fn clean_paths() {
        for (i, o) in [
            ("/a//b/./c/", "/a/b/c"),
            ("/../a", "/a"),
            ("/a/b/../..", "/"),
            ("a/../../b", "../b"),
            ("", "."),
        ] {
            assert_eq!(clean(i), o, "{i}");
        }
    }

    // containerd withMounts: merge, override, depth order, /dev handling
    #[test]
    fn merge_override_and_order() {
        let cri = vec![
            bind("/data/sub", "/h/sub"),
            bind("/data", "/h/data"),
            bind("/etc/hosts", "/h/hosts"),
        ];
        let files = SandboxFiles {
            hostname: Some("/sb/hostname".into()),
            hosts: Some("/sb/hosts".into()),
            resolv_conf: Some("/sb/resolv.conf".into()),
            shm: Some("/sb/shm".into()),
        };
        let extra = sandbox_mounts(&files, &cri, false);
        let m = build(
            "c",
            &cri,
            &extra,
            default_mounts(false, false),
            &FakeHost::default(),
        )
        .expect("mounts");
        assert_eq!(
            dests(&m),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/data",
                "/data/sub",
                "/etc/hosts",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/dev/shm"
            ]
        );
        let hosts = m
            .mounts
            .iter()
            .find(|x| x.destination() == Path::new("/etc/hosts"));
        assert_eq!(
            hosts.and_then(|h| h.source().clone()),
            Some(PathBuf::from("/h/hosts"))
        );
        assert_eq!(opts_of(&m, "/data"), ["rbind", "rprivate", "rw"]);
        assert_eq!(m.rootfs_propagation, None);

        let m = build(
            "c",
            &[bind("/dev", "/dev")],
            &[],
            default_mounts(false, false),
            &FakeHost::default(),
        )
        .expect("mounts");
        assert_eq!(dests(&m), ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]);
    }

    #[test]
    fn sandbox_files_follow_readonly_rootfs() {
        let files = SandboxFiles {
            hosts: Some("/sb/hosts".into()),
            shm: Some("/sb/shm".into()),
            ..Default::default()
        };
        let extra = sandbox_mounts(&files, &[], true);
        let m = build("c", &[], &extra, vec![], &FakeHost::default()).expect("mounts");
        assert_eq!(opts_of(&m, "/etc/hosts"), ["rbind", "rprivate", "ro"]);
        assert_eq!(opts_of(&m, "/dev/shm"), ["rbind", "rprivate", "rw"]);
    }

    // containerd withMounts: propagation and ensureShared / ensureSharedOrSlave
    #[test]
    fn propagation_table() {
        let host = FakeHost {
            shared: vec!["/shared"],
            slave: vec!["/slave"],
            ..Default::default()
        };
        let cases: &[(&str, i32, Option<&str>, Option<&str>)] = &[
            ("/any", 0, Some("rprivate"), None),
            ("/shared/a", 1, Some("rslave"), Some("rslave")),
            ("/slave/a", 1, Some("rslave"), Some("rslave")),
            ("/shared/a", 2, Some("rshared"), Some("rshared")),
            ("/private", 1, None, None),
            ("/slave/a", 2, None, None),
            ("/any", 7, Some("rprivate"), None),
        ];
        for (src, prop, opt, rootfs) in cases {
            let mut b = bind("/m", src);
            b.propagation = *prop;
            match (build("c", &[b], &[], vec![], &host), opt) {
                (Ok(m), Some(o)) => {
                    assert_eq!(opts_of(&m, "/m")[1], *o, "{src} {prop}");
                    assert_eq!(m.rootfs_propagation.as_deref(), *rootfs, "{src} {prop}");
                }
                (Err(e), None) => {
                    assert!(e.to_string().contains("mounts[0].propagation"), "{e}");
                    assert!(e.to_string().contains("mount"), "{e}");
                }
                (r, _) => panic!("{src} {prop}: {r:?}"),
            }
        }
        // rshared wins over a later rslave
        let mut a = bind("/a", "/shared/a");
        a.propagation = 2;
        let mut b2 = bind("/b/c", "/slave/b");
        b2.propagation = 1;
        let m = build("c", &[a, b2], &[], vec![], &host).expect("both");
        assert_eq!(m.rootfs_propagation.as_deref(), Some("rshared"));
    }

    #[test]
    fn invalid_mounts_name_the_field() {
        let cases: Vec<(BindRequest, &str)> = vec![
            (bind("rel", "/h"), "mounts[0].container_path"),
            (bind("/c", ""), "mounts[0].host_path"),
            (bind("/c", "rel"), "mounts[0].host_path"),
            (
                BindRequest {
                    recursive_read_only: true,
                    ..bind("/c", "/h")
                },
                "recursive read-only mount conflicts with RW mount",
            ),
            (
                BindRequest {
                    recursive_read_only: true,
                    readonly: true,
                    ..bind("/c", "/h")
                },
                "does not support recursive read-only mounts",
            ),
            (
                BindRequest {
                    image: true,
                    ..bind("/c", "/h")
                },
                "mounts[0].readonly",
            ),
            (
                BindRequest {
                    image: true,
                    readonly: true,
                    ..bind("/c", "")
                },
                "mounts[0].image",
            ),
            (bind("/c", "/gone"), "mounts[0].host_path"),
        ];
        let host = FakeHost {
            missing: vec!["/gone"],
            ..Default::default()
        };
        for (b, want) in cases {
            let e = build("ctr", std::slice::from_ref(&b), &[], vec![], &host).expect_err(want);
            assert!(e.to_string().contains(want), "{b:?}: {e}");
        }
        // selinux_relabel is accepted: nothing to relabel on this host
        let b = BindRequest {
            selinux_relabel: true,
            ..bind("/c", "/h")
        };
        build("ctr", &[b], &[], vec![], &host).expect("relabel accepted");
    }

    #[test]
    fn image_volumes_skip_cri_paths() {
        let cri = vec![bind("/data", "/h")];
        let v = image_volumes(
            &["/var/lib/db".into(), "data".into(), "cache/".into()],
            &cri,
            Path::new("/ctr/volumes"),
        );
        assert_eq!(
            v,
            vec![
                bind("/cache", "/ctr/volumes/volume-0"),
                bind("/var/lib/db", "/ctr/volumes/volume-1"),
            ]
        );
    }

    #[test]
    fn privileged_defaults_are_writable() {
        let ro = default_mounts(false, false);
        let rw = default_mounts(true, false);
        let mode = |ms: &[Mount], d: &str| {
            ms.iter()
                .find(|m| m.destination() == Path::new(d))
                .and_then(|m| m.options().clone())
                .and_then(|o| o.last().cloned())
        };
        assert_eq!(mode(&ro, "/sys").as_deref(), Some("ro"));
        assert_eq!(mode(&rw, "/sys").as_deref(), Some("rw"));
        assert_eq!(mode(&ro, "/sys/fs/cgroup").as_deref(), Some("ro"));
        assert_eq!(mode(&rw, "/sys/fs/cgroup").as_deref(), Some("rw"));
        assert_eq!(
            mode(&default_mounts(false, true), "/sys/fs/cgroup").as_deref(),
            Some("rw")
        );
    }

    #[test]
    fn image_volumes_bind_their_view_read_only_and_noexec() {
        let host = FakeHost::default();
        let vol = BindRequest {
            image: true,
            readonly: true,
            ..bind("/vol", "/var/lib/berth/images/views/c1/0/merged/etc")
        };
        let m = build("c", &[vol], &[], vec![], &host).expect("image volume");
        let b = &m.mounts[0];
        assert_eq!(
            b.source().as_deref(),
            Some(Path::new("/var/lib/berth/images/views/c1/0/merged/etc"))
        );
        let opts = b.options().clone().unwrap_or_default();
        for o in ["rbind", "ro", "nosuid", "nodev", "noexec"] {
            assert!(opts.iter().any(|x| x == o), "{o} missing from {opts:?}");
        }
        assert!(!opts.iter().any(|x| x == "rw"));
    }
}
