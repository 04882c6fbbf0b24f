#!/usr/bin/env bash
# berth's most complete path today, end to end on this machine:
#   1. an image (busybox httpd, built here with umoci from Debian's busybox-static) is
#      imported into berth's image store;
#   2. `berth cri` serves the CRI on a root-only socket, and a CRI client (cri-demo) drives
#      a pod through it as kubelet does: RunPodSandbox (one holder process holding the
#      pod's namespaces, berth's bridge, host-local and portmap CNI plugins, host port
#      8080), CreateContainer + StartContainer (berth's OCI runtime core), the page
#      fetched over TCP by pod IP and by host port, ExecSync, ContainerStats;
#   3. StopPodSandbox + RemovePodSandbox tear it all down, and the daemon stops.
# It all runs inside a network and mount namespace of its own, so the machine's network,
# nftables ruleset and mounts are never touched. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD
profile=${BERTH_PROFILE:-release}

if [ -z "${BERTH_DEMO_INNER:-}" ]; then
  bash scripts/setup.sh
  if [ "$profile" = release ]; then
    cargo build --release --locked --quiet -p berth -p berth-cni-plugins --bins \
      -p berth-integration-tests --bin cri-demo
  else
    cargo build --locked --quiet -p berth -p berth-cni-plugins --bins \
      -p berth-integration-tests --bin cri-demo
  fi
  exec env BERTH_DEMO_INNER=1 unshare --net --mount --propagation private "$0" "$@"
fi

bin=$root_dir/target/$profile
berth=$bin/berth
step() { printf '\n== %s\n' "$*"; }

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
cri_pid=
cleanup() {
  set +e
  if [ -n "$cri_pid" ]; then
    kill -TERM "$cri_pid" 2>/dev/null
    wait "$cri_pid" 2>/dev/null
  fi
  # What a failed run may have left: holders (they outlive the daemon by design), mounts.
  pkill -KILL -f "$work/run" 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  find /sys/fs/cgroup/*/"berth-demo-$$" -depth -type d -exec rmdir {} + 2>/dev/null
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

step "berth image import / ls: the image into the store berth cri will use"
"$berth" image --root "$work/root/images" import --name demo/httpd "$work/layout"
"$berth" image --root "$work/root/images" ls

step "berth cri: the CRI runtime on a root-only socket, pod network 10.88.0.0/24"
mkdir -p "$work/net.d" "$work/logs"
"$berth" cni default-conflist --pod-cidr 10.88.0.0/24 |
  python3 -c 'import json,sys; c=json.load(sys.stdin); c["plugins"][0]["ipam"]["dataDir"]=sys.argv[1]; json.dump(c,sys.stdout,indent=1)' \
    "$work/ipam" >"$work/net.d/10-berth.conflist"
"$berth" cri --listen "unix://$work/berth.sock" --root "$work/root" --state-dir "$work/run" \
  --cni-conf-dir "$work/net.d" --cni-bin-dir "$bin" >"$work/cri.log" 2>&1 &
cri_pid=$!
if ! "$bin/cri-demo" "$work/berth.sock" demo/httpd:latest "$work/logs" "/berth-demo-$$"; then
  echo "berth cri log:" >&2
  tail -n 30 "$work/cri.log" >&2
  exit 1
fi

step "berth cri stops on SIGTERM"
kill -TERM "$cri_pid"
wait "$cri_pid"
cri_pid=
echo "done: image, pod network, sandbox and container all came and went through berth's CRI"
