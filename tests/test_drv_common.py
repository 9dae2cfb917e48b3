"""What every I2C driver shares: typed bus errors (drivers/errors.py) and
the emulated bus's fault injection that the per-chip files lean on."""
import errno

import pytest

from conftest import EREMOTEIO
from drivers.errors import (BusError, BusTimeout, ChipIdError, CRCError,
                            NackError, RangeError, wrap_oserror)
from hil.buses.i2c import EmulatedI2C


def test_error_classes_are_oserrors_with_kinds():
    for cls, kind in ((BusError, "bus"), (NackError, "nack"), (CRCError, "crc"),
                      (BusTimeout, "timeout"), (RangeError, "range")):
        e = cls("X@0x10: boom")
        assert isinstance(e, OSError)
        assert isinstance(e, BusError)
        assert e.kind == kind and cls.kind == kind
        assert e.errno is None
        assert "X@0x10: boom" in str(e)


@pytest.mark.parametrize("n", [errno.ENODEV, errno.EIO, EREMOTEIO])
def test_wrap_oserror_nack_keeps_errno(n):
    for plain in (OSError(n, "x"), OSError(n)):       # smbus2 / machine.I2C forms
        e = wrap_oserror(plain, "INA219@0x40")
        assert type(e) is NackError
        assert e.errno == n
        assert "INA219@0x40" in str(e)


def test_wrap_oserror_timeout_and_passthrough():
    e = wrap_oserror(OSError(errno.ETIMEDOUT), "SHT3x@0x44")
    assert type(e) is BusTimeout and e.errno == errno.ETIMEDOUT
    typed = CRCError("already typed")
    assert wrap_oserror(typed, "whoever") is typed



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
