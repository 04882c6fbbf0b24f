//! berth's CNI plugins against the kernel, and the same tests against the reference
//! plugins (Debian's containernetworking-plugins) where they do the same job.
//!
//! Every plugin runs as a runtime runs it: a child process with the CNI variables and the
//! configuration on stdin, inside the test's "host" netns, with CNI_NETNS naming a pod
//! netns the test made. Assertions read the kernel back (netlink, `nft -j list ruleset`)
//! and open real TCP connections.

mod cni_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use berth_integration_tests::{TestEnv, require_root};
use cni_common::*;
use serde_json::json;

macro_rules! both {
    ($body:ident, $berth:ident, $reference:ident) => {
        #[test]
        fn $berth() {
            require_root!();
            $body(Impl::Berth).expect(stringify!($berth));
        }
        #[test]
        fn $reference() {
            require_root!();
            $body(Impl::Reference).expect(stringify!($reference));
        }
    };
}

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

const GW: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
const HOST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);

both!(
    add_connects_pods_host_outside_and_host_ports,
    add_connects_berth,
    add_connects_reference
);

/// ADD gives the pod its address, routes and default gateway; pod-to-pod and pod-to-host
/// TCP work; traffic to the outside is masqueraded; a host port reaches the pod from the
/// host, from outside, from another pod and from the pod itself (hairpin).
fn add_connects_pods_host_outside_and_host_ports(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let out = outside(&env)?;
    let net = Network::new(&env, imp, "10.244.1.0/24");
    let (a, b) = (env.pod_netns("a")?, env.pod_netns("b")?);
    let (att_a, att_b) = (Att::new("pod-a", &a), Att::new("pod-b", &b));
    let ra = net.add(&env, &att_a, &[(8080, 80, "tcp")]);
    let rb = net.add(&env, &att_b, &[]);
    let (ip_a, ip_b) = (result_ip(&ra), result_ip(&rb));
    assert_ne!(ip_a, ip_b);

    assert!(
        addrs(&a, "eth0").contains(&format!("{ip_a}/24")),
        "{:?}",
        addrs(&a, "eth0")
    );
    assert_eq!(default_gw(&a), Some(IpAddr::V4(GW)));
    assert_eq!(default_gw(&b), Some(IpAddr::V4(GW)));
    assert!(addrs(&env.host, "cbr0").contains(&format!("{GW}/24")));
    assert_eq!(
        bridge_ports(&env.host, "cbr0").expect("link query").len(),
        2
    );
    assert_eq!(link_mtu(&a, "eth0"), Some(1400), "the configured MTU");
    for port in bridge_ports(&env.host, "cbr0").expect("link query") {
        assert_eq!(link_mtu(&env.host, &port), Some(1400), "host end {port}");
    }

    let any = Ipv4Addr::UNSPECIFIED;
    who_server(&a, sa(any, 80))?;
    who_server(&b, sa(any, 80))?;
    who_server(&env.host, sa(any, 9000))?;
    who_server(&out, sa(any, 9000))?;

    assert_eq!(whoami(&b, sa(ip_a, 80))?, ip_b.to_string(), "pod to pod");
    assert_eq!(whoami(&a, sa(GW, 9000))?, ip_a.to_string(), "pod to host");
    assert_eq!(
        whoami(&env.host, sa(ip_a, 80))?,
        GW.to_string(),
        "host to pod"
    );
    assert_eq!(
        whoami(&a, sa(OUTSIDE_IP, 9000))?,
        HOST_IP.to_string(),
        "masqueraded to outside"
    );

    // Host port 8080 -> pod a:80.
    assert_eq!(
        whoami(&out, sa(HOST_IP, 8080))?,
        OUTSIDE_IP.to_string(),
        "host port from outside"
    );
    whoami(&env.host, sa(HOST_IP, 8080)).map_err(|e| e.context("host port from the host"))?;
    whoami(&env.host, sa(Ipv4Addr::LOCALHOST, 8080))
        .map_err(|e| e.context("host port through 127.0.0.1 from the host"))?;
    let seen =
        whoami(&b, sa(HOST_IP, 8080)).map_err(|e| e.context("host port from another pod"))?;
    assert_ne!(seen, ip_b.to_string(), "hairpin traffic must be SNATed");
    whoami(&a, sa(HOST_IP, 8080)).map_err(|e| e.context("host port from the pod itself"))?;

    for o in net.del(&env, &att_a, &[(8080, 80, "tcp")], Some(&ra)) {
        assert!(o.ok, "DEL: {o:?}");
    }
    assert!(
        whoami(&out, sa(HOST_IP, 8080)).is_err(),
        "host port still open after DEL"
    );
    Ok(())
}

