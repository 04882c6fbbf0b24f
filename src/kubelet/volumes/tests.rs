//! The manager end to end in a temp dir with the recording mount fake; and, as root, the
//! tmpfs emptyDir for real in a private mount namespace.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cri_proto::v1 as cri;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use serde_json::json;

use super::*;
use crate::sys::record::{Answers, Call, Recorder};

/// A temp dir removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        let p = std::env::temp_dir().join(format!(
            "berth-vol-{name}-{}-{:08x}",
            std::process::id(),
            u32::from_ne_bytes(b)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn objects(cm_data: serde_json::Value) -> Objects {
    let mut o = Objects::default();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cfg", "namespace": "ns"}, "data": cm_data}))
    .unwrap();
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sec", "namespace": "ns"},
        "data": {"user": "YWRtaW4=", "pass": "aHVudGVyMg=="}}))
    .unwrap();
    o.config_maps.insert(("ns".into(), "cfg".into()), cm);
    o.secrets.insert(("ns".into(), "sec".into()), s);
    o
}

fn pod(volumes: serde_json::Value, containers: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web", "tier": "fe"}},
        "spec": {"volumes": volumes, "containers": containers}
    }))
    .unwrap()
}

fn manager(root: &Path, rec: Arc<Recorder>) -> VolumeManager {
    VolumeManager::new(root.to_path_buf(), rec).with_node_allocatable(2000, 1 << 30)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn every_kind_laid_out_as_upstream() {
    let t = TempDir::new("layout");
    let rec = Arc::new(Recorder::default());
    let m = manager(t.path(), rec.clone());
    let host_dir = t.path().join("host/data");
    let p = pod(
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "host", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}},
            {"name": "conf", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "dir/a.txt", "mode": 0o600}]}},
            {"name": "creds", "secret": {"secretName": "sec", "defaultMode": 0o400}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}},
            {"name": "all", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": "cfg"}},
                {"secret": {"name": "sec", "items": [{"key": "user", "path": "u", "mode": 0o404}]}},
                {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"configMap": {"name": "gone", "optional": true}}]}}
        ]),
        json!([{"name": "c"}]),
    );
    let vols = m
        .setup_pod(&p, &objects(json!({"a": "A", "b": "B"})))
        .unwrap();
    let pd = t.path().join("pods/uid-1");
    let v = |kind: &str, name: &str| pd.join("volumes").join(kind).join(name);

    assert_eq!(
        vols.volumes["scratch"],
        MountedVolume {
            host_path: v(EMPTY_DIR, "scratch"),
            read_only: false
        }
    );
    assert_eq!(mode(&v(EMPTY_DIR, "scratch")), 0o777);
    assert_eq!(vols.volumes["host"].host_path, host_dir);
    assert!(host_dir.is_dir());
    assert!(vols.volumes["conf"].read_only && vols.volumes["creds"].read_only);

    let conf = v(CONFIG_MAP, "conf");
    assert_eq!(
        std::fs::read_to_string(conf.join("dir/a.txt")).unwrap(),
        "A"
    );
    assert_eq!(mode(&conf.join("dir/a.txt")), 0o600);
    assert!(!conf.join("b").exists());
    let creds = v(SECRET, "creds");
    assert_eq!(
        std::fs::read_to_string(creds.join("pass")).unwrap(),
        "hunter2"
    );
    assert_eq!(mode(&creds.join("user")), 0o400);
    let info = v(DOWNWARD_API, "info");
    assert_eq!(
        std::fs::read_to_string(info.join("labels")).unwrap(),
        "app=\"web\"\ntier=\"fe\""
    );
    // No memory limit: the node's allocatable, 1 GiB.
    assert_eq!(std::fs::read_to_string(info.join("mem")).unwrap(), "1024");
    let all = v(PROJECTED, "all");
    assert_eq!(std::fs::read_to_string(all.join("a")).unwrap(), "A");
    assert_eq!(mode(&all.join("a")), 0o440);
    assert_eq!(std::fs::read_to_string(all.join("u")).unwrap(), "admin");
    assert_eq!(mode(&all.join("u")), 0o404);
    assert!(!all.join("pass").exists());
    assert_eq!(std::fs::read_to_string(all.join("name")).unwrap(), "web");

    // The memory-backed dirs are tmpfs mounts: the emptyDir at its sizeLimit, the others
    // at the node's allocatable memory (the pod sets no limit).
    let mounts: Vec<(PathBuf, Option<String>)> = rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Mount {
                target,
                fstype,
                data,
                ..
            } if fstype.as_deref() == Some("tmpfs") => Some((target, data)),
            _ => None,
        })
        .collect();
    assert_eq!(
        mounts,
        [
            (v(EMPTY_DIR, "mem"), Some("size=67108864".into())),
            (v(SECRET, "creds"), Some("size=1073741824".into())),
            (v(DOWNWARD_API, "info"), Some("size=1073741824".into())),
            (v(PROJECTED, "all"), Some("size=1073741824".into())),
        ]
    );
}

