"""Bosch BME280 temperature/pressure/humidity (drivers/bme280.py): the
datasheet compensation example, calibration parsing, read-back within one
LSB, wrong chip id, busy polling, a reset at measurement, short bursts, every
fault kind typed and recovered from."""
import errno

import pytest
from hypothesis import given, settings, strategies as st

from conftest import rig, per_reading, short_at, fail_kth, assert_typed
from drivers import bme280 as bme
from drivers.bme280 import BME280
from drivers.errors import BusTimeout, ChipIdError, CRCError, NackError, RangeError
from hil.twins.bme280 import DATASHEET_CAL, BME280Model, calib_bytes
from hil.buses.i2c import EmulatedI2C

pytestmark = pytest.mark.emulator_exact


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
