//! What the CNI tests share: running a plugin (berth's or the reference one) the way a
//! runtime does, from inside the test's "host" netns, and reading the kernel's state back.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_integration_tests::{NetNs, TestEnv};
use futures::TryStreamExt;
use serde_json::{Value, json};

/// Where Debian's containernetworking-plugins install the reference plugins.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Which plugin set a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Berth,
    Reference,
}

impl Impl {
    pub fn plugin(self, name: &str) -> String {
        match self {
            Impl::Berth => format!("berth-{name}"),
            Impl::Reference => name.to_string(),
        }
    }

    pub fn bin_dir(self) -> PathBuf {
        match self {
            Impl::Berth => berth_bin_dir(),
            Impl::Reference => PathBuf::from(REFERENCE_DIR),
        }
    }
}

/// The directory holding berth's plugin binaries (and `berth`), built on first use into
/// the same target dir and profile as this test.
pub fn berth_bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        // <target>/<profile>/deps/<test>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // The whole workspace's binaries, as scripts/test.sh builds them: the same feature
        // set, so this is a no-op there and never rebuilds the plugins differently.
        cmd.args(["build", "-q", "--workspace", "--bins", "--target-dir"])
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build for the plugins");
        assert!(st.success(), "building the workspace's binaries failed");
        profile_dir.to_path_buf()
    })
    .clone()
}

/// The `berth` binary (built with the plugins by [`berth_bin_dir`]).
pub fn berth_bin() -> PathBuf {
    berth_bin_dir().join("berth")
}

/// What one plugin invocation returned.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or(Value::Null)
    }

    pub fn expect_ok(self, what: &str) -> Value {
        assert!(self.ok, "{what} failed: {} {}", self.stdout, self.stderr);
        self.json()
    }
}

/// One CNI attachment's variables.
#[derive(Debug, Clone)]
pub struct Att {
    pub id: String,
    pub netns: Option<PathBuf>,
    pub ifname: String,
}

impl Att {
    pub fn new(id: &str, ns: &NetNs) -> Self {
        Self {
            id: id.to_string(),
            netns: Some(ns.path()),
            ifname: "eth0".into(),
        }
    }
}

/// Runs `plugin` of `imp` with the CNI env and `stdin`, inside the test's host netns.
pub fn exec(
    env: &TestEnv,
    imp: Impl,
    plugin: &str,
    verb: &str,
    att: &Att,
    stdin: &Value,
) -> Outcome {
    let bin = imp.bin_dir().join(imp.plugin(plugin));
    let mut cmd = env.host.command(bin.to_str().expect("utf-8 path"));
    spawn(&mut cmd, imp, verb, att, stdin.to_string().as_bytes())
}

/// Like [`exec`] with raw stdin bytes.
pub fn exec_raw(
    env: &TestEnv,
    imp: Impl,
    plugin: &str,
    verb: &str,
    att: &Att,
    stdin: &[u8],
) -> Outcome {
    let bin = imp.bin_dir().join(imp.plugin(plugin));
    let mut cmd = env.host.command(bin.to_str().expect("utf-8 path"));
    spawn(&mut cmd, imp, verb, att, stdin)
}