/// fsGroup (here the process's own group, which needs no root to chown to): the emptyDir
/// once, when set up; configMap files on every write, read-only; hostPath never.
#[test]
fn fs_group_owns_volumes_as_upstream() {
    let t = TempDir::new("fsgroup");
    let m = manager(t.path(), Arc::new(Recorder::default()));
    let host_dir = t.path().join("host");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut p = pod(
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": host_dir}},
            {"name": "conf", "configMap": {"name": "cfg", "defaultMode": 0o600}},
        ]),
        json!([{"name": "c"}]),
    );
    p.spec.as_mut().unwrap().security_context =
        Some(k8s_openapi::api::core::v1::PodSecurityContext {
            fs_group: Some(nix::unistd::getegid().as_raw().into()),
            ..Default::default()
        });
    m.setup_pod(&p, &objects(json!({"a": "A"}))).unwrap();
    let pd = t.path().join("pods/uid-1");
    let scratch = pd.join("volumes").join(EMPTY_DIR).join("scratch");
    let conf = pd.join("volumes").join(CONFIG_MAP).join("conf");
    assert_eq!(mode(&scratch), 0o2777);
    assert!(
        pd.join("plugins")
            .join(EMPTY_DIR)
            .join("scratch/ready")
            .is_file()
    );
    assert_eq!(mode(&conf), 0o2777);
    assert_eq!(mode(&conf.join("..data")), 0o2755);
    assert_eq!(mode(&conf.join("a")), 0o640);
    assert_eq!(mode(&host_dir), 0o700);

    // What a container wrote into the emptyDir keeps its mode on the next sync.
    std::fs::write(scratch.join("f"), "x").unwrap();
    std::fs::set_permissions(scratch.join("f"), std::fs::Permissions::from_mode(0o600)).unwrap();
    m.setup_pod(&p, &objects(json!({"a": "B"}))).unwrap();
    assert_eq!(mode(&scratch.join("f")), 0o600);
    // The configMap's new files get the group's permissions before the swap.
    assert_eq!(std::fs::read_to_string(conf.join("a")).unwrap(), "B");
    assert_eq!(mode(&conf.join("a")), 0o640);
    assert_eq!(mode(&host_dir), 0o700);
}

#[test]
fn live_update_is_one_swap_and_unchanged_writes_nothing() {
    let t = TempDir::new("update");
    let m = manager(t.path(), Arc::new(Recorder::default()));
    let p = pod(
        json!([{"name": "conf", "configMap": {"name": "cfg"}}]),
        json!([{"name": "c"}]),
    );
    m.setup_pod(&p, &objects(json!({"a": "1", "b": "2"})))
        .unwrap();
    let dir = t
        .path()
        .join("pods/uid-1/volumes")
        .join(CONFIG_MAP)
        .join("conf");
    let first = std::fs::read_link(dir.join("..data")).unwrap();

    m.setup_pod(&p, &objects(json!({"a": "1", "b": "2"})))
        .unwrap();
    assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);

    m.setup_pod(&p, &objects(json!({"a": "1", "b": "3"})))
        .unwrap();
    let second = std::fs::read_link(dir.join("..data")).unwrap();
    assert_ne!(second, first);
    assert_eq!(std::fs::read_to_string(dir.join("b")).unwrap(), "3");

    m.setup_pod(&p, &objects(json!({"a": "1"}))).unwrap();
    assert!(std::fs::symlink_metadata(dir.join("b")).is_err());
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
}

