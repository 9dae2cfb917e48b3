"""`tally bench ota`: a signed over-the-air update of the whole unix bundle
(agent/ota.py, docs/ota.md) through a private mosquitto on loopback, the
device on the MicroPython unix port as `tally flash --board unix` builds it
and the operator's side as `tally ota push` runs it (agent.cli.ota.Server).

- throughput: file bytes fetched / time from the device's first chunk
  request to the last chunk served (median of RUNS whole updates);
- verification on MicroPython: the offer's signature (pow(sig, e, n) with
  RSA-2048) and the SHA-256 of every file of the bundle read back from flash
  in the device's 512-byte blocks (medians);
- device heap: the live heap (after gc.collect) in the steady loop as the
  offer is taken, against its highest with a chunk held while fetching (config
  ota_heap = 1: the device measures after every chunk, so those runs are
  not timed).

Figures only, never asserts; goals from issue 14: >= 20 KB/s, <= 8 KiB."""
import json
import os
import shutil
import statistics
import subprocess
import tempfile

from agent.cli.bundle import FILES_HEAP
from agent.ota import CHUNK

GOAL_KBPS = 20
GOAL_HEAP = 8 * 1024
RUNS = 5
HEAP_RUNS = 3

# MicroPython: the device's verification, timed (run from the bundle, cwd the release)
VERIFY_MP = """
import time, hashlib, gc
from agent import ota
n = ota.load_pubkey(%(pub)r)
with open(%(offer)r, "rb") as f:
    b = f.read()
ver, msize, msha, signed, sig = ota.parse_offer(b)
files = %(files)r
sig_us = []
for i in range(21):
    t = time.ticks_us()
    ok = ota.rsa_verify(n, signed, sig)
    sig_us.append(time.ticks_diff(time.ticks_us(), t))
buf = bytearray(512)
mv = memoryview(buf)
hash_us = []
nbytes = 0
for i in range(5):
    t = time.ticks_us()
    nbytes = 0
    for p in files:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                h.update(mv[:k])
                nbytes += k
        h.digest()
    hash_us.append(time.ticks_diff(time.ticks_us(), t))
sig_us.sort()
hash_us.sort()
print("VERIFY", ok, sig_us[10], hash_us[2], nbytes)
"""


def _mp():
    from hil.harness import mpbuild
    return mpbuild.tool("micropython")


def _update(base, rel, broker, tmp, heap=False):
    """One whole update from the flashed bundle: (seconds, bytes fetched, console)."""
    from agent.cli import ota as cli_ota
    board = os.path.join(tmp, "board")
    shutil.rmtree(board, ignore_errors=True)
    shutil.copytree(base, board)
    cfgp = os.path.join(board, "tally_config.json")
    with open(cfgp) as f:
        cfg = json.load(f)
    cfg.update(broker=broker.url, duration_s=60)
    if heap:
        cfg["ota_heap"] = 1
    with open(cfgp, "w") as f:
        json.dump(cfg, f)
    dev = cfg["device_id"]
    srv = cli_ota.Server(broker.url).start()
    try:
        srv.offer(dev, rel)
        r = subprocess.run([_mp(), "-X", "heapsize=" + FILES_HEAP, "main.py"], cwd=board, capture_output=True,
                           text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})
    finally:
        srv.withdraw(dev)
        srv.stop()
    if r.returncode != 75:
        raise RuntimeError("bench ota: the update did not complete (exit %s): %s"
                           % (r.returncode, (r.stdout + r.stderr)[-800:]))
    return srv.last[dev] - srv.first[dev], srv.served[dev], r.stdout