both!(
    del_removes_everything_twice,
    del_twice_berth,
    del_twice_reference
);

/// DEL removes links, addresses, allocations and rules, and a second DEL succeeds.
fn del_removes_everything_twice(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let net = Network::new(&env, imp, "10.244.2.0/24");
    let a = env.pod_netns("a")?;
    let att = Att::new("pod-del", &a);
    let ports = [(8081, 80, "tcp"), (5353, 53, "udp")];
    let r = net.add(&env, &att, &ports);
    let ip = result_ip(&r).to_string();
    assert!(
        ruleset(&env.host).contains(&format!("\"{ip}\"")),
        "no rule names the pod before DEL"
    );
    assert_eq!(net.allocations(), vec![ip.clone()]);

    for round in 0..2 {
        for o in net.del(&env, &att, &ports, Some(&r)) {
            assert!(o.ok, "DEL round {round}: {o:?}");
        }
        assert!(
            !has_link(&a, "eth0").expect("link query"),
            "eth0 left in the pod"
        );
        assert!(
            bridge_ports(&env.host, "cbr0")
                .expect("link query")
                .is_empty(),
            "veth left on the bridge"
        );
        assert!(
            net.allocations().is_empty(),
            "allocation left: {:?}",
            net.allocations()
        );
        let rules = ruleset(&env.host);
        assert!(
            !rules.contains(&format!("\"{ip}\"")),
            "a rule still names {ip}: {rules}"
        );
        assert!(
            !rules.contains("pod-del"),
            "a rule still names the container: {rules}"
        );
    }
    // DEL without prevResult and without the namespace (a runtime that lost both).
    let gone = Att { netns: None, ..att };
    for o in net.del(&env, &gone, &ports, None) {
        assert!(o.ok, "DEL without netns: {o:?}");
    }
    Ok(())
}

both!(check_reports_removed_address, check_berth, check_reference);

/// CHECK passes on a healthy attachment and reports an address removed behind its back.
fn check_reports_removed_address(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let net = Network::new(&env, imp, "10.244.3.0/24");
    let a = env.pod_netns("a")?;
    let att = Att::new("pod-check", &a);
    let r = net.add(&env, &att, &[]);
    let o = net.check(&env, &att, &r);
    assert!(o.ok, "CHECK of a healthy attachment: {o:?}");
    let addr = r["ips"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    berth_integration_tests::util::run(
        a.command("ip").args(["addr", "del", &addr, "dev", "eth0"]),
    )?;
    let o = net.check(&env, &att, &r);
    assert!(!o.ok, "CHECK passed with {addr} removed");
    let code = o.json()["code"].as_u64();
    assert!(
        code.is_some_and(|c| c > 0),
        "CHECK error is not the spec's JSON: {o:?}"
    );
    Ok(())
}

both!(
    concurrent_adds_get_distinct_ips,
    concurrent_berth,
    concurrent_reference
);

/// 100 ADDs at once get 100 distinct addresses and 100 veths on the bridge.
fn concurrent_adds_get_distinct_ips(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let net = Network::new(&env, imp, "10.244.4.0/24");
    let pods: Vec<_> = (0..100)
        .map(|i| env.pod_netns(&format!("p{i}")))
        .collect::<Result<_, _>>()?;
    let atts: Vec<Att> = pods
        .iter()
        .enumerate()
        .map(|(i, ns)| Att::new(&format!("pod-{i}"), ns))
        .collect();
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = atts
            .iter()
            .map(|att| s.spawn(|| exec(&env, imp, "bridge", "ADD", att, &net.bridge)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("ADD thread"))
            .collect()
    });
    let mut ips = std::collections::BTreeSet::new();
    for (i, o) in results.into_iter().enumerate() {
        let r = o.expect_ok(&format!("ADD pod-{i}"));
        ips.insert(result_ip(&r));
    }
    assert_eq!(ips.len(), 100, "addresses handed out twice");
    assert_eq!(net.allocations().len(), 100);
    assert_eq!(
        bridge_ports(&env.host, "cbr0").expect("link query").len(),
        100
    );
    std::thread::scope(|s| {
        for att in &atts {
            let net = &net;
            let env = &env;
            s.spawn(move || {
                let o = exec(env, imp, "bridge", "DEL", att, &net.bridge);
                assert!(o.ok, "DEL {}: {o:?}", att.id);
            });
        }
    });
    assert!(net.allocations().is_empty());
    assert!(
        bridge_ports(&env.host, "cbr0")
            .expect("link query")
            .is_empty()
    );
    Ok(())
}