#[test]
fn missing_objects_and_keys_name_them() {
    let t = TempDir::new("missing");
    let m = manager(t.path(), Arc::new(Recorder::default()));
    let o = objects(json!({"a": "1"}));
    let err = |vols: serde_json::Value| {
        m.setup_pod(&pod(vols, json!([])), &o)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(json!([{"name": "v", "configMap": {"name": "nope"}}])),
        "pod ns/web volume v: configmap ns/nope not found"
    );
    assert_eq!(
        err(json!([{"name": "v", "secret": {"secretName": "nope"}}])),
        "pod ns/web volume v: secret ns/nope not found"
    );
    assert_eq!(
        err(
            json!([{"name": "v", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}])
        ),
        "pod ns/web volume v: configmap ns/cfg has no key \"zz\""
    );
    assert_eq!(
        err(
            json!([{"name": "v", "projected": {"sources": [{"secret": {"name": "sec", "items": [{"key": "zz", "path": "z"}]}}]}}])
        ),
        "pod ns/web volume v: secret ns/sec has no key \"zz\""
    );
    assert_eq!(
        err(
            json!([{"name": "h", "hostPath": {"path": "/nonexistent-berth-path", "type": "File"}}])
        ),
        "pod ns/web volume h: hostPath type \"File\": hostPath type check failed: /nonexistent-berth-path is not a file"
    );
    assert!(
        err(json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}]))
            .contains("volume source nfs is not supported")
    );
    // Optional: an empty volume, and an optional missing key is left out.
    let ok = m
        .setup_pod(
            &pod(
                json!([{"name": "v", "configMap": {"name": "nope", "optional": true}},
                       {"name": "w", "configMap": {"name": "cfg", "optional": true, "items": [{"key": "zz", "path": "z"}, {"key": "a", "path": "a"}]}}]),
                json!([]),
            ),
            &o,
        )
        .unwrap();
    let w = &ok.volumes["w"].host_path;
    assert!(w.join("a").exists() && !w.join("z").exists());
}

#[test]
fn teardown_unmounts_deepest_first_then_removes() {
    let t = TempDir::new("teardown");
    let rec0 = Arc::new(Recorder::default());
    let p = pod(
        json!([{"name": "mem", "emptyDir": {"medium": "Memory"}}]),
        json!([]),
    );
    manager(t.path(), rec0)
        .setup_pod(&p, &Objects::default())
        .unwrap();
    let pd = std::fs::canonicalize(t.path().join("pods/uid-1")).unwrap();
    let mem = pd.join("volumes").join(EMPTY_DIR).join("mem");
    let nested = mem.join("inner");
    let info = format!(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n90 22 0:50 / {} rw - tmpfs tmpfs rw\n91 90 0:51 / {} rw - tmpfs tmpfs rw\n",
        mem.display(),
        nested.display()
    );

    // An unmount that fails keeps the dir.
    let failing = Arc::new(
        Recorder::new(Answers {
            mountinfo: info.clone(),
            ..Default::default()
        })
        .fail_on(|c| matches!(c, Call::Umount { .. }), Errno::EBUSY),
    );
    let e = manager(t.path(), failing.clone())
        .teardown_pod("uid-1")
        .unwrap_err();
    assert!(e.to_string().contains("EBUSY"), "{e}");
    assert!(pd.exists());

    let rec = Arc::new(Recorder::new(Answers {
        mountinfo: info,
        ..Default::default()
    }));
    let m = manager(t.path(), rec.clone());
    assert_eq!(m.pod_uids().unwrap(), ["uid-1"]);
    m.teardown_pod("uid-1").unwrap();
    assert_eq!(
        rec.calls(),
        [
            Call::Umount {
                target: nested,
                flags: MntFlags::empty()
            },
            Call::Umount {
                target: mem,
                flags: MntFlags::empty()
            },
        ]
    );
    assert!(!pd.exists());
    assert!(m.pod_uids().unwrap().is_empty());
    // Gone already: nothing to do.
    m.teardown_pod("uid-1").unwrap();
}

