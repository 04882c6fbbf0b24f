//! Bundles for the OCI tests: a busybox rootfs and a config.json like `runc spec` makes,
//! with the container's cgroup under the test's own parent and /out bound to a test dir.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_integration_tests::TestEnv;
use serde_json::{Value, json};

/// A bundle dir and the dir the container sees as /out.
pub struct Bundle {
    pub dir: PathBuf,
    pub out: PathBuf,
    pub spec: Value,
    pub id: String,
    pub cgroups_path: String,
}

impl Bundle {
    /// A bundle named `id` under the test's temp dir running `sh -c script`.
    pub fn new(env: &TestEnv, id: &str, script: &str) -> Bundle {
        let dir = env.subdir(&format!("bundle-{id}")).expect("bundle dir");
        let rootfs = dir.join("rootfs");
        if !rootfs.join("bin/busybox").exists() {
            berth_integration_tests::fixtures::busybox_rootfs(&rootfs).expect("rootfs");
        }
        // mount points exist in the image, as in a real one (a user namespace's root may
        // not create them in a host-owned rootfs)
        std::fs::create_dir_all(rootfs.join("out")).expect("mkdir out");
        let out = env.subdir(&format!("out-{id}")).expect("out dir");
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .expect("chmod out");
        let cgroups_path = format!("/{}/{id}", env.id());
        let spec = json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["/bin/sh", "-c", script],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                    "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "berth-box",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
                {"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]}
            ],
            "linux": {
                "cgroupsPath": cgroups_path,
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                               {"type": "uts"}, {"type": "mount"}],
                "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list",
                                "/sys/firmware", "/proc/scsi"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                  "/proc/sysrq-trigger"]
            }
        });
        Bundle {
            dir,
            out,
            spec,
            id: id.to_string(),
            cgroups_path,
        }
    }

    /// Writes config.json.
    pub fn write(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.spec).expect("json"),
        )
        .expect("write config.json");
    }

    pub fn read_out(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name)).unwrap_or_default()
    }

    /// Waits until the container wrote /out/<name>.
    pub fn wait_out(&self, name: &str) -> String {
        let p = self.out.join(name);
        berth_integration_tests::util::wait_for(Duration::from_secs(15), || {
            p.exists()
                .then(|| std::fs::read_to_string(&p).unwrap_or_default())
        })
        .unwrap_or_else(|| panic!("container {} never wrote /out/{name}", self.id))
    }

    /// The container's cgroup dir for a v1 controller.
    pub fn cgroup_dir(&self, env: &TestEnv, controller: &str) -> PathBuf {
        env.cgroups()
            .dir(controller)
            .expect("controller")
            .join(&self.id)
    }
}

/// A field of /proc/<pid>/status.
pub fn status_field(pid: i32, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Capability mask bits of names.
pub fn cap_mask(names: &[&str]) -> String {
    let mut m = 0u64;
    for n in names {
        let c: caps_index::Cap = n.parse().expect("cap");
        m |= 1 << c.0;
    }
    format!("{m:016x}")
}

pub mod caps_index {
    /// The kernel's capability numbers for the few the tests use.
    pub struct Cap(pub u32);
    impl std::str::FromStr for Cap {
        type Err = String;
        fn from_str(s: &str) -> Result<Self, String> {
            Ok(Cap(match s {
                "CAP_CHOWN" => 0,
                "CAP_KILL" => 5,
                "CAP_NET_BIND_SERVICE" => 10,
                "CAP_SYS_ADMIN" => 21,
                "CAP_AUDIT_WRITE" => 29,
                _ => return Err(s.to_string()),
            }))
        }
    }
}

/// true when something is still mounted under `dir` in the caller's mount namespace.
pub fn mounted_below(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p).starts_with(dir))
}

/// What the security bundle of the runtime and CLI tests shows from inside: uid and
/// groups, hostname, RLIMIT_NOFILE, umask, cwd, the seccomp rule's errno (EXDEV on mkdir),
/// a masked path that reads empty and a read-only path that refused a write.
pub fn assert_inside_as_specified(b: &Bundle) {
    let id = b.read_out("id");
    assert!(
        id.contains("uid=1000") && id.contains("groups=10") && id.contains(",20"),
        "{id}"
    );
    assert_eq!(b.read_out("hostname").trim(), "berth-box");
    assert_eq!(b.read_out("nofile").trim(), "100");
    assert_eq!(b.read_out("umask").trim(), "0027");
    assert_eq!(b.read_out("pwd").trim(), "/tmp");
    assert!(
        b.read_out("mkdir").contains("cross-device"),
        "{}",
        b.read_out("mkdir")
    );
    assert!(!b.read_out("secret").contains("top secret"));
    assert!(
        !b.read_out("ro").is_empty(),
        "a read-only path was writable"
    );
}
