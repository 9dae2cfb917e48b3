"""ROHM BH1750 ambient light (drivers/bh1750.py): counts to millilux, read-back
within one LSB, one transaction per reading in continuous mode, silent reset,
full scale and short reads, NACK, timeout and absence."""
import errno

import pytest
from hypothesis import given, settings, strategies as st

from conftest import rig, per_reading, fail_kth, assert_typed
from drivers.bh1750 import BH1750
from drivers.errors import BusTimeout, NackError, RangeError
from hil.twins.bh1750 import BH1750Model

pytestmark = pytest.mark.emulator_exact


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
