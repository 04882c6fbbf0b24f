//! Capabilities, seccomp, AppArmor and SELinux from a CRI security context, as
//! containerd's CRI plugin turns them into the OCI spec.

use oci_spec::runtime::LinuxSeccomp;

use super::error::{Result, SpecError};

/// The capabilities every container gets unless it asks otherwise (containerd's
/// defaultUnixCaps, Docker's list; containerd 2.x still ships these 14).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The CRI names of a capability (`chown`, `CHOWN`, `CAP_CHOWN`) as the OCI name.
/// containerd upper-cases and prefixes `CAP_`; a name that already has the prefix is kept
/// (containerd would make it `CAP_CAP_...`, which runc then rejects).
pub fn normalize_cap(name: &str) -> String {
    let up = name.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// One capability set of the spec: bounding = effective = permitted (containerd keeps
/// them equal; inheritable and ambient stay empty, WithoutAmbientCaps).
pub fn capabilities(
    object: &str,
    add: &[String],
    drop: &[String],
    all_caps: &[String],
) -> Result<Vec<String>> {
    let field = |list: &str, i: usize| format!("linux.security_context.capabilities.{list}[{i}]");
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    // WithCapabilities: "ALL" first, so that individual adds and drops still apply.
    if add.iter().any(is_all) {
        caps = all_caps.to_vec();
    }
    if drop.iter().any(is_all) {
        caps.clear();
    }
    let check = |list: &str, i: usize, c: &str| -> Result<String> {
        let n = normalize_cap(c);
        if crate::oci::spec::known_capability(&n) {
            Ok(n)
        } else {
            Err(SpecError::invalid(
                object,
                field(list, i),
                format!("unknown capability {c:?}"),
            ))
        }
    };
    for (i, c) in add.iter().enumerate().filter(|(_, c)| !is_all(c)) {
        let n = check("add_capabilities", i, c)?;
        if !caps.contains(&n) {
            caps.push(n);
        }
    }
    for (i, c) in drop.iter().enumerate().filter(|(_, c)| !is_all(c)) {
        let n = check("drop_capabilities", i, c)?;
        caps.retain(|x| *x != n);
    }
    Ok(caps)
}

/// A CRI SecurityProfile, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    RuntimeDefault,
    Unconfined,
    /// The profile's path (`localhost/` already trimmed).
    Localhost(String),
}

const PROFILE_NAME_PREFIX: &str = "localhost/";

/// The deprecated string form (`runtime/default`, `docker/default`, "", `unconfined`,
/// `localhost/<path>`): containerd's generateSecurityProfile.
pub fn profile_from_path(object: &str, field: &str, path: &str) -> Result<Profile> {
    match path {
        "runtime/default" | "docker/default" | "" => Ok(Profile::RuntimeDefault),
        "unconfined" => Ok(Profile::Unconfined),
        p => match p.strip_prefix(PROFILE_NAME_PREFIX) {
            Some(rest) => Ok(Profile::Localhost(rest.to_string())),
            None => Err(SpecError::invalid(
                object,
                field,
                format!("invalid profile {p:?}"),
            )),
        },
    }
}

/// The typed form: CRI's ProfileType (RuntimeDefault = 0, Unconfined = 1, Localhost = 2)
/// and localhost_ref; a ref on another type is an error, as in containerd.
pub fn profile_from_cri(
    object: &str,
    field: &str,
    profile_type: i32,
    localhost_ref: &str,
) -> Result<Profile> {
    if profile_type != 2 && !localhost_ref.is_empty() {
        return Err(SpecError::invalid(
            object,
            format!("{field}.localhost_ref"),
            "must only be set if profile_type is Localhost",
        ));
    }
    match profile_type {
        0 => Ok(Profile::RuntimeDefault),
        1 => Ok(Profile::Unconfined),
        2 => {
            let r = localhost_ref
                .strip_prefix(PROFILE_NAME_PREFIX)
                .unwrap_or(localhost_ref);
            if r.is_empty() {
                return Err(SpecError::invalid(
                    object,
                    format!("{field}.localhost_ref"),
                    "a Localhost profile needs a path",
                ));
            }
            Ok(Profile::Localhost(r.to_string()))
        }
        t => Err(SpecError::invalid(
            object,
            format!("{field}.profile_type"),
            format!("unknown ProfileType {t}"),
        )),
    }
}

/// A Localhost seccomp profile names a file on the node. kubelet joins the pod's
/// localhostProfile (a descending relative path, checked by the API server) to its
/// absolute seccomp profile root, so the runtime always gets an absolute path without
/// `..`. A relative path would be read from berth's own working directory and `..` would
/// leave the profile root: both are refused (containerd 1.6 reads either as given).
pub fn check_localhost_path(object: &str, field: &str, path: &str) -> Result<()> {
    if path.contains('\0') {
        return Err(SpecError::invalid(object, field, "holds a NUL byte"));
    }
    if !path.starts_with('/') {
        return Err(SpecError::invalid(
            object,
            field,
            format!("Localhost profile {path:?} is not an absolute path"),
        ));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(SpecError::invalid(
            object,
            field,
            format!("Localhost profile {path:?} climbs with .."),
        ));
    }
    Ok(())
}

