#!/usr/bin/env bash
# berth's CNI chain against the reference plugins: builds berth's plugins (release) and
# runs bench.py in a network namespace of its own. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
ref=${REFERENCE_CNI_DIR:-/usr/lib/cni}
cargo build --release -q -p berth-cni-plugins --bins
bins=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release
exec unshare --net --mount --propagation private python3 bench/cni/bench.py "$bins" "$ref"
