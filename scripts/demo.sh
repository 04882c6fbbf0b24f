#!/usr/bin/env bash
# The most complete path berth has today: set up, build, and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --quiet --bin berth
berth=target/release/berth
"$berth" --help
"$berth" version