fn container(v: serde_json::Value) -> Container {
    serde_json::from_value(v).unwrap()
}

#[test]
fn container_mounts_as_kubelet() {
    let t = TempDir::new("mounts");
    let rec = Arc::new(Recorder::default());
    let m = manager(t.path(), rec.clone());
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": {"hostname": "h", "subdomain": "s",
                 "hostAliases": [{"ip": "1.1.1.1", "hostnames": ["one"]}],
                 "volumes": [{"name": "data", "emptyDir": {}}, {"name": "conf", "configMap": {"name": "cfg"}}],
                 "containers": []}
    }))
    .unwrap();
    let vols = m.setup_pod(&p, &objects(json!({"a": "1"}))).unwrap();
    let c = container(
        json!({"name": "app", "terminationMessagePath": "/dev/termination-log",
        "volumeMounts": [
            {"name": "data", "mountPath": "/data", "mountPropagation": "HostToContainer"},
            {"name": "data", "mountPath": "logs", "subPath": "logs/app", "mountPropagation": "Bidirectional"},
            {"name": "conf", "mountPath": "/etc/app"},
            {"name": "conf", "mountPath": "/etc/a", "subPath": "a", "readOnly": true, "recursiveReadOnly": "Enabled"},
            {"name": "data", "mountPath": "/x", "mountPropagation": "None", "readOnly": true}]}),
    );
    let ctx = MountContext {
        pod_ips: vec!["10.0.0.9".into()],
        host_network: false,
    };
    let ms = m.container_mounts(&p, &c, &vols, &ctx).unwrap();
    let pd = t.path().join("pods/uid-1");
    let data = pd.join("volumes").join(EMPTY_DIR).join("data");
    let conf = pd.join("volumes").join(CONFIG_MAP).join("conf");
    let subpaths = std::fs::canonicalize(&pd).unwrap().join("volume-subpaths");
    let summary: Vec<(&str, String, bool, i32, bool)> = ms
        .iter()
        .map(|m| {
            (
                m.container_path.as_str(),
                m.host_path.clone(),
                m.readonly,
                m.propagation,
                m.recursive_read_only,
            )
        })
        .collect();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    assert_eq!(summary[0], ("/data", s(&data), false, 1, false));
    // A subPath is its bind mount below the pod's dir, named by volume, container and
    // the volumeMount's index.
    assert_eq!(
        summary[1],
        ("/logs", s(&subpaths.join("data/app/1")), false, 2, false)
    );
    assert_eq!(summary[2], ("/etc/app", s(&conf), true, 0, false));
    assert_eq!(
        summary[3],
        ("/etc/a", s(&subpaths.join("conf/app/3")), true, 0, true)
    );
    let binds: Vec<PathBuf> = rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Mount {
                source: Some(src),
                target,
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None,
            } if src.starts_with("/proc/self/fd") => Some(target),
            _ => None,
        })
        .collect();
    assert_eq!(
        binds,
        [subpaths.join("data/app/1"), subpaths.join("conf/app/3")]
    );
    assert!(subpaths.join("data/app/1").is_dir() && subpaths.join("conf/app/3").is_file());
    assert_eq!(summary[4], ("/x", s(&data), true, 0, false));
    assert_eq!(
        summary[5],
        ("/etc/hosts", s(&pd.join("etc-hosts")), false, 0, false)
    );
    assert_eq!(summary[6].0, "/dev/termination-log");
    assert_eq!(mode(&data.join("logs/app")), 0o777);

    let hosts = std::fs::read_to_string(pd.join("etc-hosts")).unwrap();
    assert!(
        hosts.contains("10.0.0.9\th.s.ns.svc.cluster.local\th\n"),
        "{hosts}"
    );
    assert!(
        hosts.ends_with("# Entries added by HostAliases.\n1.1.1.1\tone\n"),
        "{hosts}"
    );
    assert_eq!(mode(&pd.join("etc-hosts")), 0o644);
    let term = PathBuf::from(&summary[6].1);
    assert_eq!(term.parent().unwrap(), pd.join("containers/app"));
    assert_eq!(term.file_name().unwrap().len(), 8);
    assert_eq!(mode(&term), 0o666);
    assert_eq!(std::fs::metadata(&term).unwrap().len(), 0);
    // Each start gets a fresh file.
    let again = m.container_mounts(&p, &c, &vols, &ctx).unwrap();
    assert_ne!(again[6].host_path, summary[6].1);
}