fn spawn(cmd: &mut Command, imp: Impl, verb: &str, att: &Att, stdin: &[u8]) -> Outcome {
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", &att.id)
        .env("CNI_IFNAME", &att.ifname)
        .env("CNI_PATH", imp.bin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ns) = &att.netns {
        cmd.env("CNI_NETNS", ns);
    }
    let mut child = cmd.spawn().expect("spawn plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait plugin");
    Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A bridge network's plugin configs (bridge + IPAM, portmap) for `imp`.
#[derive(Debug, Clone)]
pub struct Network {
    pub imp: Impl,
    pub name: String,
    pub version: String,
    pub bridge: Value,
    pub portmap: Value,
    pub data_dir: PathBuf,
}

impl Network {
    /// `subnet` e.g. "10.244.1.0/24"; the allocations live under the test's temp dir.
    pub fn new(env: &TestEnv, imp: Impl, subnet: &str) -> Self {
        let data_dir = env.subdir("ipam").expect("ipam dir");
        let name = "podnet".to_string();
        let version = "1.0.0".to_string();
        let bridge = json!({
            "cniVersion": version, "name": name, "type": imp.plugin("bridge"),
            "bridge": "cbr0", "isGateway": true, "isDefaultGateway": true,
            "ipMasq": true, "hairpinMode": true, "mtu": 1400,
            "ipam": {"type": imp.plugin("host-local"), "dataDir": data_dir,
                     "ranges": [[{"subnet": subnet}]]}
        });
        let portmap = json!({
            "cniVersion": version, "name": name, "type": imp.plugin("portmap"),
            "capabilities": {"portMappings": true}, "snat": true
        });
        Self {
            imp,
            name,
            version,
            bridge,
            portmap,
            data_dir,
        }
    }

    pub fn with_version(mut self, v: &str) -> Self {
        self.version = v.to_string();
        self.bridge["cniVersion"] = json!(v);
        self.portmap["cniVersion"] = json!(v);
        self
    }

    fn with_prev(conf: &Value, prev: Option<&Value>) -> Value {
        let mut c = conf.clone();
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    fn portmap_conf(&self, ports: &[(u16, u16, &str)], prev: Option<&Value>) -> Value {
        let mut c = Self::with_prev(&self.portmap, prev);
        c["runtimeConfig"] = json!({"portMappings": ports.iter().map(|(h, p, proto)|
            json!({"hostPort": h, "containerPort": p, "protocol": proto})).collect::<Vec<_>>()});
        c
    }

    /// ADD through bridge, then portmap (with `ports`); returns the final result.
    pub fn add(&self, env: &TestEnv, att: &Att, ports: &[(u16, u16, &str)]) -> Value {
        let r = exec(env, self.imp, "bridge", "ADD", att, &self.bridge).expect_ok("bridge ADD");
        if ports.is_empty() {
            return r;
        }
        exec(
            env,
            self.imp,
            "portmap",
            "ADD",
            att,
            &self.portmap_conf(ports, Some(&r)),
        )
        .expect_ok("portmap ADD")
    }

    /// DEL through portmap, then bridge, as a runtime does (reverse order).
    pub fn del(
        &self,
        env: &TestEnv,
        att: &Att,
        ports: &[(u16, u16, &str)],
        prev: Option<&Value>,
    ) -> Vec<Outcome> {
        vec![
            exec(
                env,
                self.imp,
                "portmap",
                "DEL",
                att,
                &self.portmap_conf(ports, prev),
            ),
            exec(
                env,
                self.imp,
                "bridge",
                "DEL",
                att,
                &Self::with_prev(&self.bridge, prev),
            ),
        ]
    }

    pub fn check(&self, env: &TestEnv, att: &Att, prev: &Value) -> Outcome {
        exec(
            env,
            self.imp,
            "bridge",
            "CHECK",
            att,
            &Self::with_prev(&self.bridge, Some(prev)),
        )
    }

    /// The addresses host-local (either implementation) has on disk.
    pub fn allocations(&self) -> Vec<String> {
        let dir = self.data_dir.join(&self.name);
        std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The first address of the result (the pod's IPv4).
pub fn result_ip(r: &Value) -> IpAddr {
    let a = r["ips"][0]["address"].as_str().expect("ips[0].address");
    a.split('/').next().expect("addr").parse().expect("ip")
}

/// The addresses on `ifname` in `ns`, read back through netlink, as "a.b.c.d/len".
pub fn addrs(ns: &NetNs, ifname: &str) -> Vec<String> {
    let ifname = ifname.to_string();
    ns.netlink(move |h| async move {
        let Ok(Some(link)) = h.link().get().match_name(ifname).execute().try_next().await else {
            return Vec::new();
        };
        let idx = link.header.index;
        let msgs: Vec<_> = h
            .address()
            .get()
            .set_link_index_filter(idx)
            .execute()
            .try_collect()
            .await
            .unwrap_or_default();
        use rtnetlink::packet_route::address::AddressAttribute;
        msgs.iter()
            .filter(|m| m.header.index == idx)
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(format!("{ip}/{}", m.header.prefix_len)),
                    _ => None,
                })
            })
            .collect()
    })
}

/// True when `ns` has a link called `name`. A query the kernel fails is an error, never
/// "absent": a DEL test must not pass on a broken query.
pub fn has_link(ns: &NetNs, name: &str) -> anyhow::Result<bool> {
    let name = name.to_string();
    ns.netlink(move |h| async move {
        match h
            .link()
            .get()
            .match_name(name.clone())
            .execute()
            .try_next()
            .await
        {
            Ok(l) => Ok(l.is_some()),
            Err(e) if is_enodev(&e) => Ok(false),
            Err(e) => Err(anyhow::anyhow!("get link {name}: {e}")),
        }
    })
}

/// The names of the links enslaved to bridge `bridge` in `ns` (none when there is no such
/// bridge). A query the kernel fails is an error.
pub fn bridge_ports(ns: &NetNs, bridge: &str) -> anyhow::Result<Vec<String>> {
    let bridge = bridge.to_string();
    ns.netlink(move |h| async move {
        use rtnetlink::packet_route::link::LinkAttribute;
        let br = match h
            .link()
            .get()
            .match_name(bridge.clone())
            .execute()
            .try_next()
            .await
        {
            Ok(Some(br)) => br,
            Ok(None) => return Ok(Vec::new()),
            Err(e) if is_enodev(&e) => return Ok(Vec::new()),
            Err(e) => return Err(anyhow::anyhow!("get link {bridge}: {e}")),
        };
        let links: Vec<_> = h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| anyhow::anyhow!("dump links: {e}"))?;
        Ok(links
            .iter()
            .filter(|l| {
                l.attributes
                    .iter()
                    .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == br.header.index))
            })
            .filter_map(|l| {
                l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    })
}

/// The kernel's answer for a link that is not there.
fn is_enodev(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ENODEV)
}

