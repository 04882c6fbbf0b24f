//! A real consumer of berth's plugins: Debian's containerd (1.6), through its CRI plugin (the
//! path kubelet takes, driven by the harness's Rust CRI client) and through `ctr run --cni`,
//! which sets containers up through go-cni and libcni (the libraries containerd's CRI
//! plugin uses), configured with berth's conflist and plugins.
//!
//! Everything containerd touches is the test's own: it runs in the test's "host" netns;
//! its root, state, socket and opt dirs are under the test's temp dir; and in the test's
//! private mount namespace /run and /opt are fresh tmpfs and /etc and /var/lib are overlays
//! whose writes land in the temp dir, so go-cni's fixed paths (/etc/cni/net.d,
//! /opt/cni/bin, /var/lib/cni) and the shim's /run/containerd never reach the machine.
//! Containers run in the test's cgroup parent.

mod cni_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use berth_integration_tests::containerd::{Containerd, CriNetwork, CriPeer, PrivatePaths};
use berth_integration_tests::cri::{CriClient, PodSpec};
use berth_integration_tests::fixtures::Image;
use berth_integration_tests::util::run;
use berth_integration_tests::{TestEnv, require_root};
use cni_common::berth_bin_dir;
use serde_json::{Value, json};

/// The task's pid, from `ctr task ls`.
fn task_pid(cd: &Containerd<'_>, id: &str) -> anyhow::Result<u32> {
    cd.task_list()?
        .into_iter()
        .find_map(|(task, pid, _)| (task == id).then_some(pid))
        .with_context(|| format!("task {id} not listed"))
}

