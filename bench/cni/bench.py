#!/usr/bin/env python3
"""100 sequential ADD+DEL pairs of a bridge + host-local + portmap chain: berth's plugins
against the reference plugins, with the same configuration, interleaved in the same run.

Runs inside a network namespace of its own (run.sh starts it under `unshare --net`), so the
bridges, veths and nftables/iptables rules it makes never touch the machine's network. Each
chain gets its own "host" and pod namespaces (the bench switches between them with setns
before each pair), so neither chain's nft or iptables sees the other's rules.
Prints per-chain medians (ADD, DEL, pair), the berth/reference ratio and the peak RSS of
any process of each chain (a plugin or what it runs: IPAM, nft, iptables), measured in a
separate pass under GNU time so that the timed runs carry no wrapper.
"""

import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PAIRS = int(os.environ.get("PAIRS", "100"))
WARMUP = 3


RSS_WRAP = []


def run(binary, verb, cid, netns, conf, cni_path):
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": verb,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": cni_path,
    }
    rss_file = None
    argv = [binary]
    if RSS_WRAP:
        rss_file = tempfile.NamedTemporaryFile(prefix="berth-bench-rss-", delete=False).name
        argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file, binary]
    p = subprocess.run(argv, env=env, input=json.dumps(conf).encode(), stdout=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"{binary} {verb} {cid} failed: {p.stdout.decode(errors='replace')}")
    rss = 0
    if rss_file:
        with open(rss_file) as f:
            rss = int(f.read().split()[-1])
        os.unlink(rss_file)
    return (json.loads(p.stdout) if p.stdout.strip() else None), rss


CLONE_NEWNET = 0x40000000
LIBC = ctypes.CDLL(None, use_errno=True)


def holder():
    """A process holding a fresh network namespace (lo up); returns it and the ns path."""
    p = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up; exec sleep 3600"])
    time.sleep(0.2)
    return p, f"/proc/{p.pid}/ns/net"


def enter(fd):
    if LIBC.setns(fd, CLONE_NEWNET) != 0:
        sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")


class Chain:
    def __init__(self, label, bin_dir, prefix, data_dir):
        self.label, self.bin_dir, self.prefix = label, bin_dir, prefix
        self.bridge = {
            "cniVersion": "1.0.0", "name": "bench", "type": prefix + "bridge",
            "bridge": prefix.rstrip("-") + "br0" if prefix else "refbr0",
            "isGateway": True, "isDefaultGateway": True, "ipMasq": True, "hairpinMode": True,
            "ipam": {"type": prefix + "host-local", "dataDir": data_dir,
                     "ranges": [[{"subnet": "10.250.0.0/24" if prefix else "10.251.0.0/24"}]]},
        }
        self.portmap = {"cniVersion": "1.0.0", "name": "bench", "type": prefix + "portmap",
                        "capabilities": {"portMappings": True}, "snat": True}
        self.add_t, self.del_t, self.pair_t, self.rss = [], [], [], 0
        self.rss_by = {}

    def b(self, name):
        return os.path.join(self.bin_dir, self.prefix + name)

    def pair(self, cid, netns, record, rss=False):
        t0 = time.perf_counter()
        r, rss1 = run(self.b("bridge"), "ADD", cid, netns, self.bridge, self.bin_dir)
        pm = dict(self.portmap, prevResult=r,
                  runtimeConfig={"portMappings": [
                      {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                      {"hostPort": 8053, "containerPort": 53, "protocol": "udp"}]})
        _, rss2 = run(self.b("portmap"), "ADD", cid, netns, pm, self.bin_dir)
        t1 = time.perf_counter()
        _, rss3 = run(self.b("portmap"), "DEL", cid, netns, pm, self.bin_dir)
        _, rss4 = run(self.b("bridge"), "DEL", cid, netns, dict(self.bridge, prevResult=r), self.bin_dir)
        t2 = time.perf_counter()
        if record:
            self.add_t.append(t1 - t0)
            self.del_t.append(t2 - t1)
            self.pair_t.append(t2 - t0)
        if rss:
            self.rss = max(self.rss, rss1, rss2, rss3, rss4)
            for k, v in (("bridge ADD", rss1), ("portmap ADD", rss2), ("portmap DEL", rss3),
                         ("bridge DEL", rss4)):
                self.rss_by[k] = max(self.rss_by.get(k, 0), v)


def main():
    berth_dir, ref_dir = sys.argv[1], sys.argv[2]
    holders = [holder() for _ in range(4)]
    hosts = [os.open(path, os.O_RDONLY) for _, path in holders[:2]]
    pods = [path for _, path in holders[2:]]
    try:
        with tempfile.TemporaryDirectory(prefix="berth-bench-cni-") as tmp:
            chains = [Chain("berth", berth_dir, "berth-", os.path.join(tmp, "berth")),
                      Chain("reference", ref_dir, "", os.path.join(tmp, "ref"))]
            for i in range(WARMUP + PAIRS):
                for c, host, netns in zip(chains, hosts, pods):
                    enter(host)
                    c.pair(f"bench-{c.label}-{i}", netns, i >= WARMUP)
            if not os.path.exists("/usr/bin/time"):
                print("GNU time (/usr/bin/time, Debian package `time`) missing: no RSS figures")
            else:
                RSS_WRAP.append(True)
            for i in range(3 if RSS_WRAP else 0):
                for c, host, netns in zip(chains, hosts, pods):
                    enter(host)
                    c.pair(f"bench-rss-{c.label}-{i}", netns, False, rss=True)
    finally:
        for p, _ in holders:
            p.kill()
            p.wait()
    ms = lambda xs: statistics.median(xs) * 1000
    print(f"CNI chain bridge+host-local+portmap, {PAIRS} sequential ADD+DEL pairs "
          f"(after {WARMUP} warm-up pairs), interleaved")
    print(f"{'chain':<10} {'ADD ms':>8} {'DEL ms':>8} {'pair ms':>8} {'total s':>8} {'peak RSS KiB':>13}")
    for c in chains:
        print(f"{c.label:<10} {ms(c.add_t):8.2f} {ms(c.del_t):8.2f} {ms(c.pair_t):8.2f} "
              f"{sum(c.pair_t):8.2f} {c.rss:13d}")
    if chains[0].rss_by:
        print("peak RSS KiB by call (the plugin and what it runs):")
        for c in chains:
            print(f"  {c.label:<10} " + ", ".join(f"{k} {v}" for k, v in c.rss_by.items()))
    b, r = chains
    print(f"ratio berth/reference (median pair): {ms(b.pair_t) / ms(r.pair_t):.3f}  "
          f"(ADD {ms(b.add_t) / ms(r.add_t):.3f}, DEL {ms(b.del_t) / ms(r.del_t):.3f})")


if __name__ == "__main__":
    main()
