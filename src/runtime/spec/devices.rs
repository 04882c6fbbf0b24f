//! Device nodes for the container and their cgroup rules: the CRI devices (containerd's
//! WithDevices), all host devices for a privileged container (WithHostDevices and
//! WithAllDevicesAllowed), and /dev/console for a tty over a host /dev.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::error::{Result, SpecError};
use super::host::{HostDevice, HostView};

/// One CRI Device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRequest {
    pub container_path: String,
    pub host_path: String,
    pub permissions: String,
}

/// The device list and cgroup rules of a container.
#[derive(Debug, Clone, Default)]
pub struct Devices {
    pub devices: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

fn oci_device(d: &HostDevice, uid: Option<u32>, gid: Option<u32>) -> LinuxDevice {
    let mut o = LinuxDevice::default();
    o.set_path(d.path.clone());
    o.set_typ(if d.kind == 'b' {
        LinuxDeviceType::B
    } else {
        LinuxDeviceType::C
    });
    o.set_major(d.major);
    o.set_minor(d.minor);
    o.set_file_mode(Some(d.file_mode));
    o.set_uid(Some(uid.unwrap_or(d.uid)));
    o.set_gid(Some(gid.unwrap_or(d.gid)));
    o
}

fn rule(d: &HostDevice, access: &str) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true);
    r.set_typ(Some(if d.kind == 'b' {
        LinuxDeviceType::B
    } else {
        LinuxDeviceType::C
    }));
    r.set_major(Some(d.major));
    r.set_minor(Some(d.minor));
    r.set_access(Some(access.to_string()));
    r
}

/// Checks CRI device permissions: a non-empty subset of "rwm".
pub fn valid_permissions(p: &str) -> bool {
    !p.is_empty()
        && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        && p.chars().count() == p.chars().collect::<std::collections::BTreeSet<_>>().len()
}

/// The devices and rules for CRI `devices`. With `owner` (containerd's
/// device_ownership_from_security_context), non-zero run_as_user / run_as_group own the
/// nodes inside the container.
pub fn cri_devices(
    object: &str,
    requests: &[DeviceRequest],
    owner: Option<(u32, u32)>,
    host: &dyn HostView,
) -> Result<Devices> {
    let mut out = Devices::default();
    for (i, d) in requests.iter().enumerate() {
        let field = |f: &str| format!("devices[{i}].{f}");
        if !valid_permissions(&d.permissions) {
            return Err(SpecError::invalid(
                object,
                field("permissions"),
                format!("{:?} is not a combination of r, w and m", d.permissions),
            ));
        }
        if !d.host_path.starts_with('/') {
            return Err(SpecError::invalid(
                object,
                field("host_path"),
                format!("{:?} is not an absolute path", d.host_path),
            ));
        }
        // containerd: an empty container path means the host path.
        let cp = if d.container_path.is_empty() {
            d.host_path.as_str()
        } else {
            d.container_path.as_str()
        };
        if !cp.starts_with("/dev/") {
            return Err(SpecError::invalid(
                object,
                field("container_path"),
                format!("{cp:?} is not under /dev"),
            ));
        }
        let found = host
            .devices(Path::new(&d.host_path), Path::new(cp))
            .map_err(|source| SpecError::Host {
                object: object.into(),
                field: field("host_path"),
                path: d.host_path.clone().into(),
                source,
            })?;
        let (uid, gid) = match owner {
            Some((u, g)) => ((u != 0).then_some(u), (g != 0).then_some(g)),
            None => (None, None),
        };
        for hd in &found {
            out.devices.push(oci_device(hd, uid, gid));
            out.rules.push(rule(hd, &d.permissions));
        }
    }
    Ok(out)
}

/// A privileged container's devices: every host node, and one rule allowing all.
pub fn privileged_devices(object: &str, host: &dyn HostView) -> Result<Devices> {
    let found = host.host_devices().map_err(|source| SpecError::Host {
        object: object.into(),
        field: "linux.security_context.privileged".into(),
        path: "/dev".into(),
        source,
    })?;
    let mut all = LinuxDeviceCgroup::default();
    all.set_allow(true);
    all.set_access(Some("rwm".into()));
    Ok(Devices {
        devices: found.iter().map(|d| oci_device(d, None, None)).collect(),
        rules: vec![all],
    })
}

