#!/usr/bin/python3
"""A minimal CRI v1 (runtime.v1.RuntimeService) client for berth's tests.

Speaks gRPC through Debian's python3-grpcio and encodes the few protobuf messages it needs
by hand (field numbers from k8s.io/cri-api's api.proto), so it needs no generated code.

  cri_client.py SOCKET run NAME UID NAMESPACE CGROUP_PARENT LOG_DIR [HOSTPORT:CONTAINERPORT]
      prints the sandbox id
  cri_client.py SOCKET status ID      prints "<ip> <pid>"
  cri_client.py SOCKET stop ID
  cri_client.py SOCKET remove ID
"""

import json
import sys

import grpc


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(num, wire):
    return varint((num << 3) | wire)


def string(num, text):
    data = text.encode() if isinstance(text, str) else text
    return key(num, 2) + varint(len(data)) + data


def message(num, body):
    return key(num, 2) + varint(len(body)) + body


def integer(num, n):
    return key(num, 0) + varint(n)


def decode(buf):
    """Field number -> list of values (int for varints, bytes otherwise)."""
    out, i = {}, 0
    while i < len(buf):
        tag, i = read_varint(buf, i)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            val, i = read_varint(buf, i)
        elif wire == 2:
            n, i = read_varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wire == 1:
            val, i = buf[i:i + 8], i + 8
        elif wire == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        out.setdefault(num, []).append(val)
    return out


def read_varint(buf, i):
    n, shift = 0, 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def call(channel, method, body):
    rpc = channel.unary_unary(f"/runtime.v1.RuntimeService/{method}",
                              request_serializer=lambda x: x,
                              response_deserializer=lambda x: x)
    return rpc(body, timeout=60)


def main():
    sock, verb, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    channel = grpc.insecure_channel(f"unix://{sock}")
    if verb == "run":
        name, uid, ns, cgroup, logdir = args[:5]
        meta = string(1, name) + string(2, uid) + string(3, ns)
        config = message(1, meta) + string(2, name) + string(3, logdir)
        for spec in args[5:]:
            host, cont = spec.split(":")
            config += message(5, integer(2, int(cont)) + integer(3, int(host)))
        config += message(8, string(1, cgroup))
        resp = decode(call(channel, "RunPodSandbox", message(1, config)))
        print(resp[1][0].decode())
    elif verb == "status":
        resp = decode(call(channel, "PodSandboxStatus", string(1, args[0]) + integer(2, 1)))
        status = decode(resp[1][0])
        network = decode(status.get(5, [b""])[0])
        ip = network.get(1, [b""])[0].decode()
        pid = 0
        for entry in resp.get(2, []):
            kv = decode(entry)
            if kv.get(1, [b""])[0] == b"info":
                pid = json.loads(kv[2][0]).get("pid", 0)
        print(ip, pid)
    elif verb in ("stop", "remove"):
        call(channel, "StopPodSandbox" if verb == "stop" else "RemovePodSandbox",
             string(1, args[0]))
    else:
        sys.exit(f"unknown verb {verb}")


if __name__ == "__main__":
    main()