/// The seccomp section for a decided profile (containerd's GenerateSeccompSpecOpts):
/// privileged containers and Unconfined get none; RuntimeDefault is berth's default
/// profile for the final bounding set; Localhost is the caller-read file, which must be
/// an OCI seccomp section in JSON that berth's runtime can compile.
pub fn seccomp(
    object: &str,
    field: &str,
    profile: Option<&Profile>,
    privileged: bool,
    bounding: &[String],
    localhost: Option<&[u8]>,
) -> Result<Option<LinuxSeccomp>> {
    if privileged {
        return Ok(None);
    }
    match profile {
        None | Some(Profile::Unconfined) => Ok(None),
        Some(Profile::RuntimeDefault) => {
            Ok(Some(crate::oci::seccomp_default::runtime_default(bounding)))
        }
        Some(Profile::Localhost(path)) => {
            let bytes = localhost.ok_or_else(|| {
                SpecError::invalid(
                    object,
                    field,
                    format!("the Localhost profile {path:?} was not read"),
                )
            })?;
            let sc = parse_localhost(bytes).map_err(|e| {
                SpecError::invalid(object, field, format!("Localhost profile {path:?}: {e}"))
            })?;
            Ok(Some(sc))
        }
    }
}

/// Parses and checks a Localhost seccomp profile (the OCI seccomp section, which Docker's
/// profile format also satisfies); actions are checked by name first so that a bad one
/// is named, then the whole profile is compiled as the runtime would.
pub fn parse_localhost(bytes: &[u8]) -> std::result::Result<LinuxSeccomp, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".into());
    }
    // Reuse the OCI config checks by wrapping the profile in a minimal config.
    let cfg = serde_json::json!({"ociVersion": "1.0.0", "linux": {"seccomp": v}});
    let bytes = serde_json::to_vec(&cfg).map_err(|e| e.to_string())?;
    let spec = crate::oci::spec::parse("localhost-profile", &bytes).map_err(|e| e.to_string())?;
    let sc = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .ok_or_else(|| "no seccomp section".to_string())?;
    crate::oci::seccomp::compile("localhost-profile", &sc).map_err(|e| e.to_string())?;
    Ok(sc)
}

/// AppArmor on a host without it (containerd's GenerateApparmorSpecOpts with apparmor
/// disabled): only "unconfined" or nothing is accepted.
pub fn apparmor(object: &str, field: &str, profile: Option<&Profile>) -> Result<()> {
    match profile {
        None | Some(Profile::Unconfined) => Ok(()),
        Some(p) => Err(SpecError::unsupported(
            object,
            field,
            format!(
                "apparmor is not supported: this host has no AppArmor, so profile {p:?} cannot be applied"
            ),
        )),
    }
}

