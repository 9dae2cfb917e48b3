"""Through a real mosquitto broker (started by the test on a free port)."""
import threading
import time

import pytest

from hil.harness.sim import simulate

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


def test_collector_service_survives_a_database_error_and_does_not_ack(broker):
    import sqlite3
    from agent import batch, cose
    from agent.collector.service import CollectorService
    from agent.collector.store import Collector
    from agent.log import RingLog
    from agent.meter import Meter
    from agent.port.mqtt_paho import PahoTransport
    from hil.nor import EmulatedNOR
    key = bytes(16)
    col = Collector(keys={"dev-d": key}.get)
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    dev = PahoTransport("dev-d", broker.url)
    dev.connect()
    assert dev.wait_connected(10)
    time.sleep(0.3)
    m = Meter([("odo", "count", 0, "odo")])
    log = RingLog(EmulatedNOR(4096, 4), "dev-d").open()
    for i in range(3):
        log.append(m.id, 1, i * 60000, 0, 0, 60000, [i])
    birth = {"v": 1, "device": "dev-d", "schema_id": m.id, "epoch": log.epoch, "seq0": 1, "boot": 1,
             "schema": [["odo", "count", 0, "odometer"]]}
    import cbor2
    dev.publish("tally/v1/dev-d/birth", cose.mac0(cbor2.dumps(birth), key, "dev-d"), True)
    col.db.execute("CREATE TRIGGER boom BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    payload = cose.mac0(batch.encode(log.pending(3)), key, "dev-d")
    dev.publish("tally/v1/dev-d/data", payload)
    deadline = time.time() + 5
    while svc.db_errors == 0 and time.time() < deadline:
        svc.pump(0.1)
    assert svc.db_errors == 1 and dev.poll() == []          # no ack for what was not stored
    col.db.execute("DROP TRIGGER boom")
    dev.publish("tally/v1/dev-d/data", payload)             # the device's retry
    acks = []
    deadline = time.time() + 5
    while not acks and time.time() < deadline:
        svc.pump(0.1)
        acks = [p for t, p in dev.poll() if t.endswith("/ack")]
    assert acks and cbor2.loads(cose.verify(acks[0], key, "dev-d"))[2] == 3
    dev.close()
    svc.stop()
