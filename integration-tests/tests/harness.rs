//! The harness, exercised end to end as root: namespaces, links read back through
//! netlink, TCP between "pods", private mounts, cgroup parents, the leak check, the image
//! fixtures and the registry fixture.

#![allow(clippy::unwrap_used)] // a failed step of a test is a test failure

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use berth_integration_tests::fixtures::{self, Image};
use berth_integration_tests::registry::{self, Mode, Registry};
use berth_integration_tests::util::{ID_ENV, run};
use berth_integration_tests::{NetNs, TestEnv, leak, require_root};
use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth};

async fn link_by_name(h: &rtnetlink::Handle, name: &str) -> LinkMessage {
    h.link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .unwrap_or_else(|e| panic!("get link {name}: {e}"))
        .unwrap_or_else(|| panic!("no link {name}"))
}

fn attr_master(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// Plugs `pod` into bridge `br0` of `host` with a veth pair and gives it `ip`/24.
fn plug(host: &NetNs, pod: &NetNs, host_end: &str, ip: Ipv4Addr) {
    let pod_fd = pod.fd();
    host.netlink(|h| async move {
        h.link()
            .add(LinkVeth::new(host_end, "eth0-tmp").build())
            .execute()
            .await
            .unwrap();
        let br = link_by_name(&h, "br0").await.header.index;
        let end = link_by_name(&h, host_end).await.header.index;
        h.link()
            .set(LinkUnspec::new_with_index(end).controller(br).up().build())
            .execute()
            .await
            .unwrap();
        let peer = link_by_name(&h, "eth0-tmp").await.header.index;
        h.link()
            .set(LinkUnspec::new_with_index(peer).setns_by_fd(pod_fd).build())
            .execute()
            .await
            .unwrap();
    });
    pod.netlink(|h| async move {
        let idx = link_by_name(&h, "eth0-tmp").await.header.index;
        h.link()
            .set(
                LinkUnspec::new_with_index(idx)
                    .name("eth0".to_string())
                    .up()
                    .build(),
            )
            .execute()
            .await
            .unwrap();
        h.address().add(idx, ip.into(), 24).execute().await.unwrap();
    });
}

#[test]
fn bridge_connects_two_pod_namespaces_over_tcp() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let (a, b) = (env.pod_netns("a").unwrap(), env.pod_netns("b").unwrap());
    env.host.netlink(|h| async move {
        h.link()
            .add(LinkBridge::new("br0").up().build())
            .execute()
            .await
            .unwrap();
    });
    let (ip_a, ip_b) = (Ipv4Addr::new(10, 250, 0, 2), Ipv4Addr::new(10, 250, 0, 3));
    plug(&env.host, &a, "veth-a", ip_a);
    plug(&env.host, &b, "veth-b", ip_b);

    // Read back through netlink: both host ends are enslaved to br0, the pods have eth0.
    env.host.netlink(|h| async move {
        let br = link_by_name(&h, "br0").await.header.index;
        for end in ["veth-a", "veth-b"] {
            assert_eq!(
                attr_master(&link_by_name(&h, end).await),
                Some(br),
                "{end} on br0"
            );
        }
    });
    for (pod, ip) in [(&a, ip_a), (&b, ip_b)] {
        let addrs: Vec<_> = pod.netlink(|h| async move {
            let idx = link_by_name(&h, "eth0").await.header.index;
            h.address()
                .get()
                .set_link_index_filter(idx)
                .execute()
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        });
        let has_ip = addrs.iter().any(|m| {
            m.attributes.iter().any(|a| {
                matches!(a, rtnetlink::packet_route::address::AddressAttribute::Address(x) if *x == std::net::IpAddr::V4(ip))
            })
        });
        assert!(has_ip, "{} has {ip}: {addrs:?}", pod.name());
    }

    // A TCP round trip from pod b to pod a.
    let listener = a.run(|| TcpListener::bind((ip_a, 7000)).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        peer
    });
    let echoed = b.run(|| {
        let mut s =
            TcpStream::connect_timeout(&(ip_a, 7000).into(), Duration::from_secs(5)).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        buf
    });
    assert_eq!(&echoed, b"hello");
    assert_eq!(server.join().unwrap().ip(), std::net::IpAddr::V4(ip_b));

    // The machine's own namespace never saw any of it.
    let host_links = std::fs::read_dir("/sys/class/net").unwrap();
    for l in host_links {
        let name = l.unwrap().file_name();
        assert!(!["br0", "veth-a", "veth-b"].contains(&name.to_str().unwrap()));
    }
}

