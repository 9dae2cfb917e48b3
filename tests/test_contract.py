"""Contract tests: every I2C sensor the board names, read through its driver
on whatever the plugin points the suite at (hil/harness/pytest_plugin.py):

    pytest tests/test_contract.py                                   twins, in process
    pytest tests/test_contract.py --backend micropython-unix        twins on MicroPython
    pytest tests/test_contract.py --backend linux --board boards/rpi4.py    a bench

They assert what holds on real chips as on twins: the chip answers at its
address and is the chip the board says, each value is in its physical range,
repeated reads agree within a tolerance. Exact values and fault injection
are marked and run only where twins stand behind the bus.

CONTRACT is keyed by driver name (a board sensor's "type"); a new driver is
one row:

    "name": {
        "make": lambda bus, sensor: driver,      # constructed and initialised, ready to read
        "identify": check(driver, bus),          # raises / asserts unless the chip is this one
        "fields": lambda sensor: ((name, lo, hi, steady), ...),
                                                 # read() -> one value per field, each within
                                                 # [lo, hi]; two reads a few ms apart differ by
                                                 # at most `steady` on a bench at rest
    }

A sensor whose driver has no row is skipped with that reason, and on the
emulated backends so is one without a twin in hil/twins/__init__.py.
"""
import errno
import time

import pytest

from drivers.errors import NackError
from hil.harness.pytest_plugin import tally_backend
from hil.twins import TWINS, i2c_buses as twin_buses


# -- the table -------------------------------------------------------------------------

def _ina219(bus, s):
    from drivers.ina219 import INA219
    d = INA219(bus, s["addr"], shunt_milliohm=s.get("shunt_milliohm", 100))
    d.init()
    return d


def _ina219_identify(d, bus):
    # no ID register: after init() the chip holds the configuration and the
    # calibration written to it, calibration bit 0 reading back as 0
    raw = bytearray(2)
    bus.readfrom_mem_into(d.addr, 0x00, raw)
    assert raw[0] << 8 | raw[1] == 0x399F, "config register 0x%02x%02x" % (raw[0], raw[1])
    bus.readfrom_mem_into(d.addr, 0x05, raw)
    assert raw[0] << 8 | raw[1] == d.calibration, "calibration register 0x%02x%02x" % (raw[0], raw[1])