both!(
    killed_add_is_cleaned_by_del,
    killed_add_berth,
    killed_add_reference
);

/// A plugin killed at any point of ADD leaves nothing that DEL (without prevResult, as
/// after a runtime crash) cannot clean.
fn killed_add_is_cleaned_by_del(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let net = Network::new(&env, imp, "10.244.5.0/24");
    let pods: Vec<_> = (0..10)
        .map(|i| env.pod_netns(&format!("k{i}")))
        .collect::<Result<_, _>>()?;
    for (i, ns) in pods.iter().enumerate() {
        let att = Att::new(&format!("killed-{i}"), ns);
        // Spread the kill over the whole ADD (a few ms to tens of ms).
        kill_add_after(
            &env,
            imp,
            &net,
            &att,
            Duration::from_micros(1500 * i as u64),
        )?;
        let o = exec(&env, imp, "bridge", "DEL", &att, &net.bridge);
        // Peer bug, reference bridge 1.1.1 only: killed after IPAM but before its
        // masquerade chain existed, its DEL fails (code 999) deleting a jump to the
        // missing chain, although it has already released the address and the veth.
        // The checks below still hold it to leaving nothing behind.
        let peer_bug = imp == Impl::Reference && !o.ok && o.stdout.contains("does not exist");
        if peer_bug {
            eprintln!(
                "reference bridge: DEL after kill {i} failed (known peer bug): {}",
                o.stdout
            );
        }
        assert!(o.ok || peer_bug, "DEL after a kill at step {i}: {o:?}");
        assert!(
            !has_link(ns, "eth0").expect("link query"),
            "eth0 left in the pod after kill {i} + DEL"
        );
    }
    assert!(
        bridge_ports(&env.host, "cbr0")
            .expect("link query")
            .is_empty(),
        "veth left: {:?}",
        bridge_ports(&env.host, "cbr0").expect("link query")
    );
    assert!(
        net.allocations().is_empty(),
        "allocations left: {:?}",
        net.allocations()
    );
    let rules = ruleset(&env.host);
    assert!(!rules.contains("killed-"), "rules left: {rules}");
    Ok(())
}

both!(
    malformed_input_gives_spec_errors,
    malformed_berth,
    malformed_reference
);

/// Malformed stdin is the spec's error 6, an unknown cniVersion error 1, both as the
/// spec's error JSON on stdout with a non-zero exit.
fn malformed_input_gives_spec_errors(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let a = env.pod_netns("a")?;
    let att = Att::new("pod-bad", &a);
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let o = exec_raw(
            &env,
            imp,
            plugin,
            "ADD",
            &att,
            b"{\"cniVersion\": \"1.0.0\", nope",
        );
        assert!(!o.ok, "{plugin}: malformed stdin accepted");
        assert_eq!(o.json()["code"], 6, "{plugin}: malformed stdin: {o:?}");
        assert!(
            o.json()["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{plugin}: {o:?}"
        );
        let conf = json!({"cniVersion": "99.0.0", "name": "n", "type": imp.plugin(plugin),
            "ipam": {"type": imp.plugin("host-local"), "subnet": "10.244.9.0/24",
                     "dataDir": env.subdir("ipam").expect("ipam")}});
        let o = exec(&env, imp, plugin, "ADD", &att, &conf);
        assert!(!o.ok, "{plugin}: cniVersion 99.0.0 accepted");
        assert_eq!(o.json()["code"], 1, "{plugin}: wrong version: {o:?}");
    }
    assert!(!has_link(&a, "eth0").expect("link query"));
    Ok(())
}

// GC and STATUS are CNI 1.1 verbs; Debian's reference plugins (1.1.1) speak up to
// 1.0.0 and have neither, so these run against berth's plugins only.

