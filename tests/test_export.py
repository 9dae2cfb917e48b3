import json
import os
import subprocess
import sys

from hil.sim import simulate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_exports_agree_with_the_ledger(tmp_path):
    db = str(tmp_path / "ledger.sqlite")
    rep = simulate(devices=2, days=0.25, db=db, loss=0.1, seed=4)
    assert rep["reconciled"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "agent.cli", "export", "--db", db] + list(a),
                                    cwd=ROOT, capture_output=True, text=True, timeout=120)
    ce = run("--format", "cloudevents")
    assert ce.returncode == 0, ce.stderr
    events = json.loads(ce.stdout)
    # one event per ledger record, ids are the record keys: unique, stable across exports
    assert len(events) == sum(d["records_in_ledger"] for d in rep["devices"])
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert json.loads(run("--format", "cloudevents").stdout)[5]["id"] == ids[5]
    for e in events:
        assert e["specversion"] == "1.0" and e["source"].startswith("tally/") and e["type"]
        dev, epoch, seq = e["id"].split("/")
        assert e["subject"] == dev and int(seq) == e["data"]["seq"] and int(epoch) == e["data"]["epoch"]
    # usage summed over events equals the ledger totals (run hours, in seconds)
    for d in rep["devices"]:
        total = sum(e["data"]["usage"]["run_s"] for e in events if e["subject"] == d["device_id"])
        assert total == d["odometers"]["run_s"]["ledger"]
    sm = run("--format", "senml", "--device", "sim-001")
    pack = json.loads(sm.stdout)
    assert pack[0]["bn"] == "urn:dev:tally:sim-001:" and "bt" in pack[0]
    runs = [x for x in pack if x["n"] == "run_s"]
    assert runs[-1]["s"] == rep["devices"][0]["odometers"]["run_s"]["ledger"]
    assert all(("s" in x) != ("v" in x) and x["u"] for x in pack)
    temps = [x for x in pack if x["n"] == "temp_max_cC"]
    assert temps and all(isinstance(x["v"], float) and 10 < x["v"] < 80 for x in temps)
    bad = run("--format", "senml")
    assert bad.returncode == 0
    nodb = subprocess.run([sys.executable, "-m", "agent.cli", "export", "--db", str(tmp_path / "no")],
                          cwd=ROOT, capture_output=True, text=True)
    assert nodb.returncode == 2 and "no ledger" in nodb.stderr