#[test]
fn mounts_made_by_a_test_stay_private() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let point = env.subdir("tmpfs").unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "berth-test-tmpfs"])
        .arg(&point))
    .unwrap();
    let mine = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let machine = std::fs::read_to_string("/proc/1/mountinfo").unwrap();
    let p = point.to_str().unwrap();
    assert!(mine.contains(p), "the test sees its own mount");
    assert!(
        !machine.contains(p),
        "the machine must not see the test's mount"
    );
}

#[test]
fn cgroup_parent_exists_in_every_hierarchy_and_is_removed_with_its_processes() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let dirs: Vec<_> = env.cgroups().dirs().map(|(_, d)| d.clone()).collect();
    assert!(!dirs.is_empty());
    for d in &dirs {
        assert!(
            d.is_dir()
                && d.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("berth-test-")
        );
    }
    let pids = env.cgroups().dir("pids").expect("a pids hierarchy");
    let mut child = env.command("sleep").arg("600").spawn().unwrap();
    std::fs::write(pids.join("cgroup.procs"), child.id().to_string()).unwrap();
    let id = env.id().to_string();
    drop(env);
    // Dropping the environment killed the process and removed every directory.
    let status = child.wait().unwrap();
    assert!(!status.success(), "sleep was killed");
    for d in &dirs {
        assert!(!d.exists(), "{} removed", d.display());
    }
    assert!(leak::find(&id).is_empty(), "{:?}", leak::find(&id));
}

#[test]
fn leak_check_catches_a_leaked_netns_cgroup_and_process() {
    require_root!();
    // Deliberately leak, in the machine's own namespaces, things named after a fresh id;
    // no TestEnv here, so that nothing is private to this test.
    let id = berth_integration_tests::util::unique_id();
    assert!(leak::find(&id).is_empty());
    // A named netns as `ip netns add` makes one: a bind mount on a file in /run/netns.
    let ns = NetNs::new(&id).unwrap();
    let ns_file = std::path::Path::new("/run/netns").join(&id);
    std::fs::create_dir_all("/run/netns").unwrap();
    std::fs::File::create(&ns_file).unwrap();
    nix::mount::mount(
        Some(&ns.path()),
        &ns_file,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let cg = std::path::Path::new("/sys/fs/cgroup/pids").join(&id);
    let cg = if cg.parent().unwrap().is_dir() {
        cg
    } else {
        berth_integration_tests::cgroup::hierarchies()[0]
            .mount
            .join(&id)
    };
    std::fs::create_dir(&cg).unwrap();
    let mut proc_ = Command::new("sleep")
        .arg("600")
        .env(ID_ENV, &id)
        .spawn()
        .unwrap();

    let found = leak::find(&id);
    let mut cleanup = || {
        let _ = proc_.kill();
        let _ = proc_.wait();
        let _ = nix::mount::umount2(&ns_file, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&ns_file);
        let _ = std::fs::remove_dir(&cg);
    };
    let report = format!("{found:#?}");
    let caught = |what: &str| found.iter().any(|l| l.starts_with(what));
    let all = caught("named netns") && caught("cgroup") && caught("process") && caught("mount");
    cleanup();
    assert!(all, "leak check missed something: {report}");
    assert!(
        leak::find(&id).is_empty(),
        "cleaned up: {:?}",
        leak::find(&id)
    );
}

#[test]
fn fixture_images_are_valid_oci_layouts_with_the_spec_layer_semantics() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let images = [
        Image::Busybox,
        Image::Httpd { port: 8080 },
        Image::Exit {
            code: 7,
            after_ms: 10,
        },
        Image::IgnoreSigterm,
        Image::Chatty { per_sec: 100 },
        Image::MultiLayer,
    ];
    for image in &images {
        let dir = env.subdir(&format!("layouts/{}", image.name())).unwrap();
        let layout = fixtures::build(image, &dir).unwrap();
        // A second build gives the same digests: fixtures are deterministic.
        let again = fixtures::build(
            image,
            &env.subdir(&format!("again/{}", image.name())).unwrap(),
        )
        .unwrap();
        assert_eq!(
            layout.manifest_digest,
            again.manifest_digest,
            "{}",
            image.name()
        );
        // skopeo, a real OCI client, reads the layout.
        let out =
            run(Command::new("skopeo").args(["inspect", "--raw", &layout.oci_ref()])).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            manifest["config"]["digest"].as_str(),
            Some(layout.config_digest.as_str()),
            "{}",
            image.name()
        );
    }

    // umoci, a real unpacker, applies the multi-layer fixture's whiteout and opaque dir as
    // the OCI image spec says.
    let layout = fixtures::build(&Image::MultiLayer, &env.subdir("ml").unwrap()).unwrap();
    let bundle = env.dir().join("ml-bundle");
    run(Command::new("umoci")
        .args([
            "unpack",
            "--image",
            &format!("{}:latest", layout.dir.display()),
        ])
        .arg(&bundle))
    .unwrap();
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("data/keep")).unwrap(),
        "v2\n"
    );
    assert!(rootfs.join("data/dir/a").exists());
    assert!(
        !rootfs.join("data/gone").exists(),
        "whiteout removes data/gone"
    );
    let opq: Vec<_> = std::fs::read_dir(rootfs.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        opq,
        vec!["new".to_string()],
        "the opaque dir hides the lower layer"
    );
    assert!(rootfs.join("bin/sh").exists());
}