/// The default route's gateway in `ns` (IPv4).
pub fn default_gw(ns: &NetNs) -> Option<IpAddr> {
    ns.netlink(|h| async move {
        use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
        let msg = rtnetlink::RouteMessageBuilder::<std::net::Ipv4Addr>::new().build();
        let routes: Vec<_> = h
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .unwrap_or_default();
        routes
            .iter()
            .filter(|r| r.header.destination_prefix_length == 0)
            .find_map(|r| {
                r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(IpAddr::V4(*g)),
                    _ => None,
                })
            })
    })
}

/// The whole nftables ruleset of `ns`, as `nft -j list ruleset` prints it.
pub fn ruleset(ns: &NetNs) -> String {
    let out = ns
        .command("nft")
        .args(["-j", "list", "ruleset"])
        .output()
        .expect("run nft");
    assert!(
        out.status.success(),
        "nft list ruleset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP server in `ns` on `addr` that answers each connection with the peer address
/// it saw, then closes it. Runs until the test process ends.
pub fn who_server(ns: &NetNs, addr: SocketAddr) -> anyhow::Result<()> {
    let l = ns
        .run(|| TcpListener::bind(addr))
        .with_context(|| format!("bind {addr}"))?;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let peer = s
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let _ = s.write_all(peer.as_bytes());
        }
    });
    Ok(())
}

/// Connects from `ns` to `to` and returns what a [`who_server`] answered: the source
/// address it saw.
pub fn whoami(ns: &NetNs, to: SocketAddr) -> anyhow::Result<String> {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .with_context(|| format!("connect to {to} from {}", ns.name()))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        if out.is_empty() {
            bail!("{to}: empty answer");
        }
        Ok(out)
    })
}

/// An "outside" namespace joined to the host by a veth: host 192.0.2.1/24 (`up0`),
/// outside 192.0.2.2/24.
pub fn outside(env: &TestEnv) -> anyhow::Result<NetNs> {
    let out = env.pod_netns("outside")?;
    let ip = |ns: &NetNs, args: &[&str]| {
        berth_integration_tests::util::run(ns.command("ip").args(args)).map(|_| ())
    };
    ip(
        &env.host,
        &[
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            out.path().to_str().unwrap_or_default(),
        ],
    )?;
    ip(&env.host, &["addr", "add", "192.0.2.1/24", "dev", "up0"])?;
    ip(&env.host, &["link", "set", "up0", "up"])?;
    ip(&out, &["addr", "add", "192.0.2.2/24", "dev", "eth0"])?;
    ip(&out, &["link", "set", "eth0", "up"])?;
    Ok(out)
}

/// Like [`whoami`], retrying for up to `secs` seconds (an IPv6 address may still be in
/// duplicate address detection right after ADD).
pub fn whoami_retry(ns: &NetNs, to: SocketAddr, secs: u64) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match whoami(ns, to) {
            Ok(s) => return Ok(s),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A UDP server in `ns` on `addr` that answers each datagram with the sender's address.
pub fn udp_who_server(ns: &NetNs, addr: SocketAddr) -> anyhow::Result<()> {
    let s = ns
        .run(|| std::net::UdpSocket::bind(addr))
        .with_context(|| format!("bind udp {addr}"))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(from.ip().to_string().as_bytes(), from);
        }
    });
    Ok(())
}

/// Sends a datagram from `ns` to `to` and returns the answer of a [`udp_who_server`].
pub fn udp_whoami(ns: &NetNs, to: SocketAddr) -> anyhow::Result<String> {
    ns.run(|| {
        let any: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
        let s = std::net::UdpSocket::bind(any)?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut buf = [0u8; 64];
        for _ in 0..6 {
            s.send_to(b"who", to)?;
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return Ok(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        bail!("no UDP answer from {to}")
    })
}

/// True when link `name` in `ns` is administratively up (IFF_UP), read through netlink.
pub fn link_up(ns: &NetNs, name: &str) -> bool {
    let name = name.to_string();
    ns.netlink(move |h| async move {
        use rtnetlink::packet_route::link::LinkFlags;
        matches!(h.link().get().match_name(name).execute().try_next().await,
            Ok(Some(l)) if l.header.flags.contains(LinkFlags::Up))
    })
}

/// Runs `f` on a thread that has entered the network namespace at `path` (e.g.
/// `/proc/<pid>/ns/net` of a sandbox someone else made); sockets it opens live there.
pub fn in_netns_path<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns {}", path.display()))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// The MTU of link `name` in `ns`, read through netlink.
pub fn link_mtu(ns: &NetNs, name: &str) -> Option<u32> {
    let name = name.to_string();
    ns.netlink(move |h| async move {
        use rtnetlink::packet_route::link::LinkAttribute;
        let l = h
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await
            .ok()??;
        l.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    })
}
