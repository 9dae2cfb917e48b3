"""A simulated day of the whole agent under MicroPython, through a real
mosquitto that is restarted at noon, to the collector on CPython; then the
ledger is reconciled with what the device logged (CPython only).

The device side is tests/mp/agent_sync_mp.py (the emulated compressor
board, the ring log in a file, our MQTT client): give the command that
runs its run(PORT, LOG, HOURS) under some MicroPython (day_code() is the
line to run), e.g. the 32-bit unix port with it frozen in (tests/test_unix32.py,
`tally bench footprint`)."""
import json
import os
import subprocess
import threading
import time

DEV = "mp-agent"
KEY = b"mp-agent-key-16b"


def day_code(port, log, hours=24):
    return "import agent_sync_mp; agent_sync_mp.run(%d, %r, %d)" % (port, log, hours)


def run_day(cmd, broker, db, cwd, env=None, timeout=600, restart_at=12):
    """Run cmd (which runs day_code(broker.port, ...)) with a collector on db
    acking through broker; stop and restart the broker when the device reports
    hour restart_at. Returns {"end": the device's END record or None, "lines":
    its output, "reconciled": bool, "why": what did not reconcile, "summary"}."""
    from agent.collector.service import CollectorService
    from agent.collector.store import Collector
    col = Collector(db, keys=lambda d: KEY if d == DEV else None)
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    stop = threading.Event()
    pump = threading.Thread(target=svc.run_forever, args=(stop,), daemon=True)
    pump.start()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = None
    lines = []
    try:
        deadline = time.monotonic() + timeout
        for line in p.stdout:
            lines.append(line.rstrip())
            if line.startswith("H %d " % restart_at):
                broker.stop()                      # the broker goes away at noon
                time.sleep(1.0)
                broker.start()
            if line.startswith("END "):
                end = json.loads(line[4:])
            if time.monotonic() > deadline:
                break
        p.wait(60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        stop.set()
        pump.join(10)
        svc.stop()
    out = {"end": end, "lines": lines, "returncode": p.returncode}
    try:
        out.update(reconcile(col, end))
    finally:
        col.close()
    return out


def reconcile(col, end):
    """Whether the ledger holds exactly what the device logged: every record
    acked, every interval once with no gap, every odometer equal."""
    why = []
    if end is None:
        return {"reconciled": False, "why": ["the device did not finish its day"]}
    if end["depth"]:
        why.append("%d records not acked" % end["depth"])
    e = col.summary(DEV)["epochs"].get(end["epoch"])
    if e is None:
        return {"reconciled": False, "why": why + ["epoch %s not in the ledger" % end["epoch"]]}
    if e["covered"] != end["logged"]:
        why.append("ledger covers %d intervals, device logged %d" % (e["covered"], end["logged"]))
    if e["gaps"]:
        why.append("%d gaps" % e["gaps"])
    for name, v in sorted(end["odometers"].items()):
        if e["totals"].get(name, 0) != v:
            why.append("odometer %s: device %s, ledger %s" % (name, v, e["totals"].get(name)))
    return {"reconciled": not why, "why": why, "ledger": {"covered": e["covered"], "gaps": e["gaps"],
                                                            "totals": e["totals"]}}


def mp_env(path=".frozen"):
    """The environment for a MicroPython that imports only from path (frozen
    modules: ".frozen")."""
    return dict(os.environ, MICROPYPATH=path)