/// `ip -j` (netlink) in the task's network namespace.
fn ip_json(pid: u32, args: &[&str]) -> anyhow::Result<Value> {
    let out = run(Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-j"])
        .args(args))?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// containerd runs two containers on berth's network: each gets an address from
/// berth-host-local and a default route via the bridge, and one reaches the other's HTTP
/// server over TCP.
#[test]
fn containerd_runs_containers_on_berths_network() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let dir = env.subdir("containerd").expect("dir");
    let bins = berth_bin_dir();
    let _paths = PrivatePaths::new(&dir, &["/run", "/opt"], &["/etc", "/var/lib"])
        .expect("private /run, /opt, /etc, /var/lib");
    std::fs::create_dir_all("/etc/cni/net.d").expect("conf dir");
    std::fs::create_dir_all("/opt/cni/bin").expect("bin dir");
    for p in [
        "berth-bridge",
        "berth-host-local",
        "berth-portmap",
        "berth-loopback",
    ] {
        std::fs::copy(bins.join(p), Path::new("/opt/cni/bin").join(p)).expect("install plugin");
    }
    let ipam_dir = env.subdir("ipam").expect("ipam");
    let list = json!({
        "cniVersion": "1.0.0", "name": "berth",
        "plugins": [
            {"type": "berth-bridge", "bridge": "berth0", "isGateway": true, "isDefaultGateway": true,
             "ipMasq": true, "hairpinMode": true,
             "ipam": {"type": "berth-host-local", "dataDir": ipam_dir,
                      "ranges": [[{"subnet": "10.244.20.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "berth-portmap", "capabilities": {"portMappings": true}}
        ]
    });
    std::fs::write("/etc/cni/net.d/10-berth.conflist", list.to_string()).expect("conflist");

    let mut cd = Containerd::start(&env, &dir, None).expect("containerd");
    let httpd = cd
        .import(&Image::Httpd { port: 8080 }, &dir)
        .expect("import httpd");
    let busybox = cd.import(&Image::Busybox, &dir).expect("import busybox");
    let cgroup = |id: &str| format!("/{}/{id}", env.cgroups().name());
    for (id, image, cmd) in [
        ("web", &httpd, vec![]),
        ("client", &busybox, vec!["sleep", "600"]),
    ] {
        cd.tasks.push(id.to_string());
        run(cd
            .ctr()
            .args([
                "run",
                "-d",
                "--null-io",
                "--cni",
                "--cgroup",
                &cgroup(id),
                image,
                id,
            ])
            .args(cmd))
        .unwrap_or_else(|e| {
            panic!(
                "ctr run {id}: {e:#}\ncontainerd log: {}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            )
        });
    }
    let web = task_pid(&cd, "web").expect("web pid");
    let addrs = ip_json(web, &["-4", "addr", "show", "dev", "eth0"]).expect("addr");
    let ip = addrs[0]["addr_info"][0]["local"]
        .as_str()
        .expect("web has an IPv4")
        .to_string();
    assert!(ip.starts_with("10.244.20."), "web got {ip}");
    let routes = ip_json(web, &["-4", "route", "show", "default"]).expect("routes");
    assert_eq!(routes[0]["gateway"], "10.244.20.1", "{routes}");
    let client = task_pid(&cd, "client").expect("client pid");
    let cip = ip_json(client, &["-4", "addr", "show", "dev", "eth0"]).expect("addr")[0]["addr_info"][0]["local"]
        .as_str()
        .map(String::from);
    assert!(
        cip.as_deref()
            .is_some_and(|c| c != ip && c.starts_with("10.244.20.")),
        "{cip:?}"
    );
    // `ctr run -d` returns once the task started, not once httpd listens: under load the
    // first fetch can come too early, so the client tries again for a while.
    let mut body = String::new();
    for attempt in 0..40 {
        let out = cd
            .ctr()
            .args([
                "task",
                "exec",
                "--exec-id",
                &format!("fetch{attempt}"),
                "client",
                "sh",
                "-c",
            ])
            .arg(format!(
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080"
            ))
            .output()
            .expect("ctr task exec");
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        if body.starts_with("HTTP/1.") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        body.starts_with("HTTP/1.") && body.trim_end().ends_with("berth-fixture"),
        "{body}"
    );
}

/// containerd's CRI plugin (the path kubelet takes) runs two pod sandboxes on berth's
/// conflist and plugins: each gets an address, one reaches the other over TCP, a host
/// port passed as a CRI port mapping reaches the pod, and stopping the sandboxes (CNI DEL
/// through containerd) releases the addresses.
#[test]
fn containerd_cri_sandboxes_on_berths_network() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let dir = env.subdir("containerd").expect("dir");
    let ipam_dir = env.subdir("ipam").expect("ipam");
    let network = CriNetwork::berth(
        &berth_bin_dir(),
        &dir.join("cni-bin"),
        "10.244.21.0/24",
        &ipam_dir,
    )
    .expect("berth's plugins");
    let peer = CriPeer::start(&env, &dir, &network).expect("containerd with CRI");
    let logs = env.subdir("pod-logs").expect("logs");
    let cgroup = format!("/{}", env.cgroups().name());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut cri = rt
        .block_on(CriClient::connect(&peer.endpoint))
        .expect("connect to containerd's CRI");
    let mut pods = Vec::new();
    for (name, ports) in [("pod-a", vec![(8090, 80)]), ("pod-b", vec![])] {
        let mut pod = PodSpec::new(name, &logs.join(name), "");
        pod.cgroup_parent = format!("{cgroup}/pod{}", pod.uid);
        pod.port_mappings = ports
            .into_iter()
            .map(|(h, c)| (h, c, berth_integration_tests::cri::api::Protocol::Tcp))
            .collect();
        let (id, ip, pid) = rt
            .block_on(async {
                let id = cri.run_pod_sandbox(&pod.config()).await?;
                let st = cri.pod_sandbox_status(&id, true).await?;
                let ip = st.status.and_then(|s| s.network).map(|n| n.ip);
                // containerd's verbose status: info["info"] is JSON with the pause pid.
                let info: Value = serde_json::from_str(st.info.get("info").map_or("{}", |s| s))?;
                anyhow::Ok((id, ip, info["pid"].as_u64()))
            })
            .unwrap_or_else(|e| {
                panic!(
                    "RunPodSandbox {name}: {e:#}\ncontainerd log: {}",
                    peer.containerd().log()
                )
            });
        let ip: std::net::IpAddr = ip
            .as_deref()
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| panic!("{name} has no IP: {ip:?}"));
        assert!(ip.to_string().starts_with("10.244.21."), "{name} got {ip}");
        let pid = pid.unwrap_or_else(|| panic!("{name}: no pid in verbose status"));
        pods.push((id, ip, PathBuf::from(format!("/proc/{pid}/ns/net"))));
    }
    let (a_ip, a_ns) = (pods[0].1, &pods[0].2);
    let (b_ip, b_ns) = (pods[1].1, &pods[1].2);
    let listener = cni_common::in_netns_path(a_ns, || std::net::TcpListener::bind("0.0.0.0:80"))
        .expect("enter pod-a")
        .expect("listen in pod-a");
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut s = s;
            let peer = s
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = std::io::Write::write_all(&mut s, peer.as_bytes());
        }
    });
    let fetch = |ns: &Path, to: std::net::SocketAddr| -> anyhow::Result<String> {
        cni_common::in_netns_path(ns, || -> anyhow::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut out = String::new();
            std::io::Read::read_to_string(&mut s, &mut out)?;
            Ok(out)
        })?
    };
    assert_eq!(
        fetch(b_ns, (a_ip, 80).into()).expect("pod-b to pod-a"),
        b_ip.to_string()
    );
    // The CRI port mapping 8090 -> 80, from the node to the bridge's address.
    let gw: std::net::IpAddr = "10.244.21.1".parse().expect("gw");
    cni_common::whoami(&env.host, (gw, 8090).into()).expect("host port from the node");
    let allocations = || {
        std::fs::read_dir(ipam_dir.join("berth"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(allocations(), 2);
    for (id, _, _) in &pods {
        rt.block_on(async {
            cri.stop_pod_sandbox(id).await?;
            cri.remove_pod_sandbox(id).await
        })
        .expect("StopPodSandbox + RemovePodSandbox");
    }
    assert_eq!(
        allocations(),
        0,
        "CNI DEL through containerd left allocations"
    );
    let rules = cni_common::ruleset(&env.host);
    assert!(
        !rules.contains(&format!("\"{a_ip}\"")),
        "rules left for {a_ip}: {rules}"
    );
}
