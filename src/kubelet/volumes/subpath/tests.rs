//! The subPath walk on real files in a temp dir, with the mount calls recorded by the
//! fake; and, as root, the bind mounts for real in a private mount namespace.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::*;
use crate::kubelet::volumes::tests::TempDir;
use crate::sys::mount::Mounter;
use crate::sys::record::{Answers, Call, Recorder};

/// The recording fake, with a mount's `/proc/self/fd/<fd>` source recorded as what the
/// fd was open on at the time of the call: the file the kernel would have mounted.
struct Resolving(Recorder);

impl Mounter for Resolving {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        let resolved = source.map(|s| {
            if s.starts_with("/proc/self/fd") {
                std::fs::read_link(s).unwrap_or_else(|e| panic!("{}: {e}", s.display()))
            } else {
                s.to_path_buf()
            }
        });
        self.0
            .mount(resolved.as_deref(), target, fstype, flags, data)
    }
    fn umount(&self, target: &Path, flags: MntFlags) -> nix::Result<()> {
        self.0.umount(target, flags)
    }
    fn mount_flags(&self, target: &Path) -> nix::Result<MsFlags> {
        self.0.mount_flags(target)
    }
    fn mountinfo(&self) -> std::io::Result<String> {
        self.0.mountinfo()
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A mountinfo text with a mount on each of `points`.
fn mountinfo(points: &[&Path]) -> String {
    let mut s = String::from("22 1 8:1 / / rw - ext4 /dev/sda1 rw\n");
    for (i, p) in points.iter().enumerate() {
        s.push_str(&format!(
            "{} 22 8:1 /x {} rw - ext4 /dev/sda1 rw\n",
            100 + i,
            p.display()
        ));
    }
    s
}

/// A volume dir (0777) and a pod dir in a temp dir, both resolved, and a dir outside.
struct Layout {
    _t: TempDir,
    vol: PathBuf,
    pod: PathBuf,
    outside: PathBuf,
}

fn layout(name: &str) -> Layout {
    let t = TempDir::new(name);
    let base = std::fs::canonicalize(t.path()).unwrap();
    let (vol, pod, outside) = (base.join("vol"), base.join("pod"), base.join("outside"));
    for d in [&vol, &pod, &outside] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(outside.join("secret"), "host").unwrap();
    Layout {
        _t: t,
        vol,
        pod,
        outside,
    }
}

fn subpath(l: &Layout, index: usize, sub: &str) -> Subpath {
    Subpath {
        volume_mount_index: index,
        path: l.vol.join(sub),
        volume_name: "data".into(),
        volume_path: l.vol.clone(),
        pod_dir: l.pod.clone(),
        container_name: "app".into(),
    }
}

fn bind(source: &Path, target: &Path) -> Call {
    Call::Mount {
        source: Some(source.to_path_buf()),
        target: target.to_path_buf(),
        fstype: None,
        flags: MsFlags::MS_BIND,
        data: None,
    }
}

fn umount(target: &Path) -> Call {
    Call::Umount {
        target: target.to_path_buf(),
        flags: MntFlags::empty(),
    }
}

#[test]
fn validate_refuses_absolute_and_backsteps() {
    assert_eq!(
        validate("/etc").unwrap_err(),
        "error SubPath `/etc` must not be an absolute path"
    );
    for bad in ["..", "a/../b", "a/.."] {
        assert_eq!(
            validate(bad).unwrap_err(),
            format!("unable to provision SubPath `{bad}`: must not contain '..'")
        );
    }
    validate("a/..b/c.").unwrap();
}

#[test]
fn safe_make_dir_makes_with_the_volume_mode_and_never_outside() {
    let l = layout("mkdir");
    std::os::unix::fs::symlink(&l.outside, l.vol.join("escape")).unwrap();
    std::os::unix::fs::symlink("../..", l.vol.join("up")).unwrap();
    std::os::unix::fs::symlink("/nonexistent-berth-test/x", l.vol.join("dangling")).unwrap();
    std::fs::create_dir(l.vol.join("real")).unwrap();
    std::os::unix::fs::symlink("real", l.vol.join("inside")).unwrap();

    safe_make_dir("new/./deeper/", &l.vol, 0o2775).unwrap();
    // Every made dir has the mode, setgid included, whatever the umask.
    assert_eq!(mode(&l.vol.join("new")), 0o2775);
    assert_eq!(mode(&l.vol.join("new/deeper")), 0o2775);
    // Again: nothing to do.
    safe_make_dir("new/deeper", &l.vol, 0o700).unwrap();
    assert_eq!(mode(&l.vol.join("new/deeper")), 0o2775);
    // Through a symlink that stays inside.
    safe_make_dir("inside/x", &l.vol, 0o777).unwrap();
    assert!(l.vol.join("real/x").is_dir());

    let e = safe_make_dir("escape/x", &l.vol, 0o777).unwrap_err();
    assert!(matches!(e, SubpathError::Outside { .. }), "{e}");
    let e = safe_make_dir("up/x", &l.vol, 0o777).unwrap_err();
    assert!(matches!(e, SubpathError::Outside { .. }), "{e}");
    // A dangling symlink is not made into a directory where it points.
    let e = safe_make_dir("dangling", &l.vol, 0o777).unwrap_err();
    assert!(e.to_string().contains("cannot create directory"), "{e}");
    let e = safe_make_dir("dangling/x", &l.vol, 0o777).unwrap_err();
    assert!(e.to_string().contains("cannot create directory"), "{e}");
    assert!(!Path::new("/nonexistent-berth-test").exists());
    assert_eq!(std::fs::read_dir(&l.outside).unwrap().count(), 1);
    // A file in the way.
    std::fs::write(l.vol.join("file"), "").unwrap();
    let e = safe_make_dir("file", &l.vol, 0o777).unwrap_err();
    assert!(e.to_string().contains("ENOTDIR"), "{e}");
}

#[test]
fn safe_open_refuses_any_symlink_on_the_way() {
    let l = layout("open");
    std::fs::create_dir_all(l.vol.join("real/sub")).unwrap();
    std::os::unix::fs::symlink("real", l.vol.join("inside")).unwrap();
    // Even one leading inside: the path was resolved before, so a symlink found now was
    // swapped in since.
    let e = safe_open::safe_open(&l.vol.join("inside/sub"), &l.vol).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "unexpected symlink found {}",
            l.vol.join("inside").display()
        )
    );
    let e = safe_open::safe_open(&l.outside, &l.vol).unwrap_err();
    assert!(matches!(e, SubpathError::Outside { .. }), "{e}");
    let fd = safe_open::safe_open(&l.vol.join("real/sub"), &l.vol).unwrap();
    let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    assert_eq!(std::fs::read_link(link).unwrap(), l.vol.join("real/sub"));
}

