#!/usr/bin/env bash
# berth's main job, end to end on this machine: the kubelet in standalone mode.
#   1. the examples' image (busybox, built here from Debian's busybox-static as an OCI
#      image layout: no registry) is imported into berth's image store;
#   2. `berth run examples/web.yaml` runs the web example on berth's in-process runtime:
#      its init container writes the page, httpd serves it with readiness and liveness
#      probes, on the pod network (berth's bridge and host-local CNI plugins) and on the
#      node's port 8080 (hostPort, berth's portmap plugin);
#   3. once the pod is Ready its page is fetched through the host port, the status table
#      is printed, and SIGTERM stops berth run, which terminates the pod gracefully and
#      leaves nothing behind.
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
run_pid=
cgroup_root=/berth-demo-$$
cleanup() {
  set +e
  if [ -n "$run_pid" ]; then
    kill -TERM "$run_pid" 2>/dev/null
    wait "$run_pid" 2>/dev/null
  fi
  # What a failed run may have left: holders (they outlive the daemon by design), mounts.
  pkill -KILL -f "$work/run" 2>/dev/null
  grep -o " $work[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  find /sys/fs/cgroup/*"$cgroup_root" -depth -type d -exec rmdir {} + 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
ip link set lo up

step "the examples' image as an OCI layout (no registry), imported into berth's store"
bash scripts/example-image.sh "$work/image" >/dev/null
"$berth" image --root "$work/root/images" import "$work/image"
"$berth" image --root "$work/root/images" ls

step "berth run examples/web.yaml: the kubelet in standalone mode on berth's runtime"
mkdir -p "$work/net.d"
"$berth" cni default-conflist --pod-cidr 10.88.0.0/24 |
  python3 -c 'import json,sys; c=json.load(sys.stdin); c["plugins"][0]["ipam"]["dataDir"]=sys.argv[1]; json.dump(c,sys.stdout,indent=1)' \
    "$work/ipam" >"$work/net.d/10-berth.conflist"
"$berth" run examples/web.yaml --node-name demo -o table \
  --root "$work/root" --state-dir "$work/run" --kubelet-root "$work/kubelet" \
  --pod-log-dir "$work/logs" --cgroup-root "$cgroup_root" \
  --cni-conf-dir "$work/net.d" --cni-bin-dir "$bin" \
  >"$work/table.txt" 2>"$work/run.log" &
run_pid=$!

# The table berth run prints on every change; the pod is Ready at READY 1/1, Running.
last_table() { awk 'BEGIN{RS=""} {t=$0} END{print t}' "$work/table.txt"; }
ready() { last_table | grep -Eq '^default +web-demo +1/1 +Running '; }
for _ in $(seq 1 120); do
  ready && break
  if ! kill -0 "$run_pid" 2>/dev/null; then
    echo "berth run exited:" >&2; tail -n 30 "$work/run.log" >&2; exit 1
  fi
  sleep 0.5
done
if ! ready; then
  echo "the web pod did not become Ready; berth run's log:" >&2
  tail -n 30 "$work/run.log" >&2
  exit 1
fi

step "its page, through the node's port 8080 (hostPort)"
python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5).read().decode().strip())'

step "the status table, as berth run prints it"
last_table

step "SIGTERM: berth run terminates the pod gracefully and exits"
kill -TERM "$run_pid"
wait "$run_pid"
run_pid=
echo "done: the web example ran, Ready, served its page, and went with nothing left behind"