def _ina219_fields(s):
    ma = 320000 // s.get("shunt_milliohm", 100)        # +-320 mV across the shunt
    return (("bus_mV", 0, 32764, 250), ("current_mA", -ma, ma, 100),
            ("power_mW", 0, 32764 * ma // 1000, 3000))


def _sht3x(bus, s):
    from drivers.sht3x import SHT3x
    return SHT3x(bus, s["addr"])


def _sht3x_identify(d, bus):
    # soft reset (0x30A2) is acknowledged, then a measurement whose two words
    # carry Sensirion's CRC-8 (the driver raises CRCError otherwise)
    bus.writeto(d.addr, b"\x30\xa2")
    time.sleep(0.002)
    d.read()


def _reg16(bus, addr, reg):
    raw = bytearray(2)
    bus.readfrom_mem_into(addr, reg, raw)
    return raw[0] << 8 | raw[1]


def _reg8(bus, addr, reg):
    raw = bytearray(1)
    bus.readfrom_mem_into(addr, reg, raw)
    return raw[0]


def _inited(d):
    d.init()
    return d


def _ina226(bus, s):
    from drivers.ina226 import INA226
    return _inited(INA226(bus, s["addr"], shunt_milliohm=s.get("shunt_milliohm", 100),
                          current_lsb_ua=s.get("current_lsb_ua", 25)))


def _ina226_identify(d, bus):
    assert _reg16(bus, d.addr, 0xFE) == 0x5449, "manufacturer id"     # "TI"
    assert _reg16(bus, d.addr, 0xFF) == 0x2260, "die id"


def _ina226_fields(s):
    ma = 81920 // s.get("shunt_milliohm", 100)         # +-81.92 mV across the shunt
    return (("bus_mV", 0, 40960, 250), ("current_mA", -ma, ma, 100),
            ("power_mW", 0, 40960 * ma // 1000, 3000))


def _sht4x(bus, s):
    from drivers.sht4x import SHT4x
    return SHT4x(bus, s["addr"])


def _bme280(bus, s):
    from drivers.bme280 import BME280
    return _inited(BME280(bus, s["addr"]))


def _adxl345(bus, s):
    from drivers.adxl345 import ADXL345
    return _inited(ADXL345(bus, s["addr"]))


class _One:
    """A driver whose read() is one value, read as a one-field tuple."""

    def __init__(self, d):
        self.d = d
        self.addr = d.addr

    def read(self):
        return (self.d.read(),)


def _bh1750(bus, s):
    from drivers.bh1750 import BH1750
    return _One(_inited(BH1750(bus, s["addr"])))


def _bh1750_identify(d, bus):
    # no id register: power-on (0x01) is acknowledged and a measurement comes back
    bus.writeto(d.addr, b"\x01")
    assert d.read()[0] >= 0


_G16 = ("-16 g", -16000, 16000, 50)


CONTRACT = {
    "ina219": {"make": _ina219, "identify": _ina219_identify, "fields": _ina219_fields},
    "ina226": {"make": _ina226, "identify": _ina226_identify, "fields": _ina226_fields},
    "sht4x": {"make": _sht4x, "identify": lambda d, bus: d.serial(),   # CRC-checked serial number
              "fields": lambda s: (("temp_cC", -4000, 12500, 50), ("rh_cP", 0, 10000, 300))},
    "bme280": {"make": _bme280,
               "identify": lambda d, bus: _reg8(bus, d.addr, 0xD0) == 0x60 or pytest.fail(
                   "chip id 0x%02x, not a BME280's 0x60" % _reg8(bus, d.addr, 0xD0)),
               "fields": lambda s: (("temp_cC", -4000, 8500, 50), ("press_Pa", 30000, 110000, 50),
                                    ("rh_cP", 0, 10000, 300))},
    "adxl345": {"make": _adxl345,
                "identify": lambda d, bus: _reg8(bus, d.addr, 0x00) == 0xE5 or pytest.fail(
                    "DEVID 0x%02x, not an ADXL345's 0xE5" % _reg8(bus, d.addr, 0x00)),
                "fields": lambda s: (("x_mg",) + _G16[1:], ("y_mg",) + _G16[1:], ("z_mg",) + _G16[1:])},
    "bh1750": {"make": _bh1750, "identify": _bh1750_identify,
               "fields": lambda s: (("illuminance_mlx", 0, 54612500, 50000),)},
    "sht3x": {"make": _sht3x, "identify": _sht3x_identify,
              "fields": lambda s: (("temp_cC", -4500, 13000, 50), ("rh_cP", 0, 10000, 300))},
}


# -- parametrisation over the board ------------------------------------------------------

def pytest_generate_tests(metafunc):
    if "sensor" in metafunc.fixturenames:
        board = tally_backend(metafunc.config).board
        sensors = [s for s in board["sensors"] if board["buses"][s["bus"]]["kind"] == "i2c"]
        metafunc.parametrize("sensor", sensors,
                             ids=["%s@%s:0x%02x" % (s["type"], s["bus"], s["addr"]) for s in sensors])


@pytest.fixture
def row(sensor, backend):
    r = CONTRACT.get(sensor["type"])
    if r is None:
        pytest.skip("no contract row for driver %r (add one to CONTRACT)" % sensor["type"])
    if backend.twins and sensor["type"] not in TWINS:
        pytest.skip("no twin for driver %r in hil/twins/__init__.py" % sensor["type"])
    return r


@pytest.fixture
def bus(sensor, i2c_buses):
    return i2c_buses[sensor["bus"]]


@pytest.fixture
def drv(row, bus, sensor):
    return row["make"](bus, sensor)


def readings(drv, n):
    return [drv.read() for _ in range(n)]


# -- on every backend --------------------------------------------------------------------

def test_sensor_answers_the_scan(sensor, row, bus):
    assert sensor["addr"] in bus.scan()


def test_chip_is_the_one_the_board_names(sensor, row, bus, drv):
    row["identify"](drv, bus)


def test_values_are_in_physical_range(sensor, row, drv):
    fields = row["fields"](sensor)
    for values in readings(drv, 3):
        assert len(values) == len(fields)
        for (name, lo, hi, _), v in zip(fields, values):
            assert lo <= v <= hi, "%s = %d, outside %d..%d" % (name, v, lo, hi)


def test_repeated_reads_are_stable(sensor, row, drv):
    rs = readings(drv, 5)
    for k, (name, lo, hi, steady) in enumerate(row["fields"](sensor)):
        vals = [r[k] for r in rs]
        assert max(vals) - min(vals) <= steady, "%s spread %r beyond %d" % (name, vals, steady)


# -- where twins stand behind the bus ------------------------------------------------------

@pytest.mark.emulator_exact
def test_readings_equal_the_in_process_twins(sensor, row, board, drv):
    # the same twins (same seeds) in this process: a backend that serves them
    # from elsewhere (the MicroPython unix port) must give bit-identical readings
    here = row["make"](twin_buses(board)[sensor["bus"]], sensor)
    assert readings(drv, 4) == readings(here, 4)


@pytest.mark.fault_injection
@pytest.mark.parametrize("fault", [errno.EIO, errno.ETIMEDOUT], ids=["EIO", "ETIMEDOUT"])
def test_a_bus_fault_is_typed_and_the_driver_recovers(sensor, row, bus, drv, fault):
    bus.fail_next(sensor["addr"], 1, fault)
    with pytest.raises(OSError) as ei:
        drv.read()
    assert ei.value.kind == ("timeout" if fault == errno.ETIMEDOUT else "nack")
    assert ei.value.errno == fault
    test_values_are_in_physical_range(sensor, row, drv)


@pytest.mark.fault_injection
def test_an_absent_chip_is_a_nack_and_comes_back(sensor, row, bus, drv):
    bus.absent(sensor["addr"])
    assert sensor["addr"] not in bus.scan()
    with pytest.raises(NackError):
        drv.read()
    bus.absent(sensor["addr"], False)
    test_values_are_in_physical_range(sensor, row, drv)
