"""One row per sensor: boards/sensors.py names every sensor type, and the
test-side tables name the same ones, so a driver cannot be half-registered.

  hil/twins/__init__.py TWINS            a twin for every I2C sensor (the emulated buses)
  tests/test_contract.py        a contract row for every I2C sensor
  tests/test_drv_<name>.py      a test file for every I2C driver
  hil/bench/drivers_mp.py ROWS     a `tally bench drivers` row for every sensor
                                read on request (I2C and Modbus); the PMS5003
                                streams a frame a second on its own line, so
                                its rate is the chip's, not the driver's; a
                                pulse meter is counted in hardware, no bus
                                transaction to time

Adding a sensor: docs/drivers-i2c.md, "Adding a sensor"."""
import os

import pytest

from boards.sensors import SENSORS
from conftest import ROOT

from hil.bench.drivers_mp import ROWS
from hil.twins import TWINS
from test_contract import CONTRACT

# sensor types a test-side table leaves out on purpose, and why (above)
NO_BENCH_ROW = {"pms5003", "pulse"}


def _on(*buses):
    return sorted(n for n, row in SENSORS.items() if row[0] in buses)


def test_every_i2c_sensor_has_a_twin_and_a_contract_row():
    assert sorted(TWINS) == _on("i2c")
    assert sorted(CONTRACT) == _on("i2c")


def test_every_sensor_read_on_request_has_a_bench_row():
    names = [n for n, _ in ROWS]
    assert len(names) == len(set(names)), "a bench row twice"
    assert sorted(names) == sorted(set(SENSORS) - NO_BENCH_ROW)
    assert sorted(n for n in NO_BENCH_ROW if SENSORS[n][0] not in ("uart", "counter")) == []


@pytest.mark.parametrize("name", sorted(SENSORS))
def test_each_row_is_complete(name):
    bus, addrs, baud, keys, make = SENSORS[name]
    assert bus in ("i2c", "modbus", "uart", "counter")
    # an I2C chip has addresses and an "addr" setting; a Modbus meter a slave id
    assert (addrs is not None) == (bus == "i2c") == ("addr" in keys)
    assert (bus == "modbus") == ("slave" in keys)
    assert all(0x08 <= a <= 0x77 for a in addrs or ())
    assert baud is None or bus == "uart"
    assert callable(make)
    # its driver exists, and an I2C chip has its test file
    assert os.path.isfile(os.path.join(ROOT, "drivers", name + ".py"))
    if bus == "i2c":
        assert os.path.isfile(os.path.join(ROOT, "tests", "test_drv_%s.py" % name))
