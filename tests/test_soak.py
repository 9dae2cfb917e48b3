"""The chaos soak, CI-sized: device processes and two collector workers
through a real mosquitto while the harness restarts the broker, cuts links,
SIGKILLs devices and workers, and re-delivers messages. The ledger must equal
what the devices logged: nothing lost, nothing counted twice."""
import os

import pytest

from hil.harness.mosquitto import find_mosquitto

pytestmark = pytest.mark.skipif(not find_mosquitto() and not os.environ.get("CI"),
                                reason="mosquitto is not installed")


@pytest.mark.parametrize("ledger", ["sqlite", "postgres"])
def test_chaos_soak_reconciles_exactly(ledger, request):
    from hil.harness.soak import FAULTS, soak
    db = request.getfixturevalue("postgres") if ledger == "postgres" else None
    lines = []
    r = soak(devices=3, seconds=16, speed=240, workers=2, seed=7, fault_every=1.2, db=db,
             progress=lines.append)
    print("\n".join(lines))
    for d in r["per_device"]:
        print(d)
    assert all(r["faults"][k] >= 1 for k in FAULTS), r["faults"]
    assert r["worker_kills_inside_a_transaction"] >= 1
    assert r["records"] >= 150                       # enough traffic to mean something
    assert r["duplicates_ignored"] >= 1              # the duplicates did arrive, and were dropped
    assert r["lost"] == 0 and r["counted_twice"] == 0
    assert any(d["boots"] > 1 for d in r["per_device"])   # a device did come back from SIGKILL
    assert r["reconciled"], [d for d in r["per_device"] if not d["reconciled"]]
