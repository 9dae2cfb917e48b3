"""INA226, SHT4x, BME280, ADXL345 and BH1750: datasheet vectors, read-back
through the chip twins, every fault kind typed and recovered from, and bus
transactions per reading."""
import errno
import math

import pytest
from hypothesis import given, settings, strategies as st

from drivers import bme280 as bme
from drivers.adxl345 import ADXL345, RMS, Vibration, isqrt
from drivers.bh1750 import BH1750
from drivers.bme280 import BME280
from drivers.crc import crc8_sensirion
from drivers.errors import BusTimeout, ChipIdError, CRCError, NackError, RangeError
from drivers.ina226 import INA226
from drivers.sht4x import SHT4x
from hil.adxl345 import ADXL345Model
from hil.bh1750 import BH1750Model
from hil.bme280 import DATASHEET_CAL, BME280Model, calib_bytes
from hil.i2c import EmulatedI2C
from hil.ina226 import INA226Model
from hil.sht3x import SHT3xModel
from hil.sht4x import SHT4xModel

pytestmark = pytest.mark.emulator_exact


class Sleeps(list):
    def __call__(self, ms):
        self.append(ms)


def rig(addr, model, driver, init=True, **kw):
    bus = EmulatedI2C()
    bus.attach(addr, model)
    slept = Sleeps()
    if driver is not INA226:
        kw["sleep_ms"] = slept
    drv = driver(bus, addr, **kw)
    if init and hasattr(drv, "init"):
        drv.init()
    return bus, model, drv, slept


def per_reading(bus, drv):
    before = bus.transactions
    value = drv.read()
    return value, bus.transactions - before


def short_at(bus, addr, reg, nbytes):
    """Cut the next read of register `reg` (pointer reads) after nbytes bytes."""
    orig = bus.readfrom_mem_into

    def cut(a, memaddr, buf, addrsize=8):
        if a == addr and memaddr == reg:
            bus.short_read(addr, nbytes)
            bus.readfrom_mem_into = orig
        return orig(a, memaddr, buf, addrsize)
    bus.readfrom_mem_into = cut


def fail_kth(bus, k, err=errno.EIO):
    """Make the k-th next transaction (0-based) fail with OSError(err)."""
    names = ("writeto", "readfrom_into", "readfrom_mem_into", "writeto_mem")
    orig = dict((n, getattr(bus, n)) for n in names)
    count = [0]

    def wrap(n):
        def f(*a, **kw):
            i = count[0]
            count[0] += 1
            if i == k:
                for m in names:
                    setattr(bus, m, orig[m])
                bus.transactions += 1
                raise OSError(err, "injected")
            return orig[n](*a, **kw)
        return f
    for n in names:
        setattr(bus, n, wrap(n))


def assert_typed(exc, cls, kind, name):
    e = exc.value
    assert type(e) is cls or isinstance(e, cls)
    assert isinstance(e, OSError) and e.kind == kind
    assert name in str(e)


# the emulated bus: short reads ------------------------------------------------------

class Echo:
    def write(self, data):
        pass

    def read(self, n):
        return bytes(range(1, n + 1))


def test_short_read_delivers_nbytes_then_ones_for_n_reads():
    bus = EmulatedI2C()
    bus.attach(0x10, Echo())
    buf = bytearray(4)
    bus.short_read(0x10, 1, n=2)
    bus.readfrom_into(0x10, buf)
    assert buf == b"\x01\xff\xff\xff"
    bus.readfrom_mem_into(0x10, 0, buf)
    assert buf == b"\x01\xff\xff\xff"
    bus.readfrom_into(0x10, buf)
    assert buf == b"\x01\x02\x03\x04"
    bus.short_read(0x10, 0)
    bus.short_read(0x10, 0, n=0)          # cleared before it fired
    bus.readfrom_into(0x10, buf)
    assert buf == b"\x01\x02\x03\x04"


def test_chip_id_error_is_a_nack():
    e = ChipIdError("X@0x10: id")
    assert isinstance(e, NackError) and e.kind == "nack" and isinstance(e, OSError)


# INA226 -------------------------------------------------------------------------------

def ina(bus_mV=12000, cur_mA=500, shunt=100, lsb=25, **model_kw):
    m = INA226Model(shunt_milliohm=shunt, **model_kw)
    m.set(bus_mV=bus_mV, current_mA=cur_mA)
    return rig(0x40, m, INA226, shunt_milliohm=shunt, current_lsb_ua=lsb)


