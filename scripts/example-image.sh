#!/usr/bin/env bash
# Builds the image the examples in examples/ run, localhost/berth-examples/busybox:v1,
# as an OCI image layout in DIR, from Debian's busybox-static (scripts/setup.sh installs
# it): one gzip layer holding /bin/busybox, a link per applet, /etc/passwd and /etc/group,
# the way integration-tests/src/fixtures.rs builds the test images. No registry is needed:
#
#   scripts/example-image.sh /tmp/berth-examples-image
#   berth image import /tmp/berth-examples-image
#
# The layout names the image both ways importers read: org.opencontainers.image.ref.name
# (the tag) and io.containerd.image.name (the whole reference), so `berth image import`
# and, tarred, `ctr images import` load it under the same name.
set -euo pipefail

usage() { echo "usage: $0 DIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
dir=$1
busybox=${BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || { echo "$0: no $busybox (install busybox-static: scripts/setup.sh)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "$0: python3 is needed" >&2; exit 1; }

mkdir -p "$dir"
python3 - "$dir" "$busybox" <<'PY'
import gzip, hashlib, io, json, os, subprocess, sys, tarfile

out, busybox = sys.argv[1], sys.argv[2]
applets = [a for a in subprocess.run([busybox, "--list"], check=True, capture_output=True,
                                     text=True).stdout.split() if a != "busybox"]
reference = "localhost/berth-examples/busybox"
tag = "v1"
mtime = 1767225600  # 2026-01-01, fixed so that the digests are the same every time

def entry(name, kind, mode, data=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    info.uid = info.gid = 0
    info.linkname = link
    info.size = len(data)
    return info, (io.BytesIO(data) if data else None)

raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
    for d, mode in [("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555),
                    ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777), ("var", 0o755),
                    ("www", 0o755)]:
        t.addfile(*entry(d, tarfile.DIRTYPE, mode))
    with open(busybox, "rb") as f:
        t.addfile(*entry("bin/busybox", tarfile.REGTYPE, 0o755, f.read()))
    for a in sorted(set(applets)):
        t.addfile(*entry("bin/" + a, tarfile.SYMTYPE, 0o777, link="busybox"))
    t.addfile(*entry("etc/passwd", tarfile.REGTYPE, 0o644,
                     b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"))
    t.addfile(*entry("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnogroup:x:65534:\n"))
layer = raw.getvalue()
gz = gzip.compress(layer, compresslevel=6, mtime=0)

blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)

def blob(data):
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, hexd), "wb") as f:
        f.write(data)
    return "sha256:" + hexd, len(data)

def canonical(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()

layer_digest, layer_size = blob(gz)
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
config = {
    "created": "2026-01-01T00:00:00Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/bin/sh"],
        "WorkingDir": "/",
        "Labels": {"org.berth.example": "busybox"},
    },
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "scripts/example-image.sh"}],
}
config_digest, config_size = blob(canonical(config))
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": config_digest, "size": config_size},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest, "size": layer_size}],
}
manifest_digest, manifest_size = blob(canonical(manifest))
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest_size,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {
            "org.opencontainers.image.ref.name": tag,
            "io.containerd.image.name": f"{reference}:{tag}",
        },
    }],
}
with open(os.path.join(out, "index.json"), "wb") as f:
    f.write(canonical(index))
with open(os.path.join(out, "oci-layout"), "wb") as f:
    f.write(b'{"imageLayoutVersion":"1.0.0"}')
print(f"{reference}:{tag} {manifest_digest} in {out}")
PY
