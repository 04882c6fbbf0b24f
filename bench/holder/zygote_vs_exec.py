#!/usr/bin/env python3
# Does the holder zygote pay for itself? Starts N idle holders (no containers) of a
# berth-holder binary twice: exec'd one by one, then forked by one zygote (as berth cri
# starts them), and prints the PSS and private memory per pod of each way (the zygote's
# PSS split between the pods). State under /tmp/berth-test-zyg-*, removed after.
#
#   sudo python3 bench/holder/zygote_vs_exec.py target/release/berth-holder 10
#   sudo python3 bench/holder/zygote_vs_exec.py target/release/berth-holder 1
import os, socket, subprocess, sys, time, shutil
BIN = os.path.abspath(sys.argv[1]); N = int(sys.argv[2]) if len(sys.argv) > 2 else 10
def rollup(pid):
    d = {}
    for l in open(f"/proc/{pid}/smaps_rollup"):
        p = l.split()
        if p[0].endswith(':') and len(p) >= 2 and p[1].isdigit(): d[p[0][:-1]] = int(p[1])
    return d['Pss'], d['Private_Clean'] + d['Private_Dirty'], d['Rss']
def holder_pid(state, pod):
    for _ in range(200):
        try: return int(open(f"{state}/pods/{pod}/holder.pid").read())
        except Exception: time.sleep(0.01)
    raise SystemExit("no holder.pid")
def cleanup(state, pids):
    for p in pids:
        try: os.kill(p, 9)
        except ProcessLookupError: pass
    time.sleep(0.3)
    subprocess.run(f"grep -o '{state}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l", shell=True)
    shutil.rmtree(state, ignore_errors=True)
def measure(mode):
    state = f"/tmp/berth-test-zyg-{mode}"; os.makedirs(state, exist_ok=True)
    pids = []; zpid = None
    if mode == "exec":
        for i in range(N):
            r, w = os.pipe()
            subprocess.run([BIN, "--state-dir", state, "--pod-id", f"p{i}", "--ready-fd", str(w)], pass_fds=[w], env={"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0", "BERTH_LOG": "info"})
            os.close(w); msg = os.read(r, 100); os.close(r)
            assert msg.startswith(b"ok"), msg
            pids.append(holder_pid(state, f"p{i}"))
    else:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        z = subprocess.Popen([BIN, "zygote", " " * 4096], close_fds=False, preexec_fn=lambda: os.dup2(b.fileno(), 3), env={"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0", "BERTH_LOG": "info"})
        zpid = z.pid
        for i in range(N):
            r, w = os.pipe()
            args = b"\0".join([b"--state-dir", state.encode(), b"--pod-id", f"p{i}".encode()]) + b"\0"
            socket.send_fds(a, [args], [w]); os.close(w)
            msg = os.read(r, 100); os.close(r)
            assert msg.startswith(b"ok"), msg
            pids.append(holder_pid(state, f"p{i}"))
    time.sleep(0.5)
    pss = uss = rss = 0
    for p in pids:
        a1, b1, c1 = rollup(p); pss += a1; uss += b1; rss += c1
    zp = rollup(zpid) if zpid else (0, 0, 0)
    print(f"{mode}: {N} holders: PSS per pod {(pss + zp[0]) / N:.0f} KiB (holders {pss / N:.0f} + zygote {zp[0] / N:.0f}), private per holder {uss / N:.0f} KiB, RSS per holder {rss / N:.0f} KiB; zygote PSS {zp[0]} KiB; one pod alone: holder {rollup(pids[0])[0]} KiB + zygote {zp[0]}")
    cleanup(state, pids + ([zpid] if zpid else []))
for m in ["exec", "zygote"]: measure(m)