def test_ina226_datasheet_example():
    # SBOS547 "Configure/Measure/Calculate Example": 10 A through 2 mohm, VBUS
    # 11.98 V, current LSB 1 mA: CAL 0x0A00, shunt 0x1F40, bus 0x2570,
    # current 0x2710, power 0x12B8 (4792 x 25 mW = 119.8 W)
    bus, m, drv, _ = ina(11980, 10000, shunt=2, lsb=1000)
    assert drv.calibration == 0x0A00 == m.cal
    assert drv.read() == (11980, 10000, 119800)
    assert [m.register(r) for r in (1, 2, 4, 3)] == [0x1F40, 0x2570, 0x2710, 0x12B8]


@pytest.mark.parametrize("shunt, lsb, cal", [(2, 1000, 2560), (100, 25, 2048), (100, 100, 512),
                                             (10, 250, 2048), (1, 200, 25600), (3, 1000, 1706)])
def test_ina226_calibration_formula(shunt, lsb, cal):
    # cal = trunc(0.00512 / (lsb[A] * R[ohm]))
    assert INA226(EmulatedI2C(), shunt_milliohm=shunt, current_lsb_ua=lsb).calibration == cal
    assert cal == int(0.00512 / (lsb * 1e-6 * shunt * 1e-3) + 1e-9)


def test_ina226_rejects_impossible_calibration():
    for shunt, lsb in ((1, 100), (100000, 1000), (0, 25), (100, 0)):
        with pytest.raises(ValueError):
            INA226(EmulatedI2C(), shunt_milliohm=shunt, current_lsb_ua=lsb)


def test_ina226_init_checks_ids_and_configures():
    bus, m, drv, _ = ina()
    assert m.config == 0x4527 and m.cal == 2048
    assert bus.transactions == 4          # manufacturer, die id, config, calibration


@pytest.mark.parametrize("kw, words", [
    ({"die_id": 0x2270}, ["die id", "0x0227", "INA260", "want 0x0226"]),
    ({"die_id": 0x3220}, ["INA3221"]),
    ({"manufacturer": 0x0000}, ["manufacturer id reads 0x0000", "unknown chip", "0x5449"]),
    ({"manufacturer": 0xFFFF}, ["bus floating"]),
])
def test_ina226_wrong_chip_names_what_it_found(kw, words):
    m = INA226Model(**kw)
    bus = EmulatedI2C()
    bus.attach(0x40, m)
    with pytest.raises(ChipIdError) as ei:
        INA226(bus).init()
    assert_typed(ei, NackError, "nack", "INA226@0x40")
    for w in words:
        assert w in str(ei.value)


def test_ina226_die_revision_is_not_checked():
    bus, m, drv, _ = ina(die_id=0x2261)
    assert drv.read() == (12000, 500, 6000)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 36000), st.integers(-3000000, 3000000),
       st.sampled_from([(100, 25), (2, 1000), (10, 250), (20, 100)]))
