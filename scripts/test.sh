#!/usr/bin/env bash
# berth's whole test suite: installs what it needs, checks formatting and lints, runs every
# unit and privileged integration test, then proves the tests left nothing on the machine.
# Run as root (privileged tests are skipped otherwise, and fail under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build"
cargo build --workspace --bins --locked

baseline=$(mktemp /tmp/berth-leak-baseline.XXXXXX)
trap 'rm -f "$baseline"' EXIT
cargo run --quiet --locked -p berth-integration-tests --bin leak-check -- baseline "$baseline"

echo "== tests"
profile=default
[ "${CI:-}" = "true" ] && profile=ci
status=0
cargo nextest run --workspace --locked --profile "$profile" || status=$?

echo "== leak check"
cargo run --quiet --locked -p berth-integration-tests --bin leak-check -- verify "$baseline" || status=1
exit $status