/// GC frees the allocations (and masquerade entries) of attachments not in the list.
#[test]
fn gc_frees_allocations_not_in_valid_list() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let net = Network::new(&env, Impl::Berth, "10.244.6.0/24").with_version("1.1.0");
    let pods: Vec<_> = (0..3)
        .map(|i| env.pod_netns(&format!("g{i}")).expect("ns"))
        .collect();
    let atts: Vec<Att> = pods
        .iter()
        .enumerate()
        .map(|(i, ns)| Att::new(&format!("gc-{i}"), ns))
        .collect();
    let ips: Vec<_> = atts
        .iter()
        .map(|a| result_ip(&net.add(&env, a, &[])))
        .collect();
    let mut conf = net.bridge.clone();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "gc-1", "ifname": "eth0"}]);
    let gc = Att {
        id: "unused".into(),
        netns: None,
        ifname: "eth0".into(),
    };
    exec(&env, Impl::Berth, "bridge", "GC", &gc, &conf).expect_ok("GC");
    assert_eq!(net.allocations(), vec![ips[1].to_string()]);
    assert_eq!(
        bridge_ports(&env.host, "cbr0").expect("link query").len(),
        1,
        "GC left veths of invalid attachments"
    );
    assert!(
        has_link(&pods[1], "eth0").expect("link query")
            && !has_link(&pods[0], "eth0").expect("link query")
            && !has_link(&pods[2], "eth0").expect("link query")
    );
    let rules = ruleset(&env.host);
    assert!(
        rules.contains(":gc-1:") && !rules.contains(":gc-0:") && !rules.contains(":gc-2:"),
        "{rules}"
    );
}

/// STATUS reports a full range with the spec's code 50, and ADD then fails cleanly.
#[test]
fn status_reports_full_range() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let dir = env.subdir("ipam").expect("dir");
    let conf = json!({"cniVersion": "1.1.0", "name": "tiny", "type": "berth-host-local",
        "dataDir": dir, "ranges": [[{"subnet": "10.244.7.0/29", "rangeStart": "10.244.7.2", "rangeEnd": "10.244.7.3"}]]});
    let ipam =
        json!({"cniVersion": "1.1.0", "name": "tiny", "type": "berth-host-local", "ipam": conf});
    let a = env.pod_netns("a").expect("ns");
    let st = Att {
        id: "status".into(),
        netns: None,
        ifname: "eth0".into(),
    };
    exec(&env, Impl::Berth, "host-local", "STATUS", &st, &ipam)
        .expect_ok("STATUS on an empty range");
    for i in 0..2 {
        exec(
            &env,
            Impl::Berth,
            "host-local",
            "ADD",
            &Att::new(&format!("full-{i}"), &a),
            &ipam,
        )
        .expect_ok("ADD");
    }
    let o = exec(&env, Impl::Berth, "host-local", "STATUS", &st, &ipam);
    assert!(!o.ok, "STATUS on a full range passed");
    assert_eq!(o.json()["code"], 50, "{o:?}");
    let o = exec(
        &env,
        Impl::Berth,
        "host-local",
        "ADD",
        &Att::new("full-2", &a),
        &ipam,
    );
    assert!(
        !o.ok && o.json()["code"].as_u64().is_some(),
        "ADD into a full range: {o:?}"
    );
    exec(
        &env,
        Impl::Berth,
        "host-local",
        "DEL",
        &Att::new("full-0", &a),
        &ipam,
    )
    .expect_ok("DEL");
    exec(&env, Impl::Berth, "host-local", "STATUS", &st, &ipam).expect_ok("STATUS after a release");
}

/// VERSION answers with the versions berth's plugins speak.
#[test]
fn version_lists_supported_versions() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let att = Att {
        id: "v".into(),
        netns: None,
        ifname: "eth0".into(),
    };
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let v = exec(
            &env,
            Impl::Berth,
            plugin,
            "VERSION",
            &att,
            &json!({"cniVersion": "1.1.0"}),
        )
        .expect_ok("VERSION");
        let list = v["supportedVersions"]
            .as_array()
            .expect("supportedVersions");
        assert!(
            list.contains(&json!("1.1.0")) && list.contains(&json!("1.0.0")),
            "{v}"
        );
    }
}

both!(
    dual_stack_pods_talk_over_ipv4_and_ipv6,
    dual_stack_berth,
    dual_stack_reference
);