#[test]
fn etc_hosts_rules() {
    let t = TempDir::new("hosts");
    let node_hosts = t.path().join("node-hosts");
    std::fs::write(&node_hosts, "127.0.0.1 localhost node\n").unwrap();
    let m = manager(t.path(), Arc::new(Recorder::default())).with_node_hosts_file(node_hosts);
    let p = pod(json!([{"name": "d", "emptyDir": {}}]), json!([]));
    let vols = m.setup_pod(&p, &Objects::default()).unwrap();
    let plain = container(json!({"name": "c"}));
    let own = container(
        json!({"name": "c", "volumeMounts": [{"name": "d", "mountPath": "/etc/hosts", "subPath": "hosts"}]}),
    );

    // No IP yet, not host network: no /etc/hosts.
    assert!(
        m.container_mounts(&p, &plain, &vols, &MountContext::default())
            .unwrap()
            .is_empty()
    );
    // The container's own /etc/hosts wins.
    let ctx = MountContext {
        pod_ips: vec!["10.0.0.1".into()],
        host_network: false,
    };
    let ms = m.container_mounts(&p, &own, &vols, &ctx).unwrap();
    assert_eq!(ms.len(), 1);
    // Host network: the node's file.
    let host = MountContext {
        pod_ips: vec![],
        host_network: true,
    };
    let ms = m.container_mounts(&p, &plain, &vols, &host).unwrap();
    assert_eq!(
        std::fs::read_to_string(&ms[0].host_path).unwrap(),
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost node\n"
    );
}

#[test]
fn mount_refusals_name_container_and_volume() {
    let t = TempDir::new("refuse");
    let m = manager(t.path(), Arc::new(Recorder::default()));
    let p = pod(json!([{"name": "d", "emptyDir": {}}]), json!([]));
    let vols = m.setup_pod(&p, &Objects::default()).unwrap();
    let ctx = MountContext::default();
    let err = |vm: serde_json::Value| {
        let c = container(json!({"name": "c", "volumeMounts": [vm]}));
        m.container_mounts(&p, &c, &vols, &ctx)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(json!({"name": "zz", "mountPath": "/z"})),
        "pod ns/web container c: cannot find volume \"zz\" to mount"
    );
    assert_eq!(
        err(json!({"name": "d", "mountPath": "/z", "subPath": "/abs"})),
        "pod ns/web container c volumeMount d: error SubPath `/abs` must not be an absolute path"
    );
    assert!(
        err(json!({"name": "d", "mountPath": "/z", "subPath": "a/../../b"}))
            .contains("must not contain '..'")
    );
    assert!(
        err(json!({"name": "d", "mountPath": "/z", "mountPropagation": "Sideways"}))
            .contains("invalid MountPropagation mode")
    );
    assert_eq!(
        err(json!({"name": "d", "mountPath": "/z", "subPathExpr": "$(POD_NAME)"})),
        "pod ns/web container c volumeMount d: missing value for POD_NAME"
    );
    let c = container(
        json!({"name": "c", "volumeMounts": [{"name": "d", "mountPath": "/z", "subPathExpr": "logs/$(POD_NAME)"}]}),
    );
    let env = [cri::KeyValue {
        key: "POD_NAME".into(),
        value: "web".into(),
    }];
    let ms = m
        .container_mounts_with_env(&p, &c, &vols, &ctx, &env)
        .unwrap();
    assert!(
        ms[0]
            .host_path
            .ends_with("/pods/uid-1/volume-subpaths/d/c/0"),
        "{}",
        ms[0].host_path
    );
    assert!(
        t.path()
            .join("pods/uid-1/volumes")
            .join(EMPTY_DIR)
            .join("d/logs/web")
            .is_dir()
    );
}

