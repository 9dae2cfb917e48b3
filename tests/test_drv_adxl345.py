"""Analog Devices ADXL345 accelerometer (drivers/adxl345.py) and the
vibration RMS over a window: scale, clamping, wrong device id, short bursts,
silent reset, NACK, timeout and absence; integer square root and RMS against
floats."""
import errno
import math

import pytest
from hypothesis import given, settings, strategies as st

from conftest import rig, per_reading, assert_typed
from drivers.adxl345 import ADXL345, RMS, Vibration, isqrt
from drivers.errors import BusTimeout, ChipIdError, CRCError, NackError
from hil.twins.adxl345 import ADXL345Model
from hil.buses.i2c import EmulatedI2C

pytestmark = pytest.mark.emulator_exact


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