/// A dual-stack network: the pod gets an IPv4 and an IPv6 address and a default route for
/// each; pods talk over both; the node reaches the pod over IPv6 through the bridge.
fn dual_stack_pods_talk_over_ipv4_and_ipv6(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let out = outside(&env)?;
    let ip = |ns: &berth_integration_tests::NetNs, args: &[&str]| {
        berth_integration_tests::util::run(ns.command("ip").args(args)).map(|_| ())
    };
    ip(
        &env.host,
        &["-6", "addr", "add", "2001:db8::1/64", "dev", "up0", "nodad"],
    )?;
    ip(
        &out,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8::2/64",
            "dev",
            "eth0",
            "nodad",
        ],
    )?;
    let mut net = Network::new(&env, imp, "10.244.8.0/24");
    net.bridge["ipam"]["ranges"] =
        json!([[{"subnet": "10.244.8.0/24"}], [{"subnet": "fd00:10:244:8::/64"}]]);
    let (a, b) = (env.pod_netns("a")?, env.pod_netns("b")?);
    let (att_a, att_b) = (Att::new("pod-a6", &a), Att::new("pod-b6", &b));
    let ra = net.add(&env, &att_a, &[(8085, 80, "tcp")]);
    let rb = net.add(&env, &att_b, &[]);
    let v6 = |r: &serde_json::Value| -> IpAddr {
        r["ips"]
            .as_array()
            .and_then(|ips| {
                ips.iter()
                    .find_map(|i| i["address"].as_str().filter(|a| a.contains(':')))
            })
            .and_then(|a| a.split('/').next())
            .and_then(|a| a.parse().ok())
            .expect("an IPv6 address in the result")
    };
    let (a6, b6) = (v6(&ra), v6(&rb));
    assert!(
        addrs(&a, "eth0").contains(&format!("{a6}/64")),
        "{:?}",
        addrs(&a, "eth0")
    );
    let routes = berth_integration_tests::util::run(
        a.command("ip")
            .args(["-6", "-j", "route", "show", "default"]),
    )?;
    let routes: serde_json::Value = serde_json::from_slice(&routes.stdout)?;
    assert_eq!(routes[0]["gateway"], "fd00:10:244:8::1", "{routes}");

    who_server(&a, sa(std::net::Ipv6Addr::UNSPECIFIED, 80))?;
    assert_eq!(
        whoami_retry(&b, sa(a6, 80), 5)?,
        b6.to_string(),
        "pod to pod over IPv6"
    );
    assert_eq!(
        whoami_retry(&b, sa(result_ip(&ra), 80), 5)?.trim_start_matches("::ffff:"),
        result_ip(&rb).to_string(),
        "pod to pod over IPv4"
    );
    whoami_retry(&env.host, sa(a6, 80), 5).map_err(|e| e.context("node to pod over IPv6"))?;
    let outside6: IpAddr = "2001:db8::2".parse()?;
    who_server(&out, sa(outside6, 9000))?;
    assert_eq!(
        whoami_retry(&a, sa(outside6, 9000), 5)?,
        "2001:db8::1",
        "IPv6 traffic leaving the pod network is masqueraded"
    );
    let host6: IpAddr = "2001:db8::1".parse()?;
    assert_eq!(
        whoami_retry(&out, sa(host6, 8085), 5)?,
        "2001:db8::2",
        "IPv6 host port from outside"
    );
    for o in net.del(&env, &att_a, &[(8085, 80, "tcp")], Some(&ra)) {
        assert!(o.ok, "DEL: {o:?}");
    }
    assert!(
        !ruleset(&env.host).contains(&format!("\"{a6}\"")),
        "a rule still names {a6}"
    );
    Ok(())
}

both!(
    host_ip_and_udp_mappings,
    host_ip_udp_berth,
    host_ip_udp_reference
);

/// A host port bound to one host IP answers there and not on the node's other addresses;
/// a UDP host port reaches the pod.
fn host_ip_and_udp_mappings(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let out = outside(&env)?;
    let net = Network::new(&env, imp, "10.244.13.0/24");
    let a = env.pod_netns("a")?;
    let att = Att::new("pod-hip", &a);
    let r = exec(&env, imp, "bridge", "ADD", &att, &net.bridge).expect_ok("bridge ADD");
    let mut pm = net.portmap.clone();
    pm["prevResult"] = r.clone();
    pm["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": HOST_IP.to_string()},
        {"hostPort": 5300, "containerPort": 53, "protocol": "udp"}]});
    exec(&env, imp, "portmap", "ADD", &att, &pm).expect_ok("portmap ADD");
    let any = Ipv4Addr::UNSPECIFIED;
    who_server(&a, sa(any, 80))?;
    udp_who_server(&a, sa(any, 53))?;
    assert_eq!(
        whoami(&out, sa(HOST_IP, 8082))?,
        OUTSIDE_IP.to_string(),
        "host IP mapping"
    );
    assert!(
        whoami(&a, sa(GW, 8082)).is_err(),
        "the mapping answered on another host address"
    );
    assert_eq!(
        udp_whoami(&out, sa(HOST_IP, 5300))?,
        OUTSIDE_IP.to_string(),
        "UDP host port"
    );
    let o = exec(&env, imp, "portmap", "DEL", &att, &pm);
    assert!(o.ok, "portmap DEL: {o:?}");
    assert!(
        whoami(&out, sa(HOST_IP, 8082)).is_err(),
        "host port still open after DEL"
    );
    Ok(())
}

