"""Through a real mosquitto broker (started by the test on a free port)."""
import threading
import time

import pytest

from hil.sim import simulate

pytestmark = pytest.mark.broker


def test_simulate_through_mosquitto_reconciles(broker):
    rep = simulate(devices=3, days=0.5, broker=broker.url)
    assert rep["reconciled"], rep["devices"]
    assert all(d["records_in_ledger"] == 720 for d in rep["devices"])


def test_broker_restart_mid_run_loses_nothing(broker):
    stop = threading.Event()

    def chaos():
        time.sleep(1.0)
        while not stop.is_set():
            broker.restart(down_s=0.3)
            time.sleep(1.5)
    t = threading.Thread(target=chaos, daemon=True)
    t.start()
    try:
        rep = simulate(devices=2, days=1, broker=broker.url, drain_timeout_s=90)
    finally:
        stop.set()
        t.join()
    assert rep["reconciled"], rep["devices"]


def test_run_and_collect_as_separate_processes(broker, tmp_path):
    """What a Pi and a server do: `tally run` publishes, `tally collect` ledgers."""
    import os
    import sqlite3
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    db = tmp_path / "ledger.sqlite"
    key = "00112233445566778899aabbccddeeff"
    (tmp_path / "keys.json").write_text('{"pi-7": "%s"}' % key)
    col = subprocess.Popen([sys.executable, "-m", "agent.cli", "collect", "--broker", broker.url,
                            "--db", str(db), "--keys", str(tmp_path / "keys.json"),
                            "--duration", "20"], cwd=root,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "pi-7"\ninterval_s = 1\nsample_ms = 100\nlog_path = "%s"\n'
                   'broker = "%s"\nserial = "loopback"\nkey = "%s"\n' % (tmp_path / "log.bin", broker.url, key))
    time.sleep(1.5)
    run = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--board", "emulated",
                          "--config", str(cfg), "--duration", "6"], cwd=root,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "0 unacked in the log" in run.stdout, run.stdout
    col.terminate()
    out, err = col.communicate(timeout=20)
    assert "collecting from" in out, err
    con = sqlite3.connect(str(db))
    n = con.execute("SELECT COUNT(*) FROM records WHERE device_id='pi-7'").fetchone()[0]
    logged = sum(1 for x in run.stdout.splitlines() if x.startswith("interval "))
    assert n >= logged >= 4