def bench_ota(runs=RUNS, progress=None):
    from agent.cli import bundle as cli_flash
    from agent.cli import ota as cli_ota
    from hil.harness.mosquitto import Mosquitto
    say = progress or (lambda s: None)
    tmp = tempfile.mkdtemp(prefix="tally-bench-ota-")
    m = Mosquitto().start()
    try:
        priv, pub = cli_ota.keygen(os.path.join(tmp, "keys"))
        base = os.path.join(tmp, "bundle")
        say("building the unix bundle")
        cli_flash.build(base, "unix", {"device_id": "bench-ota", "interval_s": 1, "sample_ms": 100,
                                       "key": "00" * 16, "ota_key": pub})
        relp = os.path.join(tmp, "release")
        shutil.copytree(base, relp)
        cli_ota.release(relp, "9.0.0", priv)
        rel = cli_ota.Release(relp)
        secs, rates = [], []
        fetched = 0
        for i in range(runs):
            s, n, _ = _update(base, rel, m, tmp)
            secs.append(s)
            rates.append(n / s / 1000)
            fetched = n
            say("update %d of %d: %d bytes in %.2f s (%.0f KB/s)" % (i + 1, runs, n, s, n / s / 1000))
        steady, peak = [], []
        for i in range(HEAP_RUNS):
            _, _, out = _update(base, rel, m, tmp, heap=True)
            line = [x for x in out.splitlines() if "tally: ota: heap live" in x][0]
            w = line.split()
            steady.append(int(w[4]))
            peak.append(int(w[12]))
        say("verification on MicroPython")
        files = [p for p, _, _ in rel.files]
        code = VERIFY_MP % {"pub": os.path.join(base, "ota.pub"),
                            "offer": os.path.join(relp, "ota-release", "OFFER"), "files": files}
        r = subprocess.run([_mp(), "-X", "heapsize=256K", "-c", code], cwd=relp, capture_output=True,
                           text=True, timeout=120, env={"MICROPYPATH": base, "PATH": os.environ.get("PATH", "")})
        v = [x for x in r.stdout.splitlines() if x.startswith("VERIFY ")]
        if not v:
            raise RuntimeError("bench ota: the verification run failed: %s" % (r.stdout + r.stderr)[-800:])
        _, ok, sig_us, hash_us, hashed = v[0].split()
    finally:
        m.close()
        shutil.rmtree(tmp, ignore_errors=True)
    over = [p - s for p, s in zip(peak, steady)]
    return {
        "bundle_files": len(rel.files),
        "bundle_bytes": rel.total,
        "chunk_bytes": CHUNK,
        "runs": runs,
        "fetched_bytes": fetched,
        "seconds_median": round(statistics.median(secs), 3),
        "throughput_kBps_median": round(statistics.median(rates), 1),
        "signature_verify_ms_median": round(int(sig_us) / 1000, 2),
        "signature_ok": ok == "True",
        "hash_bundle_ms_median": round(int(hash_us) / 1000, 1),
        "hashed_bytes": int(hashed),
        "hash_kBps": round(int(hashed) / (int(hash_us) / 1e6) / 1000, 1),
        "heap_steady_bytes_median": int(statistics.median(steady)),
        "heap_fetching_bytes_median": int(statistics.median(peak)),
        "heap_over_steady_bytes_median": int(statistics.median(over)),
        "goals": {"throughput >= %d KB/s" % GOAL_KBPS: statistics.median(rates) >= GOAL_KBPS,
                  "heap beyond the steady loop <= %d KiB" % (GOAL_HEAP // 1024):
                      statistics.median(over) <= GOAL_HEAP},
    }


def report(r):
    from hil.bench import print_goals
    print("tally bench ota: the whole unix bundle (%d files, %d bytes with the manifest) through "
          "mosquitto on loopback, device on the MicroPython unix port, %d-byte chunks"
          % (r["bundle_files"], r["bundle_bytes"], r["chunk_bytes"]))
    print("  update, median of %d       %.2f s, %.1f KB/s" % (r["runs"], r["seconds_median"],
                                                             r["throughput_kBps_median"]))
    print("  signature check (RSA-2048) %.2f ms  (pow(sig, 65537, n) on MicroPython)"
          % r["signature_verify_ms_median"])
    print("  SHA-256 of every file      %.1f ms for %d bytes (%.0f KB/s, read back in 512-byte blocks)"
          % (r["hash_bundle_ms_median"], r["hashed_bytes"], r["hash_kBps"]))
    print("  live heap, steady loop     %d B" % r["heap_steady_bytes_median"])
    print("  live heap, fetching (max)  %d B: %d B beyond the steady loop"
          % (r["heap_fetching_bytes_median"], r["heap_over_steady_bytes_median"]))
    print_goals("goals (issue 14)", r["goals"])
    return 0