#[test]
fn bind_mounts_the_opened_file_onto_the_upstream_target() {
    let l = layout("bind");
    std::fs::create_dir_all(l.vol.join("logs/app")).unwrap();
    std::fs::write(l.vol.join("conf.txt"), "x").unwrap();
    std::os::unix::fs::symlink("logs", l.vol.join("link")).unwrap();
    let rec = Resolving(Recorder::default());

    let dir_target = prepare_safe_subpath(&rec, &subpath(&l, 1, "logs/app")).unwrap();
    let file_target = prepare_safe_subpath(&rec, &subpath(&l, 3, "conf.txt")).unwrap();
    // A symlink that stays inside the volume is resolved first, then opened safely.
    let link_target = prepare_safe_subpath(&rec, &subpath(&l, 4, "link")).unwrap();
    let c = l.pod.join("volume-subpaths/data/app");
    assert_eq!(
        [&dir_target, &file_target, &link_target],
        [&c.join("1"), &c.join("3"), &c.join("4")]
    );
    assert!(dir_target.is_dir() && file_target.is_file() && link_target.is_dir());
    assert_eq!(mode(&dir_target), 0o750 & !umask());
    assert_eq!(mode(&file_target), 0o640 & !umask());
    assert_eq!(
        rec.0.calls(),
        [
            bind(&l.vol.join("logs/app"), &dir_target),
            bind(&l.vol.join("conf.txt"), &file_target),
            bind(&l.vol.join("logs"), &link_target),
        ]
    );
}

fn umask() -> u32 {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    nix::sys::stat::umask(old);
    old.bits()
}

#[test]
fn a_subpath_leading_out_of_the_volume_is_refused_and_nothing_is_made() {
    let l = layout("escape");
    std::os::unix::fs::symlink(l.outside.join("secret"), l.vol.join("passwd")).unwrap();
    std::os::unix::fs::symlink("../outside", l.vol.join("up")).unwrap();
    let rec = Resolving(Recorder::default());
    for sub in ["passwd", "up", "up/secret"] {
        let e = prepare_safe_subpath(&rec, &subpath(&l, 0, sub)).unwrap_err();
        assert!(matches!(e, SubpathError::Outside { .. }), "{sub}: {e}");
    }
    assert!(rec.0.calls().is_empty());
    assert!(!l.pod.join("volume-subpaths").exists());
}

