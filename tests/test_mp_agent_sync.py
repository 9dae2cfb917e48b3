"""The whole agent under the MicroPython unix port, syncing a simulated day
through a real mosquitto (restarted at noon) to the collector on CPython:
the ledger reconciles with what the device logged, as it does on CPython.
(hil/harness/mpday.py runs the day; tests/test_unix32.py runs the same day on
the 32-bit port with the code frozen, in 64K.)"""
import os

import pytest

from hil.harness import mpday, romboard, romfs
from conftest import MP, bundle  # noqa: F401 (bundle: the compiled fixture)

pytestmark = [pytest.mark.micropython, pytest.mark.emulator_exact,
              pytest.mark.skipif(not MP, reason="micropython unix port not installed")]
# The whole agent, the emulated board and the MQTT client run from a ROMFS
# image mapped outside the heap, as a board runs them from its ROM partition
# (hil/harness/romboard.py); with the code loaded into the heap from files this
# 64-bit port needs 256K (tally bench footprint).
# It needed 128K with 15-minute part batches, 160K with 30-record batches;
# the day now runs 15-minute batches again (tests/mp/agent_sync_mp.py) and,
# with issues 14 and 15's device code and emulation, needs 192K.
HEAP = os.environ.get("TALLY_MP_SYNC_HEAP", "192K")


def test_micropython_agent_syncs_a_day_through_mosquitto_and_reconciles(broker, bundle, tmp_path):
    image = tmp_path / "bundle.romfs"
    image.write_bytes(romfs.image(bundle))
    code = mpday.day_code(broker.port, str(tmp_path / "mp.log"))
    r = mpday.run_day(romboard.argv(str(image), code, HEAP, str(tmp_path)), broker,
                      str(tmp_path / "ledger.sqlite"), str(tmp_path), env=mpday.mp_env(bundle))
    end = r["end"]
    assert end is not None, "\n".join(r["lines"][-20:])
    print(end)
    assert end["depth"] == 0, end                  # every record acked
    assert end["sessions"] >= 2, end               # it lost the broker at noon and came back
    assert r["reconciled"], r["why"]
    assert r["ledger"]["covered"] == end["logged"] and r["ledger"]["gaps"] == 0
    for name, v in end["odometers"].items():
        assert r["ledger"]["totals"].get(name, 0) == v, (name, v, r["ledger"]["totals"].get(name))
    assert end["odometers"]["run_time"] > 3600        # a day of a compressor: it ran
