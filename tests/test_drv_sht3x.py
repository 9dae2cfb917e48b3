"""Sensirion SHT3x temperature/humidity (drivers/sht3x.py): datasheet
conversion and CRC, values through the twin, a floating bus, saturation,
CRC faults, NACKs before the measurement is ready, and absence."""
import errno

import pytest
from hypothesis import assume, given, settings, strategies as st

from drivers.crc import crc8_sensirion
from drivers.errors import BusTimeout, CRCError, NackError, RangeError
from drivers.sht3x import SHT3x
from hil.buses.i2c import EmulatedI2C
from hil.twins.sht3x import SHT3xModel


class Source:
    def __init__(self, *value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value



def sht_rig(t=2500, rh=5000):
    bus = EmulatedI2C()
    src = Source(t, rh)
    model = SHT3xModel(src)
    bus.attach(0x44, model)
    slept = []
    return bus, src, model, SHT3x(bus, sleep_ms=slept.append), slept




@pytest.mark.emulator_exact
def test_sht3x_25C_50RH_and_timing():
    bus, src, model, drv, slept = sht_rig(2500, 5000)
    t, rh = drv.read()
    assert abs(t - 2500) <= 1 and abs(rh - 5000) <= 1
    assert slept == [16]


@pytest.mark.emulator_exact
@settings(max_examples=80, deadline=None)
@given(st.integers(-4500, 13000), st.integers(0, 10000))
def test_sht3x_round_trip_through_model(t, rh):
    assume(not (t == 13000 and rh == 10000))    # both saturated: RangeError by design
    bus, src, model, drv, slept = sht_rig(t, rh)
    got = drv.read()
    assert abs(got[0] - t) <= 1 and abs(got[1] - rh) <= 1


class FrameChip:
    """Answers any measurement with a fixed 6-byte frame."""

    def __init__(self, frame):
        self.frame = bytes(frame)

    def write(self, data):
        pass

    def read(self, n):
        return self.frame[:n]


def with_crc(t_raw, rh_raw):
    return SHT3xModel.frame(t_raw, rh_raw)


@pytest.mark.parametrize("t_raw, rh_raw, want", [
    (0x0000, 0x0000, (-4500, 0)),
    (0xFFFF, 0x0000, (13000, 0)),
    (0x0000, 0xFFFF, (-4500, 10000)),
    (0x6666, 0x8000, (-4500 + 17500 * 0x6666 // 65535, 10000 * 0x8000 // 65535)),
])
def test_sht3x_datasheet_conversion(t_raw, rh_raw, want):
    bus = EmulatedI2C()
    bus.attach(0x44, FrameChip(with_crc(t_raw, rh_raw)))
    assert SHT3x(bus, sleep_ms=lambda ms: None).read() == want


def test_sht3x_frame_crc_is_datasheet_crc():
    f = with_crc(0xBEEF, 0xBEEF)
    assert f[2] == 0x92 and f[5] == 0x92 == crc8_sensirion(b"\xbe\xef")


def test_sht3x_floating_bus_and_saturation():
    bus = EmulatedI2C()
    chip = FrameChip(b"\xff" * 6)
    bus.attach(0x44, chip)
    drv = SHT3x(bus, sleep_ms=lambda ms: None)
    with pytest.raises(CRCError, match="0xFF"):
        drv.read()
    chip.frame = bytes(with_crc(0xFFFF, 0xFFFF))
    with pytest.raises(RangeError):
        drv.read()


@pytest.mark.emulator_exact
@pytest.mark.parametrize("which, word", [(True, "temperature"), ("temp", "temperature"),
                                         ("rh", "humidity")])
def test_sht3x_crc_fault_names_word_then_recovers(which, word):
    bus, src, model, drv, slept = sht_rig(2500, 5000)
    model.corrupt_crc_next = which
    with pytest.raises(CRCError) as ei:
        drv.read()
    e = ei.value
    assert isinstance(e, OSError) and e.kind == "crc"
    assert "SHT3x@0x44" in str(e) and word in str(e) and "got 0x" in str(e)
    assert drv.read() == (2500, 5000)


@pytest.mark.emulator_exact
def test_sht3x_read_without_measurement_nacks():
    bus, src, model, drv, slept = sht_rig()
    buf = bytearray(6)
    with pytest.raises(OSError) as ei:
        bus.readfrom_into(0x44, buf)
    assert ei.value.errno == errno.EIO
    bus.writeto(0x44, b"\x24\x00")
    bus.readfrom_into(0x44, buf)
    with pytest.raises(OSError):
        bus.readfrom_into(0x44, buf)          # one read per measurement


@pytest.mark.emulator_exact
def test_sht3x_nack_and_absent_then_recover():
    bus, src, model, drv, slept = sht_rig(-1234, 9999)
    bus.fail_next(0x44, 2)
    for _ in range(2):
        with pytest.raises(NackError) as ei:
            drv.read()
        assert ei.value.errno == errno.EIO
    bus.absent(0x44)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV
    bus.absent(0x44, False)
    bus.fail_next(0x44, 1, errno.ETIMEDOUT)
    with pytest.raises(BusTimeout):
        drv.read()
    assert drv.read() == (-1234, 9999)


def test_sht3x_default_sleep_is_callable():
    drv = SHT3x(EmulatedI2C())
    drv.sleep_ms(0)
