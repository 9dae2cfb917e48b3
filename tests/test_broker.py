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
