# The I2C drivers and their chip twins under MicroPython (and CPython): values
# read back through the emulated bus, and one fault per driver, typed and
# recovered from. The full matrix is in tests/test_drv_<chip>.py, one file per chip.
from hil.buses.i2c import EmulatedI2C
from drivers.errors import BusTimeout, ChipIdError, CRCError, NackError, RangeError


def _no_sleep(ms):
    pass


def _raises(cls, f):
    try:
        f()
    except cls as e:
        assert e.kind == cls.kind, e.kind
        return e
    raise AssertionError("no " + cls.__name__)


def _make(model, driver, addr, init=True, **kw):
    """The twin at addr on a fresh bus, the driver over it (init() done)."""
    bus = EmulatedI2C()
    bus.attach(addr, model)
    d = driver(bus, addr, **kw)
    if init:
        d.init()
    return bus, d


def _each(bus, m, d, values, tx):
    """Set each value on the twin, read it through the driver in tx bus
    transactions; yields (value set, reading)."""
    for v in values:
        m.set(*v)
        n = bus.transactions
        got = d.read()
        assert bus.transactions - n == tx, (v, bus.transactions - n)
        yield v, got


def test_ina226_read_back_and_silent_reset():
    from hil.twins.ina226 import INA226Model
    from drivers.ina226 import INA226
    m = INA226Model(shunt_milliohm=2)
    bus, d = _make(m, INA226, 0x40, shunt_milliohm=2, current_lsb_ua=1000)
    assert d.calibration == 2560
    m.set(11980, 10000)
    assert d.read() == (11980, 10000, 119800)           # the datasheet's example
    for (v, i), got in _each(bus, m, d, ((0, 0), (5000, -1234), (36000, 32766), (12345, 678)), 4):
        assert 0 <= v - got[0] <= 1 and abs(got[1] - i) <= 3, (v, i, got)
    m.silent_reset()
    assert d.read() == got and d.resets == 1 and m.cal == 2560
    m.set(current_mA=40000)                             # 80 mV over 2 mohm: beyond 32767 LSB
    _raises(RangeError, d.read)
    m.die_id = 0x2270
    e = _raises(ChipIdError, d.init)
    assert "INA260" in e.msg


def test_sht4x_read_back_and_crc():
    from hil.twins.sht4x import SHT4xModel
    from drivers.sht4x import SHT4x
    m = SHT4xModel()
    bus, d = _make(m, SHT4x, 0x44, False, sleep_ms=_no_sleep)
    for v, got in _each(bus, m, d, ((2500, 5000), (-4500, 0), (13000, 10000), (-1, 1),
                                    (4321, 8765)), 2):
        assert got == v
    m.corrupt_crc_next = "rh"
    e = _raises(CRCError, d.read)
    assert "humidity" in e.msg
    bus.short_read(0x44, 2)
    _raises(CRCError, d.read)
    assert d.read() == (4321, 8765)
    assert d.serial() == 0x0BADC0DE


def test_bme280_datasheet_read_back_and_stuck_busy():
    from hil.twins.bme280 import BME280Model, DATASHEET_CAL
    from drivers.bme280 import BME280, compensate_p, compensate_t
    assert compensate_t(DATASHEET_CAL, 519888) == (2508, 128422)
    assert compensate_p(DATASHEET_CAL, 415148, 128422) == 25767233
    m = BME280Model()
    bus, d = _make(m, BME280, 0x76, sleep_ms=_no_sleep)
    for v, got in _each(bus, m, d, ((2500, 101325, 5000), (-4000, 30000, 0),
                                    (8500, 110000, 10000), (-1, 95555, 1234)), 3):
        assert got[:2] == v[:2] and abs(got[2] - v[2]) <= 1, (v, got)
    m.stuck_busy = True
    e = _raises(BusTimeout, d.read)
    assert "stuck busy bit" in e.msg
    m.stuck_busy = False
    m.reset_next_measurement = True
    assert d.read()[:2] == (-1, 95555) and d.resets == 1
    m.chip_id = 0x58
    e = _raises(ChipIdError, d.init)
    assert "BMP280" in e.msg


def test_adxl345_read_back_rms_and_short_read():
    from hil.twins.adxl345 import ADXL345Model
    from drivers.adxl345 import ADXL345
    m = ADXL345Model()
    bus, d = _make(m, ADXL345, 0x53, sleep_ms=_no_sleep)
    for v, got in _each(bus, m, d, ((0, 0, 1000), (-16000, 15996, 4), (123, -456, 789)), 1):
        for a, b in zip(got, v):
            assert abs(a - b) <= 2, (v, got)
    bus.short_read(0x53, 5)
    _raises(CRCError, d.read)
    k = [0]

    def square():
        k[0] += 1
        return (0, 0, 1200 if k[0] % 2 else 800)
    m.source = square
    assert d.rms_mg(20) == 199                          # 200 mg -> 51 counts


def test_bh1750_read_back_and_range():
    from hil.twins.bh1750 import BH1750Model
    from drivers.bh1750 import BH1750
    m = BH1750Model()
    bus, d = _make(m, BH1750, 0x23, sleep_ms=_no_sleep)
    for v, got in _each(bus, m, d, ((0,), (833,), (100000,), (54611667,)), 2):
        assert abs(got - v[0]) <= 417
    m.set(60000000)
    _raises(RangeError, d.read)
    bus.fail_next(0x23)
    e = _raises(NackError, d.read)
    assert e.errno == 5
    m.set(5000000)
    assert d.read() == 5000000
