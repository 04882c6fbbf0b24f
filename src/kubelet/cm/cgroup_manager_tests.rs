//! The pod cgroups written into temp-dir cgroupfs trees (v1 and v2), and once into this
//! machine's real hierarchies (as root) under a `berth-test-<random>` root.

use std::path::{Path, PathBuf};

use super::*;
use crate::cgroups::Hierarchy;
use crate::kubelet::cm::hugepage_sizes;
use crate::kubelet::cm::qos::tests::{ctr, pod};

fn temp(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("berth-cm-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("mkdir");
    root
}

/// v1 hierarchies cpu, memory, pids (each a directory of `root`).
fn v1_layout(root: &Path) -> Layout {
    Layout {
        hierarchies: ["cpu", "memory", "pids"]
            .iter()
            .map(|c| {
                std::fs::create_dir_all(root.join(c)).expect("mkdir");
                Hierarchy {
                    mount: root.join(c),
                    v2: false,
                    controllers: vec![(*c).to_string()],
                }
            })
            .collect(),
    }
}

/// A v2 tree whose root enables cpu, memory and pids.
fn v2_layout(root: &Path) -> Layout {
    for f in ["cgroup.controllers", "cgroup.subtree_control"] {
        std::fs::write(root.join(f), "cpu memory pids\n").expect(f);
    }
    Layout::v2(root)
}

fn with_uid(mut p: Pod, uid: &str) -> Pod {
    p.metadata.uid = Some(uid.into());
    p.metadata.name = Some(format!("p-{uid}"));
    p.metadata.namespace = Some("default".into());
    p
}

fn guaranteed(uid: &str) -> Pod {
    with_uid(
        pod(
            vec![ctr(
                "a",
                &[("cpu", "500m"), ("memory", "64Mi")],
                &[("cpu", "500m"), ("memory", "64Mi")],
            )],
            vec![],
        ),
        uid,
    )
}

fn burstable(uid: &str) -> Pod {
    with_uid(
        pod(
            vec![ctr(
                "a",
                &[("cpu", "250m")],
                &[("cpu", "1"), ("memory", "32Mi")],
            )],
            vec![],
        ),
        uid,
    )
}

fn besteffort(uid: &str) -> Pod {
    with_uid(pod(vec![ctr("a", &[], &[])], vec![]), uid)
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn names_as_the_cgroupfs_driver() {
    let m = CgroupManager::new(Layout::default(), "/".into());
    assert_eq!(m.pod_cgroup_name(&guaranteed("u1")), "/kubepods/podu1");
    assert_eq!(
        m.pod_cgroup_name(&burstable("u2")),
        "/kubepods/burstable/podu2"
    );
    assert_eq!(
        m.pod_cgroup_name(&besteffort("u3")),
        "/kubepods/besteffort/podu3"
    );
    let m = CgroupManager::new(Layout::default(), "/berth-test-x".into());
    assert_eq!(
        m.pod_cgroup_name(&burstable("u2")),
        "/berth-test-x/kubepods/burstable/podu2"
    );
    let m = CgroupManager::new(Layout::default(), "berth-test-y/sub".into());
    assert_eq!(
        m.pod_cgroup_name(&besteffort("u")),
        "/berth-test-y/sub/kubepods/besteffort/podu"
    );
}

#[test]
fn v1_hierarchy_and_pod_limits() {
    let root = temp("v1");
    let layout = v1_layout(&root);
    let m = CgroupManager::new(layout, "/node".into())
        .with_pod_pids_limit(100)
        .with_node_allocatable(2000, 1 << 30);
    m.ensure_qos_hierarchy().expect("qos");
    let kp = |h: &str, rest: &str| root.join(h).join("node/kubepods").join(rest);
    assert_eq!(read(kp("cpu", "cpu.shares")), "2048");
    assert_eq!(
        read(kp("memory", "memory.limit_in_bytes")),
        (1u64 << 30).to_string()
    );
    assert_eq!(read(kp("cpu", "besteffort/cpu.shares")), "2");
    assert!(kp("memory", "burstable").is_dir() && kp("pids", "besteffort").is_dir());

    let g = m.ensure_pod(&guaranteed("g1")).expect("guaranteed");
    assert_eq!(g, "/node/kubepods/podg1");
    assert_eq!(read(kp("cpu", "podg1/cpu.shares")), "512");
    assert_eq!(read(kp("cpu", "podg1/cpu.cfs_period_us")), "100000");
    assert_eq!(read(kp("cpu", "podg1/cpu.cfs_quota_us")), "50000");
    assert_eq!(
        read(kp("memory", "podg1/memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    assert_eq!(read(kp("pids", "podg1/pids.max")), "100");

    let b = m.ensure_pod(&burstable("b1")).expect("burstable");
    assert_eq!(b, "/node/kubepods/burstable/podb1");
    assert_eq!(read(kp("cpu", "burstable/podb1/cpu.shares")), "256");
    assert_eq!(
        read(kp("cpu", "burstable/podb1/cpu.cfs_quota_us")),
        "100000"
    );
    assert_eq!(
        read(kp("memory", "burstable/podb1/memory.limit_in_bytes")),
        (32u64 << 20).to_string()
    );

    let e = m.ensure_pod(&besteffort("e1")).expect("besteffort");
    assert_eq!(e, "/node/kubepods/besteffort/pode1");
    assert_eq!(read(kp("cpu", "besteffort/pode1/cpu.shares")), "2");
    assert!(!kp("cpu", "besteffort/pode1/cpu.cfs_quota_us").exists());
    assert!(!kp("memory", "besteffort/pode1/memory.limit_in_bytes").exists());

    m.update_qos_cgroups(&[
        &guaranteed("g1"),
        &burstable("b1"),
        &burstable("b2"),
        &besteffort("e1"),
    ])
    .expect("update");
    assert_eq!(read(kp("cpu", "burstable/cpu.shares")), "512");

    assert_eq!(m.pod_uids().expect("uids"), vec!["b1", "e1", "g1"]);
    // An orphan (its pod is gone) with a container cgroup the runtime left below it: both
    // go. (Here regular files stand in for cgroup files, which an rmdir would refuse, so
    // the orphan is bare directories; the real hierarchies test removes written ones.)
    for h in ["cpu", "memory", "pids"] {
        std::fs::create_dir_all(kp(h, "besteffort/podo1/ctr")).expect("mkdir");
    }
    assert_eq!(m.pod_uids().expect("uids"), vec!["b1", "e1", "g1", "o1"]);
    m.destroy_pod("o1").expect("destroy");
    assert!(!kp("memory", "besteffort/podo1").exists());
    assert!(!kp("cpu", "besteffort/podo1").exists());
    m.destroy_pod("nope").expect("an unknown pod is no error");
    assert_eq!(m.pod_uids().expect("uids"), vec!["b1", "e1", "g1"]);
    std::fs::remove_dir_all(&root).expect("rm");
}

#[test]
fn v2_hierarchy_and_pod_limits() {
    let root = temp("v2");
    let m = CgroupManager::new(v2_layout(&root), "/".into()).with_hugepage_sizes(vec![]);
    m.ensure_qos_hierarchy().expect("qos");
    let kp = |rest: &str| root.join("kubepods").join(rest);
    assert_eq!(read(kp("besteffort/cpu.weight")), "1");
    // kubepods delegates the controllers to its children
    let g = m.ensure_pod(&guaranteed("g1")).expect("guaranteed");
    assert_eq!(g, "/kubepods/podg1");
    assert_eq!(read(kp("podg1/cpu.weight")), "20"); // 512 shares
    assert_eq!(read(kp("podg1/cpu.max")), "50000 100000");
    assert_eq!(read(kp("podg1/memory.max")), (64u64 << 20).to_string());
    assert!(
        !kp("podg1/pids.max").exists(),
        "no pids limit unless configured"
    );
    let b = m
        .ensure_pod(&with_uid(
            pod(
                vec![
                    ctr("a", &[("cpu", "100m")], &[("memory", "16Mi")]),
                    ctr("b", &[], &[]),
                ],
                vec![],
            ),
            "b1",
        ))
        .expect("burstable");
    assert_eq!(b, "/kubepods/burstable/podb1");
    assert_eq!(read(kp("burstable/podb1/cpu.weight")), "4"); // 102 shares
    assert!(
        !kp("burstable/podb1/cpu.max").exists(),
        "b has no cpu limit"
    );
    assert!(
        !kp("burstable/podb1/memory.max").exists(),
        "b has no memory limit"
    );
    assert_eq!(m.pod_uids().expect("uids"), vec!["b1", "g1"]);
    // a UID that is not one directory name is refused, naming the pod
    for bad in ["", "../x", "a/b", ".."] {
        let e = m
            .ensure_pod(&with_uid(besteffort("x"), bad))
            .expect_err(bad);
        assert!(e.to_string().contains("default/p-"), "{e}");
        assert!(m.destroy_pod(bad).is_err(), "{bad}");
    }
    assert_eq!(m.pod_uids().expect("uids"), vec!["b1", "g1"]);
    std::fs::remove_dir_all(&root).expect("rm");
}

/// A hugetlb controller gets 0 for each host size the pod does not request.
#[test]
fn v2_hugetlb_limits_for_the_host_sizes() {
    let root = temp("v2-huge");
    for f in ["cgroup.controllers", "cgroup.subtree_control"] {
        std::fs::write(root.join(f), "cpu memory hugetlb pids\n").expect(f);
    }
    let m = CgroupManager::new(Layout::v2(&root), "/".into())
        .with_hugepage_sizes(vec!["1GB".into(), "2MB".into()]);
    let mut p = guaranteed("h1");
    let r = p.spec.as_mut().expect("spec").containers[0]
        .resources
        .as_mut()
        .expect("r");
    for side in [&mut r.requests, &mut r.limits] {
        side.as_mut().expect("list").insert(
            "hugepages-2Mi".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("4Mi".into()),
        );
    }
    m.ensure_pod(&p).expect("pod");
    assert_eq!(
        read(root.join("kubepods/podh1/hugetlb.2MB.max")),
        (4u64 << 20).to_string()
    );
    assert_eq!(read(root.join("kubepods/podh1/hugetlb.1GB.max")), "0");
    std::fs::remove_dir_all(&root).expect("rm");
}

/// The hierarchy and two pods on this machine's own cgroup hierarchies, under a root of
/// the test's own; the kernel's values read back; everything removed afterwards.
#[test]
fn real_hierarchies_as_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED real_hierarchies_as_root: needs root to make cgroups");
        return;
    }
    let layout = Layout::detect();
    if layout.hierarchies.is_empty() {
        eprintln!("SKIPPED real_hierarchies_as_root: no cgroup hierarchy mounted");
        return;
    }
    let name = format!("berth-test-{:08x}", rand_u32());
    let root = PathBuf::from("/").join(&name);
    let cleanup = Cleanup(layout.clone(), root.clone());
    let m = CgroupManager::new(layout.clone(), root.clone())
        .with_pod_pids_limit(50)
        .with_hugepage_sizes(hugepage_sizes(Path::new("/sys")));
    m.ensure_qos_hierarchy().expect("qos");
    let g = m.ensure_pod(&guaranteed("g1")).expect("guaranteed");
    let b = m.ensure_pod(&burstable("b1")).expect("burstable");
    m.update_qos_cgroups(&[&burstable("b1")]).expect("update");
    let dir = |controller: &str, cg: &str| -> PathBuf {
        let h = if layout.is_v2_only() {
            layout.unified()
        } else {
            layout.v1(controller)
        };
        h.expect("hierarchy").mount.join(cg.trim_start_matches('/'))
    };
    let qos = format!("/{name}/kubepods");
    if layout.is_v2_only() {
        assert_eq!(read(dir("cpu", &g).join("cpu.max")), "50000 100000");
        assert_eq!(
            read(dir("memory", &g).join("memory.max")),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(dir("cpu", &format!("{qos}/besteffort")).join("cpu.weight")),
            "1"
        );
    } else {
        assert_eq!(read(dir("cpu", &g).join("cpu.shares")), "512");
        assert_eq!(read(dir("cpu", &g).join("cpu.cfs_quota_us")), "50000");
        assert_eq!(
            read(dir("memory", &g).join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(dir("cpu", &b).join("cpu.shares")), "256");
        assert_eq!(read(dir("cpu", &b).join("cpu.cfs_quota_us")), "100000");
        assert_eq!(
            read(dir("cpu", &format!("{qos}/besteffort")).join("cpu.shares")),
            "2"
        );
        assert_eq!(
            read(dir("cpu", &format!("{qos}/burstable")).join("cpu.shares")),
            "256"
        );
    }
    assert_eq!(read(dir("pids", &g).join("pids.max")), "50");
    assert_eq!(m.pod_uids().expect("uids"), vec!["b1", "g1"]);
    // a process left in a pod's cgroup is killed when the pod goes
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("sleep");
    let pid = i32::try_from(child.id()).expect("pid");
    Cgroup::at(&layout, Path::new(&b))
        .expect("at")
        .add(pid)
        .expect("add");
    m.destroy_pod("b1").expect("destroy b1");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the process was killed");
    m.destroy_pod("g1").expect("destroy g1");
    assert!(m.pod_uids().expect("uids").is_empty());
    assert!(!dir("memory", &b).exists());
    drop(cleanup);
    for h in &layout.hierarchies {
        assert!(!h.mount.join(&name).exists(), "{} left", h.mount.display());
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        return std::process::id();
    }
    u32::from_ne_bytes(b)
}

/// Removes the test's root in every hierarchy, deepest first, on success and failure.
struct Cleanup(Layout, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for h in &self.0.hierarchies {
            let top = h.mount.join(self.1.strip_prefix("/").unwrap_or(&self.1));
            if let Ok(cg) = Cgroup::at(
                &Layout {
                    hierarchies: vec![h.clone()],
                },
                &self.1,
            ) {
                let _ = cg.remove(true);
            }
            let _ = std::fs::remove_dir(&top);
        }
    }
}