#[test]
fn an_existing_bind_mount_is_kept_when_it_is_the_same_file_else_replaced() {
    let l = layout("reuse");
    std::fs::write(l.vol.join("conf.txt"), "x").unwrap();
    let sp = subpath(&l, 0, "conf.txt");
    let first = prepare_safe_subpath(&Resolving(Recorder::default()), &sp).unwrap();
    // What a bind mount of the file looks like to lstat: the same inode. A hard link
    // stands in for it without root.
    std::fs::remove_file(&first).unwrap();
    std::fs::hard_link(l.vol.join("conf.txt"), &first).unwrap();
    let mounted = Resolving(Recorder::new(Answers {
        mountinfo: mountinfo(&[&first]),
        ..Default::default()
    }));
    assert_eq!(prepare_safe_subpath(&mounted, &sp).unwrap(), first);
    assert!(mounted.0.calls().is_empty(), "{:?}", mounted.0.calls());

    // The container replaced the file: the old mount goes, the new file is mounted.
    std::fs::remove_file(l.vol.join("conf.txt")).unwrap();
    std::fs::write(l.vol.join("conf.txt"), "y").unwrap();
    assert_eq!(prepare_safe_subpath(&mounted, &sp).unwrap(), first);
    assert_eq!(
        mounted.0.calls(),
        [umount(&first), bind(&l.vol.join("conf.txt"), &first)]
    );

    // A mount point that is not mounted any more is just made again.
    let fresh = Resolving(Recorder::default());
    assert_eq!(prepare_safe_subpath(&fresh, &sp).unwrap(), first);
    assert_eq!(fresh.0.calls(), [bind(&l.vol.join("conf.txt"), &first)]);

    // The subPath became a directory: the file target is made a directory.
    std::fs::remove_file(l.vol.join("conf.txt")).unwrap();
    std::fs::create_dir(l.vol.join("conf.txt")).unwrap();
    assert_eq!(
        prepare_safe_subpath(&Resolving(Recorder::default()), &sp).unwrap(),
        first
    );
    assert!(first.is_dir());
}

#[test]
fn a_failed_mount_leaves_no_target() {
    let l = layout("fail");
    std::fs::create_dir(l.vol.join("d")).unwrap();
    let rec =
        Resolving(Recorder::default().fail_on(|c| matches!(c, Call::Mount { .. }), Errno::EPERM));
    let e = prepare_safe_subpath(&rec, &subpath(&l, 0, "d")).unwrap_err();
    assert!(e.to_string().contains("error mounting"), "{e}");
    assert!(e.to_string().contains("EPERM"), "{e}");
    assert!(!l.pod.join("volume-subpaths").exists());
    assert!(l.vol.join("d").is_dir());
}

#[test]
fn clean_unmounts_each_target_then_removes_the_dirs() {
    let l = layout("clean");
    std::fs::create_dir(l.vol.join("d")).unwrap();
    std::fs::write(l.vol.join("d/keep"), "data").unwrap();
    std::fs::write(l.vol.join("f"), "data").unwrap();
    let setup = Resolving(Recorder::default());
    let mut sp = subpath(&l, 0, "d");
    let d = prepare_safe_subpath(&setup, &sp).unwrap();
    sp.path = l.vol.join("f");
    sp.volume_mount_index = 1;
    let f = prepare_safe_subpath(&setup, &sp).unwrap();
    sp.container_name = "sidecar".into();
    sp.volume_mount_index = 0;
    let s = prepare_safe_subpath(&setup, &sp).unwrap();

    // The target of a mount the table does not show (another namespace's, say) is not
    // empty: it is left, with its dirs, and reported; nothing inside is deleted.
    std::fs::write(d.join("keep"), "data").unwrap();
    let rec = Recorder::new(Answers {
        mountinfo: mountinfo(&[&f, &s, &s]),
        ..Default::default()
    });
    let errors = clean_subpaths(&rec, &l.pod);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].to_string().contains("error deleting"),
        "{}",
        errors[0]
    );
    assert_eq!(std::fs::read_to_string(d.join("keep")).unwrap(), "data");
    // Stacked twice: unmounted twice.
    assert_eq!(rec.calls(), [umount(&f), umount(&s), umount(&s)]);
    assert!(!f.exists() && !s.exists() && !s.parent().unwrap().exists());
    assert!(d.exists());

    std::fs::remove_file(d.join("keep")).unwrap();
    let rec = Recorder::new(Answers {
        mountinfo: mountinfo(&[&d]),
        ..Default::default()
    });
    assert!(clean_subpaths(&rec, &l.pod).is_empty());
    assert_eq!(rec.calls(), [umount(&d)]);
    assert!(!l.pod.join("volume-subpaths").exists());
    assert_eq!(
        std::fs::read_to_string(l.vol.join("d/keep")).unwrap(),
        "data"
    );
    // Nothing there: nothing to do.
    assert!(clean_subpaths(&rec, &l.pod).is_empty());

    // An unmount that fails is reported and keeps the target.
    let again = prepare_safe_subpath(&setup, &sp).unwrap();
    let failing = Recorder::new(Answers {
        mountinfo: mountinfo(&[&again]),
        ..Default::default()
    })
    .fail_on(|c| matches!(c, Call::Umount { .. }), Errno::EBUSY);
    let errors = clean_subpaths(&failing, &l.pod);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("EBUSY"), "{}", errors[0]);
    assert!(again.exists());
}