#[test]
fn busybox_rootfs_runs() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let rootfs = env.subdir("rootfs").unwrap();
    fixtures::busybox_rootfs(&rootfs).unwrap();
    let out = run(env.command("chroot").arg(&rootfs).args([
        "/bin/sh",
        "-c",
        "echo ok from $(basename $0)",
    ]))
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok from sh");
}

fn skopeo_inspect(reg: &Registry, reference: &str, creds: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]);
    match reg.mode {
        Mode::Http => {
            cmd.arg("--tls-verify=false");
        }
        _ => {
            cmd.arg("--cert-dir").arg(&reg.certs);
        }
    }
    if let Some(c) = creds {
        cmd.arg("--creds").arg(c);
    }
    cmd.arg(format!("docker://{reference}"));
    cmd.output().unwrap()
}

#[test]
fn registry_fixture_serves_pushed_images_over_http_tls_and_basic_auth() {
    require_root!();
    let env = TestEnv::new().unwrap();
    let layout = fixtures::build(&Image::Busybox, &env.subdir("busybox").unwrap()).unwrap();
    for mode in [Mode::Http, Mode::Tls, Mode::TlsBasicAuth] {
        let reg = Registry::start(env.id(), mode).unwrap();
        let reference = reg.push(&layout, "fixtures/busybox", "v1").unwrap();
        let creds = format!("{}:{}", registry::USER, registry::PASSWORD);
        let creds = (mode == Mode::TlsBasicAuth).then_some(creds.as_str());
        let out = skopeo_inspect(&reg, &reference, creds);
        assert!(
            out.status.success(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            manifest["config"]["digest"].as_str(),
            Some(layout.config_digest.as_str())
        );
        if mode == Mode::TlsBasicAuth {
            let denied = skopeo_inspect(&reg, &reference, Some("berth:wrong-password"));
            assert!(!denied.status.success(), "a wrong password is refused");
            let anonymous = skopeo_inspect(&reg, &reference, None);
            assert!(!anonymous.status.success(), "anonymous pulls are refused");
        }
    }
    let id = env.id().to_string();
    drop(env);
    assert!(leak::find(&id).is_empty(), "{:?}", leak::find(&id));
}
