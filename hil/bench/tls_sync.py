"""The device's heap with TLS, for `tally bench footprint`: the smallest
capped heap (KiB, to 4 KiB) in which the agent on the MicroPython unix port
(64-bit, code in a ROMFS image as on a board) syncs an hour through a real
mosquitto, reconnecting once, every record acked: over TLS with its client
certificate (a throwaway fleet PKI, hil/harness/pki.py) and, beside it, the
same run over plain MQTT. hil/bench/tls_sync_mp.py runs inside."""
import json
import os
import subprocess
import tempfile
import threading

from hil.harness import mpbuild

HERE = os.path.dirname(os.path.abspath(__file__))
MINUTES = 60


def _ok(bundle, rom, heap, port, tls, work):
    from hil.harness import romboard
    log = os.path.join(work, "tls_sync.log")
    if os.path.exists(log):
        os.remove(log)
    call = "import tls_sync_mp; tls_sync_mp.run(%d, %r, %d, %r)" % (port, log, MINUTES, tls)
    try:
        r = subprocess.run(romboard.argv(rom, call, "%dK" % heap, work), cwd=work,
                           env=dict(os.environ, MICROPYPATH=bundle), capture_output=True, text=True,
                           timeout=300)
    except subprocess.TimeoutExpired:
        return False
    for line in r.stdout.splitlines():
        if line.startswith("END "):
            end = json.loads(line[4:])
            return end["depth"] == 0 and end["sessions"] >= 2
    return False


def _smallest(ok, lo=32, hi=256):
    if not ok(hi):
        return None
    while hi - lo > 4:
        mid = (lo + hi) // 2 // 4 * 4
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def tls_heap(progress=None):
    """{"tls_min_heap_kib", "plain_sync_min_heap_kib", ...}, or {"tls": why not}."""
    say = progress or (lambda s: None)
    if not mpbuild.tool("micropython"):
        return {"tls": "skipped: the micropython unix port is not installed"}
    try:
        import cryptography  # noqa: F401 (the throwaway PKI)
    except ImportError:
        return {"tls": "skipped: the cryptography package is needed (pip install 'tally[pki]')"}
    from hil.harness.mosquitto import Mosquitto, find_mosquitto
    if not find_mosquitto():
        return {"tls": "skipped: mosquitto not found"}
    from agent.collector.service import CollectorService
    from agent.collector.store import Collector
    from agent.cli.bundle import der
    from hil.harness import romfs
    from hil.harness.pki import TestPKI
    out = {}
    with tempfile.TemporaryDirectory() as d:
        unix = os.path.join(d, "unix")
        mpbuild.build(unix, extra=[os.path.join(HERE, "tls_sync_mp.py")])
        rom = os.path.join(d, "unix.romfs")
        with open(rom, "wb") as f:
            f.write(romfs.image(unix))
        pki = TestPKI(os.path.join(d, "pki"))
        dt = pki.device_tls("fp-tls")
        tls = []
        for k in ("cert", "key", "ca"):
            p = os.path.join(d, k + ".der")
            with open(p, "wb") as f:
                f.write(der(dt[k], k))
            tls.append(p)
        for key, btls in (("tls_min_heap_kib", pki.broker_tls), ("plain_sync_min_heap_kib", None)):
            m = Mosquitto(tls=btls).start()
            col = Collector(os.path.join(d, key + ".sqlite"), keys=lambda dev: b"fp-tls-key-16byt")
            svc = CollectorService(m.url, col, tls=pki.collector_tls if btls else None).start()
            stop = threading.Event()
            pump = threading.Thread(target=svc.run_forever, args=(stop,), daemon=True)
            try:
                svc.wait_ready(10)
                pump.start()
                say("smallest heap for an hour synced %s, code in ROMFS"
                    % ("over TLS" if btls else "over plain MQTT"))
                out[key] = _smallest(lambda heap: _ok(unix, rom, heap, m.port, tuple(tls) if btls else None, d))
            finally:
                stop.set()
                if pump.is_alive():
                    pump.join(10)
                svc.stop()
                col.close()
                m.close()
    if out.get("tls_min_heap_kib") and out.get("plain_sync_min_heap_kib"):
        out["tls_heap_cost_kib"] = out["tls_min_heap_kib"] - out["plain_sync_min_heap_kib"]
    return out