/// The manager end to end: container mounts give the runtime the bind targets, an escape
/// gets upstream's message, and teardown unmounts the subPaths before the volumes.
#[test]
fn manager_mounts_subpaths_and_tears_them_down_first() {
    use crate::kubelet::Objects;
    use crate::kubelet::volumes::{MountContext, VolumeManager};
    use k8s_openapi::api::core::v1::{Container, Pod};
    use serde_json::json;

    let t = TempDir::new("manager");
    let root = std::fs::canonicalize(t.path()).unwrap();
    let host = root.join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("file.txt"), "host data").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", host.join("passwd")).unwrap();
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1"},
        "spec": {"containers": [], "volumes": [
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
            {"name": "host", "hostPath": {"path": host}}]}
    }))
    .unwrap();
    let c: Container = serde_json::from_value(json!({"name": "app", "volumeMounts": [
        {"name": "mem", "mountPath": "/m"},
        {"name": "mem", "mountPath": "/logs", "subPath": "logs/app"},
        {"name": "host", "mountPath": "/etc/f", "subPath": "file.txt"}]}))
    .unwrap();
    let setup = Arc::new(Recorder::default());
    let m = VolumeManager::new(root.clone(), setup.clone());
    let vols = m.setup_pod(&p, &Objects::default()).unwrap();
    let ms = m
        .container_mounts(&p, &c, &vols, &MountContext::default())
        .unwrap();
    let pd = root.join("pods/uid-1");
    let mem = pd.join("volumes/kubernetes.io~empty-dir/mem");
    let (logs, file) = (
        pd.join("volume-subpaths/mem/app/1"),
        pd.join("volume-subpaths/host/app/2"),
    );
    let hosts: Vec<&str> = ms.iter().map(|m| m.host_path.as_str()).collect();
    assert_eq!(
        hosts,
        [
            mem.to_str().unwrap(),
            logs.to_str().unwrap(),
            file.to_str().unwrap()
        ]
    );
    assert!(logs.is_dir() && file.is_file());
    assert!(mem.join("logs/app").is_dir());

    let escape: Container = serde_json::from_value(json!({"name": "app", "volumeMounts": [
        {"name": "host", "mountPath": "/p", "subPath": "passwd"}]}))
    .unwrap();
    let e = m
        .container_mounts(&p, &escape, &vols, &MountContext::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pod ns/web container app volumeMount host: failed to prepare subPath for volumeMount \"host\" of container \"app\""
    );

    // A new manager (berth restarted after a kill -9) knows only the disk and the mount
    // table.
    let rec = Arc::new(Recorder::new(Answers {
        mountinfo: mountinfo(&[&mem, &logs, &file]),
        ..Default::default()
    }));
    VolumeManager::new(root.clone(), rec.clone())
        .teardown_pod("uid-1")
        .unwrap();
    assert_eq!(rec.calls(), [umount(&file), umount(&logs), umount(&mem)]);
    assert!(!pd.exists());
    assert_eq!(
        std::fs::read_to_string(host.join("file.txt")).unwrap(),
        "host data"
    );
}