/// containerd's buildLinuxSpec: a tty container that bind-mounts the host's /dev gets the
/// host's /dev/console unless it lists one.
pub fn with_console(
    tty: bool,
    dev_from_host: bool,
    requests: &[DeviceRequest],
) -> Vec<DeviceRequest> {
    let mut out = requests.to_vec();
    if tty
        && dev_from_host
        && !requests
            .iter()
            .any(|d| d.container_path == "/dev/console" && !d.host_path.is_empty())
    {
        out.push(DeviceRequest {
            container_path: "/dev/console".into(),
            host_path: "/dev/console".into(),
            permissions: "rwm".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::mounts::tests::FakeHost;
    use super::*;

    fn host() -> FakeHost {
        FakeHost {
            devices: vec![
                HostDevice {
                    path: "/dev/fuse".into(),
                    kind: 'c',
                    major: 10,
                    minor: 229,
                    file_mode: 0o666,
                    uid: 0,
                    gid: 0,
                },
                HostDevice {
                    path: "/dev/sda".into(),
                    kind: 'b',
                    major: 8,
                    minor: 0,
                    file_mode: 0o660,
                    uid: 0,
                    gid: 6,
                },
            ],
            ..Default::default()
        }
    }

    fn req(c: &str, h: &str, p: &str) -> DeviceRequest {
        DeviceRequest {
            container_path: c.into(),
            host_path: h.into(),
            permissions: p.into(),
        }
    }

    // containerd customopts.WithDevices / oci.WithDevices
    #[test]
    fn cri_devices_and_rules() {
        let d = cri_devices(
            "c",
            &[
                req("/dev/myfuse", "/dev/fuse", "rw"),
                req("", "/dev/sda", "rwm"),
            ],
            None,
            &host(),
        )
        .expect("devices");
        assert_eq!(d.devices.len(), 2);
        assert_eq!(d.devices[0].path(), Path::new("/dev/myfuse"));
        assert_eq!((d.devices[0].major(), d.devices[0].minor()), (10, 229));
        assert_eq!(d.devices[1].path(), Path::new("/dev/sda"));
        assert_eq!(d.devices[1].typ(), LinuxDeviceType::B);
        assert_eq!(d.rules[0].access().as_deref(), Some("rw"));
        assert!(d.rules[1].allow());
        assert_eq!(d.devices[1].gid(), Some(6));

        let d = cri_devices(
            "c",
            &[req("/dev/sda", "/dev/sda", "r")],
            Some((1000, 0)),
            &host(),
        )
        .expect("owned");
        assert_eq!(
            (d.devices[0].uid(), d.devices[0].gid()),
            (Some(1000), Some(6))
        );
    }

    #[test]
    fn bad_devices_name_the_field() {
        let cases = [
            (req("/dev/x", "/dev/fuse", ""), "devices[0].permissions"),
            (req("/dev/x", "/dev/fuse", "rwx"), "devices[0].permissions"),
            (req("/dev/x", "/dev/fuse", "rr"), "devices[0].permissions"),
            (req("/dev/x", "dev/fuse", "r"), "devices[0].host_path"),
            (req("/tmp/x", "/dev/fuse", "r"), "devices[0].container_path"),
            (req("/dev/x", "/dev/nope", "r"), "devices[0].host_path"),
        ];
        for (r, want) in cases {
            let e = cri_devices("ctr", &[r], None, &host()).expect_err(want);
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn privileged_gets_every_host_device() {
        let d = privileged_devices("c", &host()).expect("priv");
        assert_eq!(d.devices.len(), 2);
        assert_eq!(d.rules.len(), 1);
        assert!(d.rules[0].allow() && d.rules[0].major().is_none());
    }

    #[test]
    fn console_for_tty_over_host_dev() {
        assert_eq!(with_console(true, true, &[]).len(), 1);
        assert!(with_console(false, true, &[]).is_empty());
        assert!(with_console(true, false, &[]).is_empty());
        let own = [req("/dev/console", "/dev/tty1", "rw")];
        assert_eq!(with_console(true, true, &own), own.to_vec());
    }
}