both!(loopback_comes_up, loopback_berth, loopback_reference);

/// The loopback plugin brings `lo` up with 127.0.0.1 in the pod, and DEL is idempotent.
fn loopback_comes_up(imp: Impl) -> anyhow::Result<()> {
    let env = TestEnv::new()?;
    let a = env.pod_netns("a")?;
    berth_integration_tests::util::run(a.command("ip").args(["link", "set", "lo", "down"]))?;
    assert!(!link_up(&a, "lo"));
    let att = Att {
        ifname: "lo".into(),
        ..Att::new("pod-lo", &a)
    };
    let conf = json!({"cniVersion": "1.0.0", "name": "lo", "type": imp.plugin("loopback")});
    let r = exec(&env, imp, "loopback", "ADD", &att, &conf).expect_ok("loopback ADD");
    assert_eq!(r["interfaces"][0]["name"], "lo", "{r}");
    assert!(
        addrs(&a, "lo").contains(&"127.0.0.1/8".to_string()),
        "{:?}",
        addrs(&a, "lo")
    );
    who_server(&a, sa(Ipv4Addr::LOCALHOST, 7000))?;
    assert_eq!(whoami(&a, sa(Ipv4Addr::LOCALHOST, 7000))?, "127.0.0.1");
    for _ in 0..2 {
        let o = exec(&env, imp, "loopback", "DEL", &att, &conf);
        assert!(o.ok, "loopback DEL: {o:?}");
    }
    Ok(())
}

/// Starts a bridge ADD for `att` and SIGKILLs the plugin after `delay`.
fn kill_add_after(
    env: &TestEnv,
    imp: Impl,
    net: &Network,
    att: &Att,
    delay: Duration,
) -> anyhow::Result<()> {
    let bin = imp.bin_dir().join(imp.plugin("bridge"));
    let mut cmd = env.host.command(bin.to_str().expect("path"));
    cmd.env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", &att.id)
        .env("CNI_IFNAME", &att.ifname)
        .env("CNI_NETNS", att.netns.as_ref().expect("netns"))
        .env("CNI_PATH", imp.bin_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn()?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(net.bridge.to_string().as_bytes())?;
    }
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}

/// Plugins killed at points spread over their ADD leave nothing that one GC (CNI 1.1, an
/// empty valid list) cannot clean: allocations, veths, masquerade entries.
#[test]
fn killed_adds_are_cleaned_by_gc() {
    require_root!();
    let env = TestEnv::new().expect("env");
    let net = Network::new(&env, Impl::Berth, "10.244.15.0/24").with_version("1.1.0");
    let pods: Vec<_> = (0..10)
        .map(|i| env.pod_netns(&format!("kg{i}")).expect("ns"))
        .collect();
    for (i, ns) in pods.iter().enumerate() {
        let att = Att::new(&format!("killed-gc-{i}"), ns);
        kill_add_after(
            &env,
            Impl::Berth,
            &net,
            &att,
            Duration::from_micros(2000 * i as u64),
        )
        .expect("kill");
    }
    eprintln!(
        "before GC: {} allocations, {} veths on the bridge",
        net.allocations().len(),
        bridge_ports(&env.host, "cbr0").expect("link query").len()
    );
    let mut conf = net.bridge.clone();
    conf["cni.dev/valid-attachments"] = json!([]);
    let gc = Att {
        id: "gc".into(),
        netns: None,
        ifname: "eth0".into(),
    };
    exec(&env, Impl::Berth, "bridge", "GC", &gc, &conf).expect_ok("GC");
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
    assert!(
        bridge_ports(&env.host, "cbr0")
            .expect("link query")
            .is_empty(),
        "{:?}",
        bridge_ports(&env.host, "cbr0").expect("link query")
    );
    assert!(
        pods.iter()
            .all(|ns| !has_link(ns, "eth0").expect("link query"))
    );
    let rules = ruleset(&env.host);
    assert!(!rules.contains("killed-gc-"), "{rules}");
}
