"""Sensirion SHT4x temperature/humidity (drivers/sht4x.py): datasheet CRC
and conversion with clipping, exact read-back, serial number and reset, CRC
faults, short reads, NACK, timeout and absence."""
import errno

import pytest
from hypothesis import given, settings, strategies as st

from conftest import rig, per_reading, fail_kth, assert_typed
from drivers.crc import crc8_sensirion
from drivers.errors import BusTimeout, CRCError, NackError
from drivers.sht4x import SHT4x
from hil.twins.sht3x import SHT3xModel
from hil.twins.sht4x import SHT4xModel

pytestmark = pytest.mark.emulator_exact


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
