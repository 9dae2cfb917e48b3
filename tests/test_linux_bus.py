"""The smbus2 adapter (agent/port/linux_bus.py) without hardware: a fake
SMBus at the edge of the world, the kernel's i2c-dev, that turns each
I2C_RDWR message list into one transaction on an EmulatedI2C (hil/buses/i2c.py)
and answers a missing ACK the way the Pi's bcm2835 driver does (EREMOTEIO)."""
import ctypes
import errno

import pytest
from smbus2 import i2c_msg
from smbus2.smbus2 import I2C_M_RD

from agent.port.linux_bus import SMBus2I2C
from drivers.errors import BusTimeout, NackError
from drivers.ina219 import INA219
from drivers.sht3x import SHT3x
from hil.buses.i2c import EmulatedI2C
from hil.twins.ina219 import INA219Model
from hil.twins.memory import Memory
from hil.twins.sht3x import SHT3xModel


class KernelI2CDev:
    """What /dev/i2c-N does with I2C_RDWR and SMBus quick writes, in front of
    an EmulatedI2C. `rdwr` records every ioctl's message list."""

    def __init__(self, bus, nack_errno=errno.EREMOTEIO):
        self.bus = bus
        self.nack_errno = nack_errno
        self.rdwr = []
        self.closed = False

    def _kernel(self, f, *args):
        try:
            return f(*args)
        except OSError as e:
            if e.errno == errno.ENODEV:      # the emulator's "nobody ACKed"
                raise OSError(self.nack_errno, "Remote I/O error") from None
            raise

    def i2c_rdwr(self, *msgs):
        self.rdwr.append([(m.addr, m.flags, m.len) for m in msgs])
        kinds = [bool(m.flags & I2C_M_RD) for m in msgs]
        if kinds == [False]:
            self._kernel(self.bus.writeto, msgs[0].addr, bytes(msgs[0]))
        elif kinds == [True]:
            buf = bytearray(msgs[0].len)
            self._kernel(self.bus.readfrom_into, msgs[0].addr, buf)
            ctypes.memmove(msgs[0].buf, bytes(buf), len(buf))
        elif kinds == [False, True] and msgs[0].addr == msgs[1].addr:
            reg = bytes(msgs[0])                 # pointer write, repeated start, read
            buf = bytearray(msgs[1].len)
            self._kernel(self.bus.readfrom_mem_into, msgs[0].addr, int.from_bytes(reg, "big"), buf,
                         8 * len(reg))
            ctypes.memmove(msgs[1].buf, bytes(buf), len(buf))
        else:
            raise OSError(errno.EOPNOTSUPP, "not a transaction this fake knows")

    def write_quick(self, addr):
        self._kernel(self.bus.writeto, addr, b"")

    def close(self):
        self.closed = True


def rig(**kw):
    bus = EmulatedI2C()
    mem = Memory()
    bus.attach(0x50, mem)
    dev = KernelI2CDev(bus, **kw)
    return bus, mem, dev, SMBus2I2C(1, smbus=dev)


def test_a_40_byte_register_read_is_one_transaction():
    bus, mem, dev, i2c = rig()
    buf = bytearray(40)
    i2c.readfrom_mem_into(0x50, 0x10, buf)
    assert buf == mem.mem[0x10:0x38]
    assert bus.transactions == 1
    assert dev.rdwr == [[(0x50, 0, 1), (0x50, I2C_M_RD, 40)]]      # one ioctl: write, read
    assert i2c.readfrom_mem(0x50, 0xF0, 40) == bytes(mem.mem[0xF0:]) + bytes(mem.mem[:0x18])


def test_writes_and_plain_reads():
    bus, mem, dev, i2c = rig()
    i2c.writeto_mem(0x50, 0x20, b"\x01\x02\x03")
    assert mem.mem[0x20:0x23] == b"\x01\x02\x03"
    assert i2c.writeto(0x50, b"\x20") == 1
    assert i2c.readfrom(0x50, 3) == b"\x01\x02\x03"
    two_bytes = bytearray(2)
    i2c.readfrom_mem_into(0x50, 0x0120, two_bytes, addrsize=16)     # 16-bit pointer: 0x01, then 0x20
    assert dev.rdwr[-1] == [(0x50, 0, 2), (0x50, I2C_M_RD, 2)]
    assert bus.transactions == 4


def test_scan_probes_with_quick_writes():
    bus, mem, dev, i2c = rig()
    bus.attach(0x44, SHT3xModel(lambda: (2500, 5000)))     # NACKs reads between measurements
    assert i2c.scan() == [0x44, 0x50]


@pytest.mark.parametrize("err, cls", [(errno.ENXIO, NackError), (errno.EREMOTEIO, NackError),
                                      (errno.EIO, NackError), (errno.ETIMEDOUT, BusTimeout)])
def test_kernel_errors_become_typed_bus_errors(err, cls):
    bus, mem, dev, i2c = rig()
    bus.fail_next(0x50, 1, err)
    with pytest.raises(cls) as ei:
        i2c.readfrom_mem_into(0x50, 0, bytearray(4))
    assert ei.value.errno == err and "i2c-1@0x50" in str(ei.value)
    assert i2c.readfrom_mem(0x50, 0, 2) == bytes(mem.mem[:2])


@pytest.mark.parametrize("nack", [errno.ENXIO, errno.EREMOTEIO])
def test_an_absent_chip_is_a_nack(nack):
    bus, mem, dev, i2c = rig(nack_errno=nack)
    with pytest.raises(NackError) as ei:
        i2c.writeto(0x23, b"\x10")
    assert ei.value.errno == nack


def test_other_oserrors_are_not_bus_faults():
    bus, mem, dev, i2c = rig()
    bus.fail_next(0x50, 1, errno.EBADF)
    with pytest.raises(OSError) as ei:
        i2c.readfrom(0x50, 1)
    assert type(ei.value) is OSError and ei.value.errno == errno.EBADF
    bus.fail_next(0x50, 1, errno.EACCES)
    with pytest.raises(PermissionError):
        i2c.scan()


def test_drivers_run_through_the_adapter():
    bus, mem, dev, i2c = rig()
    bus.attach(0x40, INA219Model(lambda: (24000, 2800)))
    bus.attach(0x44, SHT3xModel(lambda: (2345, 6789)))
    ina = INA219(i2c)
    ina.init()
    assert ina.read() == (24000, 2800, 67200)
    assert SHT3x(i2c, sleep_ms=lambda ms: None).read() == (2345, 6789)
    i2c.close()
    assert dev.closed