def test_ina226_reads_back_within_one_lsb(bus_mV, cur_uA, cfg):
    shunt, lsb = cfg
    fs_uA = min(81920000 // shunt, 32766 * lsb)     # +-81.92 mV shunt, 16-bit current
    lim = fs_uA // 1000 - 1
    cur_mA = max(-lim, min(lim, cur_uA // 1000))
    bus, m, drv, _ = ina(bus_mV, cur_mA, shunt, lsb)
    (v, i, p), n = per_reading(bus, drv)
    assert n == 4
    assert 0 <= bus_mV - v <= 1                     # bus LSB 1.25 mV, truncated by the ADC
    step_uA = 2500 // shunt + 1                     # shunt LSB 2.5 uV over R
    err_i = (lsb + step_uA) // 1000 + 1
    assert abs(i - cur_mA) <= err_i
    err_p = (25 * lsb + abs(cur_mA) * 2 + bus_mV * err_i) // 1000 + 2
    assert abs(p - abs(cur_mA) * bus_mV // 1000) <= err_p


def test_ina226_current_register_full_scale_is_a_range_error():
    bus, m, drv, _ = ina(12000, 40000, shunt=2, lsb=1000)   # 80 mV: 40000 LSB > 32767
    with pytest.raises(RangeError) as ei:
        drv.read()
    assert_typed(ei, RangeError, "range", "INA226@0x40")
    assert "full scale (32767)" in str(ei.value)
    m.set(current_mA=-41000)                        # the shunt ADC saturates too
    with pytest.raises(RangeError):
        drv.read()
    m.set(current_mA=32000)
    assert drv.read() == (12000, 32000, 384000)


def test_ina226_silent_reset_detected_recalibrated_and_counted():
    bus, m, drv, _ = ina(24000, 750)
    assert drv.read() == (24000, 750, 18000)
    m.silent_reset()
    assert m.cal == 0 and m.config == 0x4127
    value, n = per_reading(bus, drv)
    assert value == (24000, 750, 18000)             # no false 0 mA on the reading that finds it
    assert n == 5                                   # cal, config+cal writes, bus, shunt
    assert drv.resets == 1 and m.cal == 2048 and m.config == 0x4527
    assert per_reading(bus, drv) == ((24000, 750, 18000), 4)
    assert drv.resets == 1
    bus.writeto_mem(0x40, 0x00, b"\x80\x00")        # config bit 15: the chip's own reset
    assert drv.read() == (24000, 750, 18000) and drv.resets == 2


def test_ina226_reset_with_failing_reconfig_counted_once():
    bus, m, drv, _ = ina(24000, -750)
    m.silent_reset()
    fail_kth(bus, 1)                                # the config write
    with pytest.raises(NackError):
        drv.read()
    assert drv.resets == 0 and m.cal == 0
    assert drv.read() == (24000, -750, 18000) and drv.resets == 1


@pytest.mark.parametrize("err, cls, kind", [(errno.EIO, NackError, "nack"),
                                            (errno.ETIMEDOUT, BusTimeout, "timeout")])
def test_ina226_nack_or_timeout_on_each_transaction_then_recovers(err, cls, kind):
    bus, m, drv, _ = ina(5000, -120)
    for k in range(4):
        fail_kth(bus, k, err)
        with pytest.raises(cls) as ei:
            drv.read()
        assert_typed(ei, cls, kind, "INA226@0x40")
        assert ei.value.errno == err
        assert drv.read() == (5000, -120, 600)


def test_ina226_absent_then_back():
    bus, m, drv, _ = ina()
    bus.absent(0x40)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV
    with pytest.raises(NackError):
        INA226(bus).init()
    bus.absent(0x40, False)
    assert drv.read() == (12000, 500, 6000)


# A read cut short: the master clocks in 0xFF for the bytes not sent. Cut
# before the first byte (0xFFFF), every register but current holds a value no
# INA226 gives; cut after the high byte, only calibration is caught (it must
# read back as written): bus 0x2580 -> 0x25FF and power 0x2580 -> 0x25FF are
# possible values, as is any current (0x4E20 -> 0x4EFF). The table pins what is and is not caught.
@pytest.mark.parametrize("reg, nbytes, outcome", [
    (0x05, 0, "calibration reads 0xffff, 0x0800 written"),
    (0x05, 1, "calibration reads 0x08ff, 0x0800 written"),
    (0x02, 0, "bus voltage 0xffff has bit 15 set"),
    (0x02, 1, ((0x25FF * 5 + 2) // 4, 500, 6000)),
    (0x04, 0, (12000, 0, 6000)),                    # current 0xFFFF = -1 LSB: -25 uA
    (0x04, 1, (12000, (0x4EFF * 25 + 500) // 1000, 6000)),     # 0x4E20 -> 0x4EFF
    (0x03, 0, "power 0xffff beyond current x bus"),
    (0x03, 1, (12000, 500, (0x25FF * 625 + 500) // 1000)),
])
def test_ina226_short_reads(reg, nbytes, outcome):
    bus, m, drv, _ = ina(12000, 500)
    short_at(bus, 0x40, reg, nbytes)
    if isinstance(outcome, tuple):
        assert drv.read() == outcome
    else:
        with pytest.raises(CRCError) as ei:
            drv.read()
        assert_typed(ei, CRCError, "crc", "INA226@0x40")
        assert outcome in str(ei.value)
    assert drv.read() == (12000, 500, 6000)


# SHT4x --------------------------------------------------------------------------------

def sht(t=2500, rh=5000):
    m = SHT4xModel()
    m.set(temp_cC=t, rh_cP=rh)
    return rig(0x44, m, SHT4x)


def test_sht4x_crc_datasheet_example():
    assert crc8_sensirion(b"\xbe\xef") == 0x92
    assert SHT3xModel.frame(0xBEEF, 0xBEEF)[2] == 0x92


@pytest.mark.parametrize("st_, srh, want", [
    (0x0000, 0x0000, (-4500, 0)),                    # RH -6 % clipped to 0
    (0xFFFF, 0xFFFF, (13000, 10000)),                # RH 119 % clipped to 100
    (0x6666, 0x8000, (-4500 + 17500 * 0x6666 // 65535, -600 + 12500 * 0x8000 // 65535)),
    (0x0000, 3146, (-4500, 0)),                       # 600.07 -> 0.00 %RH
    (0x0000, 55573, (-4500, 9999)),
    (0x0000, 55574, (-4500, 10000)),
])
def test_sht4x_datasheet_conversion_and_clipping(st_, srh, want):
    bus, m, drv, _ = sht()
    m.frame = lambda t, rh: SHT3xModel.frame(st_, srh)     # the chip answers these raw words
    assert drv.read() == want


@settings(max_examples=100, deadline=None)
@given(st.integers(-4500, 13000), st.integers(0, 10000))
def test_sht4x_reads_back_exactly(t, rh):
    bus, m, drv, slept = sht(t, rh)
    assert per_reading(bus, drv) == ((t, rh), 2)     # command write + 6-byte read
    assert slept == [9]


def test_sht4x_serial_and_reset():
    bus, m, drv, slept = sht()
    m.serial = 0x12345678
    assert drv.serial() == 0x12345678
    drv.reset()
    assert slept == [1, 1]
    buf = bytearray(6)
    with pytest.raises(OSError) as ei:               # reset dropped nothing pending: NACK
        bus.readfrom_into(0x44, buf)
    assert ei.value.errno == errno.EIO
    with pytest.raises(OSError):
        bus.writeto(0x44, b"\x24\x00")               # an SHT3x command: not an SHT4x one


@pytest.mark.parametrize("which, word", [(True, "temperature"), ("rh", "humidity")])
def test_sht4x_crc_corruption_is_a_crc_error_then_recovers(which, word):
    bus, m, drv, _ = sht(-1000, 9000)
    m.corrupt_crc_next = which
    with pytest.raises(CRCError) as ei:
        drv.read()
    assert_typed(ei, CRCError, "crc", "SHT4x@0x44")
    assert word in str(ei.value)
    assert drv.read() == (-1000, 9000)


@pytest.mark.parametrize("nbytes", range(6))
@pytest.mark.parametrize("value", [(2500, 5000), (-4500, 0), (13000, 10000), (3333, 6666)])
def test_sht4x_short_read_is_a_crc_error(nbytes, value):
    bus, m, drv, _ = sht(*value)
    bus.short_read(0x44, nbytes)
    with pytest.raises(CRCError) as ei:
        drv.read()
    assert_typed(ei, CRCError, "crc", "SHT4x@0x44")
    assert drv.read() == value


def test_sht4x_nack_timeout_absent_then_recovers():
    bus, m, drv, _ = sht(4321, 1234)
    for k, err, cls in ((0, errno.EIO, NackError), (1, errno.EIO, NackError),
                        (1, errno.ETIMEDOUT, BusTimeout)):
        fail_kth(bus, k, err)
        with pytest.raises(cls) as ei:
            drv.read()
        assert ei.value.errno == err and "SHT4x@0x44" in str(ei.value)
        assert drv.read() == (4321, 1234)
    bus.absent(0x44)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV
    bus.absent(0x44, False)
    assert drv.read() == (4321, 1234)


# BME280 -------------------------------------------------------------------------------

def bmp(t=2500, p=101325, h=5000, **model_kw):
    m = BME280Model(**model_kw)
    m.set(temp_cC=t, press_Pa=p, rh_cP=h)
    return rig(0x76, m, BME280)


def test_bme280_datasheet_compensation_example():
    # dig_T1..3 = 27504, 26435, -1000; dig_P1..9 = 36477, -10685, 3024, 2855,
    # 140, -7, 15500, -14600, 6000; adc_T 519888, adc_P 415148:
    # t_fine 128422, T 25.08 C; p 100653.25 Pa from the 64-bit integer code
    # (Q24.8 25767233; the example's floating-point column gives 100653.27)
    c = DATASHEET_CAL
    assert bme.compensate_t(c, 519888) == (2508, 128422)
    assert bme.compensate_p(c, 415148, 128422) == 25767233
    assert bme.convert(c, 519888, 415148, 0x8000)[:2] == (2508, 100653)
    # the same through the driver, the chip answering those raw values
    bus, m, drv, _ = bmp()
    m.raw = lambda *a: (519888, 415148, 30000)
    assert drv.read() == (2508, 100653, bme.convert(c, 519888, 415148, 30000)[2])


def test_bme280_double_formula_agrees():
    # the datasheet's double-precision formulas, within their rounding
    c = DATASHEET_CAL
    for adc_t, adc_p, adc_h in ((519888, 415148, 30000), (400000, 600000, 25000),
                                (650000, 350000, 35000)):
        t, tf = bme.compensate_t(c, adc_t)
        v1 = (adc_t / 16384 - c[0] / 1024) * c[1]
        v2 = (adc_t / 131072 - c[0] / 8192) ** 2 * c[2]
        assert abs(t - (v1 + v2) / 51.2) <= 1
        tfd = v1 + v2
        v1 = tfd / 2 - 64000
        v2 = v1 * v1 * c[8] / 32768 + v1 * c[7] * 2
        v2 = v2 / 4 + c[6] * 65536
        v1 = (c[5] * v1 * v1 / 524288 + c[4] * v1) / 524288
        v1 = (1 + v1 / 32768) * c[3]
        p = (1048576 - adc_p - v2 / 4096) * 6250 / v1
        p += (c[11] * p * p / 2147483648 + p * c[10] / 32768 + c[9]) / 16
        assert abs(bme.compensate_p(c, adc_p, tf) / 256 - p) < 0.5
        h = tfd - 76800
        h = (adc_h - (c[15] * 64 + c[16] / 16384 * h)) * (
            c[13] / 65536 * (1 + c[17] / 67108864 * h * (1 + c[14] / 67108864 * h)))
        h = min(100, max(0, h * (1 - c[12] * h / 524288)))
        assert abs(bme.compensate_h(c, adc_h, tf) / 1024 - h) < 0.05


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(0, 65535), *[st.integers(-32768, 32767)] * 2,
                 st.integers(0, 65535), *[st.integers(-32768, 32767)] * 8,
                 st.integers(0, 255), st.integers(-32768, 32767), st.integers(0, 255),
                 st.integers(-2048, 2047), st.integers(-2048, 2047), st.integers(-128, 127)))
def test_bme280_calibration_bytes_parse_back(cal):
    assert bme.calibration(*calib_bytes(cal)) == cal


def test_bme280_init_reads_id_and_calibration_twice():
    bus, m, drv, _ = bmp()
    assert drv.cal == DATASHEET_CAL
    assert bus.transactions == 6                    # id, 2 x (0x88, 0xE1), sleep + filter off


@settings(max_examples=60, deadline=None)
@given(st.integers(-4000, 8500), st.integers(30000, 110000), st.integers(0, 10000))
def test_bme280_reads_back_within_one_lsb(t, p, h):
    bus, m, drv, slept = bmp(t, p, h)
    (rt, rp, rh), n = per_reading(bus, drv)
    assert n == 3                                   # trigger, status poll, one 8-byte burst
    assert abs(rt - t) <= 1 and abs(rp - p) <= 1 and abs(rh - h) <= 1
    assert slept == [47]


def test_bme280_reads_back_on_a_grid():
    # T and p exactly (an ADC code is 0.0025 C and 0.16 Pa); RH within 0.01 %:
    # one humidity code is about 0.0055 %RH with this calibration
    bus, m, drv, _ = bmp()
    for t in range(-4000, 8501, 1250):
        for p in range(30000, 110001, 16000):
            for h in (0, 1, 2500, 5000, 9999, 10000):
                m.set(t, p, h)
                rt, rp, rh = drv.read()
                assert (rt, rp) == (t, p) and abs(rh - h) <= 1


@pytest.mark.parametrize("chip_id, words", [(0x58, ["0x58", "BMP280 (no humidity)"]),
                                            (0x56, ["BMP280 sample"]), (0x57, ["BMP280 sample"]),
                                            (0x61, ["BME680"]), (0x42, ["unknown chip"]),
                                            (0xFF, ["bus floating"])])
def test_bme280_wrong_chip_id_names_it(chip_id, words):
    bus = EmulatedI2C()
    bus.attach(0x76, BME280Model(chip_id=chip_id))
    drv = BME280(bus, sleep_ms=lambda ms: None)
    with pytest.raises(ChipIdError) as ei:
        drv.read()                                  # read() inits first
    assert_typed(ei, NackError, "nack", "BME280@0x76")
    assert "want 0x60" in str(ei.value)
    for w in words:
        assert w in str(ei.value)


def test_bme280_busy_bit_is_polled_then_stuck_is_a_timeout():
    bus, m, drv, slept = bmp(2000, 95000, 4000)
    m.busy_polls = 3
    assert per_reading(bus, drv) == ((2000, 95000, 4000), 6)   # 4 status reads
    assert slept == [47, 2, 2, 2]
    m.stuck_busy = True
    del slept[:]
    with pytest.raises(BusTimeout) as ei:
        drv.read()
    assert_typed(ei, BusTimeout, "timeout", "BME280@0x76")
    assert "stuck busy bit" in str(ei.value)
    assert slept == [47] + [2] * bme.POLLS
    m.stuck_busy = False
    assert drv.read() == (2000, 95000, 4000)


def test_bme280_reset_at_measurement_is_measured_again_and_counted():
    bus, m, drv, _ = bmp(-1234, 80000, 7777)
    m.reset_next_measurement = True
    assert per_reading(bus, drv) == ((-1234, 80000, 7777), 6)
    assert drv.resets == 1 and m.resets == 1
    m.silent_reset()                                # between readings: the trigger restores all
    assert per_reading(bus, drv) == ((-1234, 80000, 7777), 3)
    measure = m._measure

    def always():
        m.reset_next_measurement = True
        measure()
    m._measure = always                             # a brown-out at every measurement
    with pytest.raises(BusTimeout) as ei:
        drv.read()
    assert "reset values" in str(ei.value) and drv.resets == 3
    m._measure = measure
    assert drv.read() == (-1234, 80000, 7777)


@pytest.mark.parametrize("nbytes", range(8))
def test_bme280_short_burst(nbytes):
    bus, m, drv, _ = bmp(2345, 98765, 4321)
    short_at(bus, 0x76, 0xF7, nbytes)
    if nbytes == 7:
        # only the last humidity byte lost: a value the chip could give
        t, p, h = drv.read()
        assert (t, p) == (2345, 98765) and h != 4321
    else:
        with pytest.raises(CRCError) as ei:
            drv.read()
        assert_typed(ei, CRCError, "crc", "BME280@0x76")
    assert drv.read() == (2345, 98765, 4321)


def test_bme280_short_status_read_is_polled_again():
    bus, m, drv, slept = bmp()
    short_at(bus, 0x76, 0xF3, 0)                    # 0xFF: measuring bit set
    assert drv.read() == (2500, 101325, 5000)
    assert slept == [47, 2]


@pytest.mark.parametrize("reg", [0x88, 0xE1])
def test_bme280_calibration_short_read_fails_init_then_recovers(reg):
    bus = EmulatedI2C()
    bus.attach(0x76, BME280Model())
    drv = BME280(bus, sleep_ms=lambda ms: None)
    short_at(bus, 0x76, reg, 3)
    with pytest.raises(CRCError) as ei:
        drv.init()
    assert "calibration" in str(ei.value)
    assert drv.read() == (2500, 101325, 5000)


def test_bme280_out_of_range_is_a_range_error():
    bus, m, drv, _ = bmp()
    for t, p in ((8600, 100000), (-4100, 100000), (2500, 29000), (2500, 112000)):
        m.set(t, p, 5000)
        with pytest.raises(RangeError) as ei:
            drv.read()
        assert_typed(ei, RangeError, "range", "BME280@0x76")
    m.set(2500, 100000, 5000)
    assert drv.read() == (2500, 100000, 5000)


@pytest.mark.parametrize("err, cls", [(errno.EIO, NackError), (errno.ETIMEDOUT, BusTimeout)])
def test_bme280_failure_on_each_transaction_then_recovers(err, cls):
    bus, m, drv, _ = bmp(1500, 99000, 3000)
    for k in range(3):
        fail_kth(bus, k, err)
        with pytest.raises(cls) as ei:
            drv.read()
        assert ei.value.errno == err and "BME280@0x76" in str(ei.value)
        assert drv.read() == (1500, 99000, 3000)
    bus.absent(0x76)
    with pytest.raises(NackError):
        drv.read()
    bus.absent(0x76, False)
    assert drv.read() == (1500, 99000, 3000)


def test_bme280_model_skips_a_channel_without_oversampling():
    m = BME280Model()
    assert m.raw(2500, 100000, 5000, 2, 0, 0)[1:] == (0x80000, 0x8000)
    assert m.raw(2500, 100000, 5000, 0, 5, 1) == (0x80000, 0x80000, 0x8000)
    # x1 leaves 16 bits: the low 4 of 20 are 0
    assert m.raw(2500, 100000, 5000, 1, 1, 1)[0] % 16 == 0


# ADXL345 ------------------------------------------------------------------------------

def adxl(x=0, y=0, z=1000, **model_kw):
    m = ADXL345Model(**model_kw)
    m.set(x, y, z)
    return rig(0x53, m, ADXL345)


def test_adxl345_init_configures_full_resolution_16g():
    bus, m, drv, _ = adxl()
    assert bus.transactions == 4                    # DEVID, DATA_FORMAT, FIFO_CTL, rate+power
    assert (m.regs[0x31], m.regs[0x38], m.regs[0x2C], m.regs[0x2D]) == (0x0B, 0, 0x0A, 0x08)


@pytest.mark.parametrize("counts, mg", [(256, 1000), (-256, -1000), (1, 4), (2, 8), (3, 12),
                                        (4095, 15996), (-4096, -16000), (0, 0)])
def test_adxl345_scale_256_lsb_per_g(counts, mg):
    assert round(counts * 3.90625) == mg
    bus, m, drv, _ = adxl(0, 0, 0)
    m.set(x_mg=mg)
    assert drv.read_raw()[0] == counts and drv.read()[0] == mg


@settings(max_examples=100, deadline=None)
@given(st.integers(-16000, 15996), st.integers(-16000, 15996), st.integers(-16000, 15996))
def test_adxl345_reads_back_within_one_lsb(x, y, z):
    bus, m, drv, _ = adxl(x, y, z)
    (rx, ry, rz), n = per_reading(bus, drv)
    assert n == 1                                   # one 8-byte burst 0x31..0x38
    assert abs(rx - x) <= 2 and abs(ry - y) <= 2 and abs(rz - z) <= 2   # LSB 3.9 mg


def test_adxl345_clamps_at_16g():
    bus, m, drv, _ = adxl(20000, -20000, 0)
    assert drv.read_raw()[:2] == (4095, -4096)


@pytest.mark.parametrize("chip_id, words", [(0xE6, ["0xe6", "ADXL346"]), (0x00, ["unknown"]),
                                            (0xFF, ["bus floating"])])
def test_adxl345_wrong_devid(chip_id, words):
    bus = EmulatedI2C()
    bus.attach(0x53, ADXL345Model(chip_id=chip_id))
    with pytest.raises(ChipIdError) as ei:
        ADXL345(bus).init()
    assert_typed(ei, NackError, "nack", "ADXL345@0x53")
    for w in words:
        assert w in str(ei.value)


@pytest.mark.parametrize("nbytes", range(8))
def test_adxl345_short_burst_is_a_crc_error(nbytes):
    bus, m, drv, _ = adxl(-300, 250, 1000)
    bus.short_read(0x53, nbytes)
    with pytest.raises(CRCError) as ei:
        drv.read()
    assert_typed(ei, CRCError, "crc", "ADXL345@0x53")
    assert drv.read() == (-301, 250, 1000)


def test_adxl345_silent_reset_reinitialised_and_counted():
    bus, m, drv, slept = adxl(100, 200, -1000)
    m.silent_reset()
    assert per_reading(bus, drv) == ((102, 199, -1000), 5)
    assert drv.resets == 1 and m.regs[0x2D] == 0x08 and slept == [12]
    assert per_reading(bus, drv) == ((102, 199, -1000), 1)


def test_adxl345_nack_timeout_absent_then_recovers():
    bus, m, drv, _ = adxl()
    for err, cls in ((errno.EIO, NackError), (errno.ETIMEDOUT, BusTimeout)):
        bus.fail_next(0x53, 1, err)
        with pytest.raises(cls):
            drv.read()
        assert drv.read() == (0, 0, 1000)
    bus.absent(0x53)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV
    bus.absent(0x53, False)
    assert drv.read() == (0, 0, 1000)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 15, 16, 17, 10 ** 6, 10 ** 12 + 1, 2 ** 64])
def test_isqrt(n):
    r = isqrt(n)
    assert r * r <= n < (r + 1) * (r + 1)


def float_rms_mg(samples):
    n = len(samples)
    mean = [sum(s[i] for s in samples) / n for i in range(3)]
    ms = sum(sum((s[i] - mean[i]) ** 2 for i in range(3)) for s in samples) / n
    return math.sqrt(ms) * 3.90625


def test_rms_known_signals():
    w = RMS()
    assert w.mg() == 0
    for i in range(100):                            # gravity only: no vibration
        w.add(0, 0, 256)
    assert w.mg() == 0
    w.reset()
    for i in range(100):                            # z 1 g +- 0.1 g square wave
        w.add(0, 0, 256 + (26 if i % 2 else -26))
    assert w.mg() == round(26 * 3.90625) == 102
    w.reset()
    for i in range(1000):                           # 0.5 g sine on x: 0.5 / sqrt(2) g
        w.add(round(128 * math.sin(2 * math.pi * i / 50)), 0, 256)
    assert abs(w.mg() - 354) <= 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.integers(-4096, 4095)] * 3), min_size=1, max_size=40))
def test_rms_matches_float(samples):
    w = RMS()
    for s in samples:
        w.add(*s)
    assert abs(w.mg() - float_rms_mg(samples)) <= 1


def test_adxl345_rms_over_a_window_of_reads():
    seq = [(0, 0, 1000 + (200 if i % 2 else -200)) for i in range(32)]
    it = iter(seq)
    bus, m, drv, slept = adxl()
    m.source = lambda: next(it)
    before = bus.transactions
    assert drv.rms_mg(32) == 199                    # 200 mg -> 51 counts -> 199.2 mg
    assert bus.transactions - before == 32 and slept == [10] * 31
    it = iter(seq)
    v = Vibration(drv, 16)
    v.init()
    assert v.read() == 199 and bus.transactions - before == 32 + 4 + 16


# BH1750 -------------------------------------------------------------------------------

def lux(mlx=100000, **kw):
    m = BH1750Model()
    m.set(mlx)
    return rig(0x23, m, BH1750, **kw)


@pytest.mark.parametrize("count, mlx", [(0, 0), (1, 833), (2, 1667), (12, 10000), (120, 100000),
                                        (65534, 54611667)])
def test_bh1750_count_over_1_2(count, mlx):
    assert mlx == round(count / 1.2 * 1000)
    bus, m, drv, _ = lux()
    m._measure = lambda op: setattr(m, "data", count)     # the chip measures this count
    assert drv.read() == mlx


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 54611000))
def test_bh1750_reads_back_within_one_lsb(mlx):
    bus, m, drv, slept = lux(mlx)
    value, n = per_reading(bus, drv)
    assert n == 2 and slept == [180]                # one-time command, then the result
    assert abs(value - mlx) <= 417                  # half of 1 / 1.2 lx


def test_bh1750_continuous_mode_is_one_transaction():
    bus, m, drv, slept = lux(250000, continuous=True)
    assert slept == [180] and m.mode == 0x10
    assert per_reading(bus, drv) == (250000, 1)
    m.set(1000000)
    assert drv.read() == 1000000


def test_bh1750_silent_reset():
    bus, m, drv, _ = lux(300000)
    m.silent_reset()
    assert drv.read() == 300000                     # one-time mode measures again
    bus, m, drv, _ = lux(300000, continuous=True)
    m.silent_reset()
    assert drv.read() == 0                          # continuous: the documented blind spot


def test_bh1750_full_scale_and_short_read_are_range_errors():
    bus, m, drv, _ = lux(60000000)                   # beyond 54612 lx: count 0xFFFF
    with pytest.raises(RangeError) as ei:
        drv.read()
    assert_typed(ei, RangeError, "range", "BH1750@0x23")
    m.set(5000000)
    bus.short_read(0x23, 0)
    with pytest.raises(RangeError):
        drv.read()
    assert drv.read() == 5000000


def test_bh1750_nack_timeout_absent_then_recovers():
    bus, m, drv, _ = lux(77500)
    for k, err, cls in ((0, errno.EIO, NackError), (1, errno.ETIMEDOUT, BusTimeout)):
        fail_kth(bus, k, err)
        with pytest.raises(cls) as ei:
            drv.read()
        assert ei.value.errno == err and "BH1750@0x23" in str(ei.value)
        assert drv.read() == 77500
    bus.absent(0x23)
    with pytest.raises(NackError):
        drv.read()
    bus.absent(0x23, False)
    assert drv.read() == 77500


def test_bh1750_model_opcodes():
    m = BH1750Model()
    m.set(100000)                                   # 100 lx: 120 counts
    for op, count in ((0x20, 120), (0x21, 240), (0x23, 120)):
        m.write(bytes((op,)))
        assert m.read(2) == bytes((count >> 8, count & 0xFF))
    m.write(b"\x42")                                 # MTreg high bits 010 -> 69 = 0b01000101
    m.write(b"\x7f")                                 # low bits 11111 -> 0b01011111 = 95
    assert m.mtreg == 95
    m.write(b"\x20")
    assert m.read(2) == bytes((0, 165))             # 120 * 95 / 69
    with pytest.raises(OSError):
        m.write(b"\x55")
