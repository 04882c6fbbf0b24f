#!/usr/bin/env bash
# berth's most complete path today, end to end on this machine:
#   1. an image (busybox httpd, built here with umoci from Debian's busybox-static) is
#      imported into berth's image store and mounted as an overlay rootfs;
#   2. a pod network namespace is attached to a bridge by berth's CNI plugins, with an
#      address from berth-host-local and a host port from berth-portmap;
#   3. berth's OCI runtime runs the container in that namespace, and the node fetches a
#      page from it over TCP, by pod IP and by host port;
#   4. everything is torn down again.
# It all runs inside a network and mount namespace of its own, so the machine's network,
# nftables ruleset and mounts are never touched. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD
profile=${BERTH_PROFILE:-release}

if [ -z "${BERTH_DEMO_INNER:-}" ]; then
  bash scripts/setup.sh
  if [ "$profile" = release ]; then
    cargo build --release --locked --quiet -p berth -p berth-cni-plugins --bins
  else
    cargo build --locked --quiet -p berth -p berth-cni-plugins --bins
  fi
  exec env BERTH_DEMO_INNER=1 unshare --net --mount --propagation private "$0" "$@"
fi

bin=$root_dir/target/$profile
berth=$bin/berth
step() { printf '\n== %s\n' "$*"; }

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
holder=
cleanup() {
  set +e
  "$berth" oci --root "$work/state" delete --force demo >/dev/null 2>&1
  [ -n "$holder" ] && "$berth" cni --conf-dir "$work/net.d" --bin-dir "$bin" \
    --cache-dir "$work/cni-cache" del --id demo --netns "/proc/$holder/ns/net" >/dev/null 2>&1
  "$berth" image --root "$work/images" unmount demo >/dev/null 2>&1
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  rmdir /sys/fs/cgroup/*/"berth-demo-$$" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ip link set lo up

step "build an OCI image layout with umoci: busybox httpd serving /www"
umoci init --layout "$work/layout"
umoci new --image "$work/layout:latest"
umoci unpack --image "$work/layout:latest" "$work/unpacked" >/dev/null
rootfs=$work/unpacked/rootfs
mkdir -p "$rootfs/bin" "$rootfs/www" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh httpd; do ln -sf busybox "$rootfs/bin/$applet"; done
echo "hello from a berth pod" >"$rootfs/www/index.html"
umoci repack --image "$work/layout:latest" "$work/unpacked"
umoci config --image "$work/layout:latest" --config.cmd /bin/httpd --config.cmd -f \
  --config.cmd -p --config.cmd 80 --config.cmd -h --config.cmd /www

step "berth image import / ls / mount"
"$berth" image --root "$work/images" import --name demo/httpd "$work/layout"
"$berth" image --root "$work/images" ls
mkdir -p "$work/bundle/rootfs"
"$berth" image --root "$work/images" mount --target "$work/bundle/rootfs" demo demo/httpd:latest

step "berth cni add: the pod's network namespace on berth's bridge, host port 8080 -> 80"
unshare --net sleep infinity &
holder=$!
mkdir -p "$work/net.d"
"$berth" cni default-conflist --pod-cidr 10.88.0.0/24 |
  python3 -c 'import json,sys; c=json.load(sys.stdin); c["plugins"][0]["ipam"]["dataDir"]=sys.argv[1]; json.dump(c,sys.stdout,indent=1)' \
    "$work/ipam" >"$work/net.d/10-berth.conflist"
result=$("$berth" cni --conf-dir "$work/net.d" --bin-dir "$bin" --cache-dir "$work/cni-cache" \
  add --id demo --netns "/proc/$holder/ns/net" --port 8080:80/tcp)
pod_ip=$(printf '%s' "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0]["address"].split("/")[0])')
echo "pod address: $pod_ip"

step "berth oci run: busybox httpd in the pod's namespace"
cat >"$work/bundle/config.json" <<JSON
{
  "ociVersion": "1.2.0",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "args": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"],
      "effective": ["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"],
      "permitted": ["CAP_CHOWN","CAP_DAC_OVERRIDE","CAP_FSETID","CAP_FOWNER","CAP_MKNOD","CAP_NET_RAW","CAP_SETGID","CAP_SETUID","CAP_SETFCAP","CAP_SETPCAP","CAP_NET_BIND_SERVICE","CAP_SYS_CHROOT","CAP_KILL","CAP_AUDIT_WRITE"]
    },
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs"},
  "hostname": "demo",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {
    "namespaces": [
      {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
      {"type": "network", "path": "/proc/$holder/ns/net"}
    ],
    "cgroupsPath": "/berth-demo-$$/demo",
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON
"$berth" oci --root "$work/state" run --detach --bundle "$work/bundle" demo
"$berth" oci --root "$work/state" state demo

step "the node fetches the page over TCP"
for url in "http://$pod_ip/" "http://127.0.0.1:8080/"; do
  for _ in $(seq 50); do
    page=$(wget -qO- -T 2 "$url" 2>/dev/null) && break
    sleep 0.1
  done
  echo "$url -> ${page:-<no answer>}"
  [ "${page:-}" = "hello from a berth pod" ]
done

step "tear down: berth oci kill + delete, berth cni del, berth image unmount"
"$berth" oci --root "$work/state" kill demo KILL
for _ in $(seq 50); do
  "$berth" oci --root "$work/state" state demo | grep -q '"stopped"' && break
  sleep 0.1
done
"$berth" oci --root "$work/state" delete demo
"$berth" cni --conf-dir "$work/net.d" --bin-dir "$bin" --cache-dir "$work/cni-cache" \
  del --id demo --netns "/proc/$holder/ns/net"
"$berth" image --root "$work/images" unmount demo
echo "done: image, network and container all came and went through berth"