/// SELinux options on a host without SELinux: refused when any is set (containerd would
/// silently drop them; a pod that asks for a label gets a clear error instead).
pub fn selinux(
    object: &str,
    field: &str,
    user: &str,
    role: &str,
    typ: &str,
    level: &str,
) -> Result<()> {
    if [user, role, typ, level].iter().all(|s| s.is_empty()) {
        return Ok(());
    }
    Err(SpecError::unsupported(
        object,
        field,
        format!(
            "this host has no SELinux, so the label user={user:?} role={role:?} type={typ:?} \
             level={level:?} cannot be applied"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn all() -> Vec<String> {
        v(&["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_KILL"])
    }

    // containerd customopts.WithCapabilities / oci.WithAddedCapabilities / Dropped
    #[test]
    fn capability_add_drop_table() {
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (
                &["ALL"],
                &[],
                &["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_KILL"],
            ),
            (
                &["ALL"],
                &["chown"],
                &["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_KILL"],
            ),
            (&["NET_BIND_SERVICE"], &["ALL"], &["CAP_NET_BIND_SERVICE"]),
            (&["all"], &["all"], &[]),
            (&[], &["ALL"], &[]),
            (&["sys_admin"], &["ALL"], &["CAP_SYS_ADMIN"]),
            (&["CAP_SYS_TIME"], &["ALL"], &["CAP_SYS_TIME"]),
        ];
        for (add, drop, want) in cases {
            let got = capabilities("c", &v(add), &v(drop), &all()).expect("caps");
            assert_eq!(got, v(want), "add {add:?} drop {drop:?}");
        }
        let got = capabilities("c", &[], &v(&["NET_RAW", "mknod"]), &all()).expect("caps");
        assert_eq!(got.len(), DEFAULT_CAPS.len() - 2);
        assert!(!got.contains(&"CAP_NET_RAW".into()) && !got.contains(&"CAP_MKNOD".into()));
        let got = capabilities("c", &v(&["CHOWN"]), &[], &all()).expect("caps");
        assert_eq!(got.len(), DEFAULT_CAPS.len(), "no duplicate");
    }

    #[test]
    fn unknown_capability_names_the_field() {
        let e = capabilities("ctr", &v(&["CHOWN", "FLY"]), &[], &all()).expect_err("bad");
        assert!(
            e.to_string()
                .contains("capabilities.add_capabilities[1]: unknown capability \"FLY\""),
            "{e}"
        );
        let e = capabilities("ctr", &[], &v(&["NOPE"]), &all()).expect_err("bad");
        assert!(e.to_string().contains("drop_capabilities[0]"), "{e}");
    }

    // containerd sputil generateSecurityProfile
    #[test]
    fn deprecated_profile_strings() {
        let cases: &[(&str, Profile)] = &[
            ("", Profile::RuntimeDefault),
            ("runtime/default", Profile::RuntimeDefault),
            ("docker/default", Profile::RuntimeDefault),
            ("unconfined", Profile::Unconfined),
            (
                "localhost//var/lib/p.json",
                Profile::Localhost("/var/lib/p.json".into()),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(profile_from_path("c", "f", s).expect(s), *want, "{s}");
        }
        let e = profile_from_path("c", "seccomp_profile_path", "bogus").expect_err("bogus");
        assert!(e.to_string().contains("invalid profile \"bogus\""), "{e}");
    }

    // containerd sputil GenerateSeccompSpecOpts
    #[test]
    fn typed_profiles_and_seccomp_sections() {
        assert_eq!(
            profile_from_cri("c", "f", 0, "").expect("rd"),
            Profile::RuntimeDefault
        );
        assert_eq!(
            profile_from_cri("c", "f", 1, "").expect("u"),
            Profile::Unconfined
        );
        assert_eq!(
            profile_from_cri("c", "f", 2, "localhost//p.json").expect("l"),
            Profile::Localhost("/p.json".into())
        );
        assert!(profile_from_cri("c", "f", 0, "x").is_err());
        assert!(profile_from_cri("c", "f", 2, "").is_err());
        assert!(profile_from_cri("c", "f", 9, "").is_err());

        let b = v(&["CAP_KILL"]);
        let rd = Profile::RuntimeDefault;
        assert!(
            seccomp("c", "f", Some(&rd), true, &b, None)
                .expect("priv")
                .is_none()
        );
        assert!(
            seccomp("c", "f", None, false, &b, None)
                .expect("none")
                .is_none()
        );
        assert!(
            seccomp("c", "f", Some(&Profile::Unconfined), false, &b, None)
                .expect("u")
                .is_none()
        );
        let sc = seccomp("c", "f", Some(&rd), false, &b, None)
            .expect("rd")
            .expect("section");
        assert_eq!(sc, crate::oci::seccomp_default::runtime_default(&b));
        let local = Profile::Localhost("/p.json".into());
        let good = br#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#;
        let sc = seccomp("c", "f", Some(&local), false, &b, Some(good))
            .expect("local")
            .expect("section");
        assert_eq!(sc.syscalls().as_ref().map(Vec::len), Some(1));
        for (bad, want) in [
            (&b"{not json"[..], "not JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"defaultAction":"SCMP_ACT_NOPE"}"#, "defaultAction"),
            (
                br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"BAD"}]}"#,
                "syscalls[0].action",
            ),
        ] {
            let e = seccomp("c", "linux.security_context.seccomp", Some(&local), false, &b, Some(bad))
                .expect_err("bad profile");
            assert!(e.to_string().contains(want), "{e}");
            assert!(e.to_string().contains("linux.security_context.seccomp"), "{e}");
        }
        assert!(seccomp("c", "f", Some(&local), false, &b, None).is_err());
    }

    #[test]
    fn apparmor_and_selinux_refused_unless_empty() {
        apparmor("c", "f", None).expect("none");
        apparmor("c", "f", Some(&Profile::Unconfined)).expect("unconfined");
        let e = apparmor(
            "c",
            "linux.security_context.apparmor",
            Some(&Profile::RuntimeDefault),
        )
        .expect_err("rd");
        assert!(e.to_string().contains("apparmor is not supported"), "{e}");
        assert_eq!(e.kind(), super::super::error::ErrorKind::FailedPrecondition);
        selinux("c", "f", "", "", "", "").expect("empty");
        let e = selinux(
            "c",
            "linux.security_context.selinux_options",
            "",
            "",
            "spc_t",
            "",
        )
        .expect_err("label");
        assert!(e.to_string().contains("no SELinux"), "{e}");
    }

    // kubelet's localhost profile root: absolute, never above it
    #[test]
    fn localhost_profile_paths_are_absolute_and_descend() {
        check_localhost_path("c", "f", "/var/lib/kubelet/seccomp/p.json").expect("abs");
        for (bad, want) in [
            ("p.json", "not an absolute"),
            ("profiles/p.json", "not an absolute"),
            ("/var/lib/kubelet/seccomp/../../../etc/p.json", "climbs"),
            ("/a\0b", "NUL"),
        ] {
            let e = check_localhost_path("c", "f", bad).expect_err(bad);
            assert_eq!(e.field(), Some("f"), "{e}");
            assert!(e.to_string().contains(want), "{e}");
        }
    }
}
