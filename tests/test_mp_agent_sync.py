"""The whole agent under the MicroPython unix port, syncing a simulated day
through a real mosquitto (restarted at noon) to the collector on CPython:
the ledger reconciles with what the device logged, as it does on CPython."""
import json
import os
import subprocess
import threading
import time

import pytest

from agent.collector.service import CollectorService
from agent.collector.store import Collector
from hil.harness import romboard, romfs
from conftest import MP, bundle  # noqa: F401 (bundle: the compiled fixture)

pytestmark = [pytest.mark.micropython, pytest.mark.emulator_exact,
              pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
DEV = "mp-agent"
KEY = b"mp-agent-key-16b"
# The whole agent, the emulated board and the MQTT client run from a ROMFS
# image mapped outside the heap, as a board runs them from its ROM partition
# (hil/harness/romboard.py); with the code loaded into the heap from files this
# 64-bit port needs 256K (tally bench footprint).
# It needed 128K with 15-minute part batches; at the 60-minute default
# (docs/wire.md: 60 records a batch, for the bytes per record) a batch's
# 30 records are decoded in RAM at once while it is encoded: 160K.
HEAP = os.environ.get("TALLY_MP_SYNC_HEAP", "160K")


def test_micropython_agent_syncs_a_day_through_mosquitto_and_reconciles(broker, bundle, tmp_path):
    col = Collector(str(tmp_path / "ledger.sqlite"), keys=lambda d: KEY if d == DEV else None)
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    stop = threading.Event()
    pump = threading.Thread(target=svc.run_forever, args=(stop,), daemon=True)
    pump.start()
    image = tmp_path / "bundle.romfs"
    image.write_bytes(romfs.image(bundle))
    code = "import agent_sync_mp; agent_sync_mp.run(%d, %r, 24)" % (broker.port, str(tmp_path / "mp.log"))
    p = subprocess.Popen(romboard.argv(str(image), code, HEAP, str(tmp_path)),
                         cwd=str(tmp_path), env=dict(os.environ, MICROPYPATH=bundle),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = None
    lines = []
    try:
        deadline = time.monotonic() + 600
        for line in p.stdout:
            lines.append(line.rstrip())
            if line.startswith("H 12 "):
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
        stop.set()
        pump.join(10)
        svc.stop()
    assert end is not None, "\n".join(lines[-20:])
    print(end)
    assert end["depth"] == 0, end                  # every record acked
    assert end["sessions"] >= 2, end               # it lost the broker at noon and came back
    s = col.summary(DEV)
    e = s["epochs"][end["epoch"]]
    assert e["covered"] == end["logged"] and e["gaps"] == 0
    for name, v in end["odometers"].items():
        assert e["totals"].get(name, 0) == v, (name, v, e["totals"].get(name))
    assert end["odometers"]["run_time"] > 3600        # a day of a compressor: it ran
    col.close()