#[test]
fn bad_uid_refused() {
    let t = TempDir::new("uid");
    let m = manager(t.path(), Arc::new(Recorder::default()));
    let mut p = pod(json!([]), json!([]));
    p.metadata.uid = Some("../escape".into());
    assert!(matches!(
        m.setup_pod(&p, &Objects::default()),
        Err(VolumeError::BadUid { .. })
    ));
}

/// As root: a Memory emptyDir is a real tmpfs of the asked size, and teardown unmounts
/// it. Runs in a forked child with a private mount namespace, so the machine's mount
/// table is never touched.
#[test]
fn tmpfs_empty_dir_for_real() {
    let t = TempDir::new("tmpfs-real");
    let root = t.path().to_path_buf();
    in_forked_child("tmpfs_empty_dir_for_real", || in_private_namespace(&root));
}

/// Runs `f` in a forked child and fails the test unless it returns `Ok`: a root test that
/// unshares its mount namespace leaves the test process (and the machine) untouched. Not
/// root: says so and runs nothing (a private mount namespace needs root).
pub(crate) fn in_forked_child(test: &str, f: impl FnOnce() -> Result<(), String>) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping {test}: needs root (a private mount namespace)");
        return;
    }
    // SAFETY: the child only makes syscalls and allocates (glibc's malloc is fork-safe)
    // and leaves with _exit, never returning into the test harness.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    eprintln!("{test}: {e}");
                    2
                }
                Err(_) => 3,
            };
            // SAFETY: _exit ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            let status = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
}

fn in_private_namespace(root: &Path) -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare: {e}"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make / private: {e}"))?;
    let m = VolumeManager::new(root.to_path_buf(), Arc::new(crate::sys::mount::Linux));
    let p = pod(
        json!([{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]),
        json!([]),
    );
    let vols = m
        .setup_pod(&p, &Objects::default())
        .map_err(|e| e.to_string())?;
    // Again: no second mount.
    m.setup_pod(&p, &Objects::default())
        .map_err(|e| e.to_string())?;
    let dir = std::fs::canonicalize(&vols.volumes["mem"].host_path).map_err(|e| e.to_string())?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let lines: Vec<&str> = info
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(dir.to_str().unwrap_or_default()))
        .collect();
    if lines.len() != 1 {
        return Err(format!(
            "want one mount on {}, got {lines:?}",
            dir.display()
        ));
    }
    let (_, fs) = lines[0].split_once(" - ").ok_or("no separator")?;
    let fields: Vec<&str> = fs.split(' ').collect();
    if fields.first() != Some(&"tmpfs")
        || !fields
            .get(2)
            .is_some_and(|o| o.split(',').any(|o| o == "size=65536k"))
    {
        return Err(format!("not a 64Mi tmpfs: {}", lines[0]));
    }
    std::fs::write(dir.join("f"), "x").map_err(|e| e.to_string())?;
    m.teardown_pod("uid-1").map_err(|e| e.to_string())?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    if info.contains(dir.to_str().unwrap_or_default()) {
        return Err("still mounted after teardown".into());
    }
    if root.join("pods/uid-1").exists() {
        return Err("pod dir left".into());
    }
    Ok(())
}
