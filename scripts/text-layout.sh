#!/usr/bin/env bash
# Regenerates src/runtime/holder/text.ld, the linker script that packs the code berth's
# holders run (docs/holder.md, "Code layout"): builds berth with every function in a 64 KiB
# window of its own (BERTH_TEXT_PROFILE=1, in target/text-profile), runs pods through the
# holder's life on it, and lists the functions the holders and their zygote mapped.
# Run as root, after a change to what the holder runs. Extra arguments go to the bench
# (e.g. --concurrent 4).
set -euo pipefail
cd "$(dirname "$0")/.."
profile=target/text-profile
BERTH_TEXT_PROFILE=1 CARGO_TARGET_DIR="$profile" \
    cargo build --release --locked -p berth -p berth-cni-plugins --bins
cargo build --release --locked -p berth-bench-cri
./target/release/berth-bench-cri --target berth --berth "$profile/release/berth" \
    --text-layout src/runtime/holder/text.ld "$@"
