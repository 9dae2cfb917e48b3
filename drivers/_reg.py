# What the I2C drivers share: bus calls that raise typed errors and name the
# chip, 8/16-bit register helpers, the chip-id check, a default sleep.
# Portable (CPython and MicroPython); no allocation per call beyond what the
# bus itself does.

import time

from drivers.errors import ChipIdError, wrap_oserror

try:
    from micropython import const       # the compiler folds NAME = const(x) anyway
except ImportError:
    def const(x):
        return x


def default_sleep_ms():
    f = getattr(time, "sleep_ms", None)
    if f is not None:
        return f
    return lambda ms: time.sleep(ms / 1000)


def s16(v):
    """A 16-bit register value as a signed (two's complement) int."""
    return v - 0x10000 if v & 0x8000 else v


def rdiv(a, b):
    """a / b (b > 0) rounded to nearest, halves away from zero."""
    h = b // 2
    return (a + h) // b if a >= 0 else -((h - a) // b)


class I2CDevice:
    """A chip at `addr` on an injected bus (machine.I2C method names). Every
    bus call maps a plain OSError to NackError/BusTimeout naming the chip.
    The 1- and 2-byte register buffers are made at their first use, once: a
    command-based chip (SHT3x, SHT4x, BH1750) never uses them, and heap is
    short on a device."""
    _b1 = None
    _b2 = None

    def __init__(self, i2c, addr, chip):
        self.i2c = i2c
        self.addr = addr
        self.name = "%s@0x%02x" % (chip, addr)

    def rx_mem(self, reg, buf):
        """Pointer write then len(buf) bytes (repeated start): one transaction."""
        try:
            self.i2c.readfrom_mem_into(self.addr, reg, buf)
        except OSError as e:
            raise wrap_oserror(e, self.name)

    def tx_mem(self, reg, buf):
        try:
            self.i2c.writeto_mem(self.addr, reg, buf)
        except OSError as e:
            raise wrap_oserror(e, self.name)

    def tx(self, buf):
        """A plain write transaction: a command, or register/value pairs."""
        try:
            self.i2c.writeto(self.addr, buf)
        except OSError as e:
            raise wrap_oserror(e, self.name)

    def rx(self, buf):
        """A plain read transaction (command-based chips)."""
        try:
            self.i2c.readfrom_into(self.addr, buf)
        except OSError as e:
            raise wrap_oserror(e, self.name)

    def reg8(self, reg):
        b = self._b1
        if b is None:
            b = self._b1 = bytearray(1)
        self.rx_mem(reg, b)
        return b[0]

    def reg16(self, reg):
        """A big-endian 16-bit register, unsigned."""
        b = self._b2
        if b is None:
            b = self._b2 = bytearray(2)
        self.rx_mem(reg, b)
        return (b[0] << 8) | b[1]

    def set16(self, reg, value):
        b = self._b2
        if b is None:
            b = self._b2 = bytearray(2)
        b[0] = (value >> 8) & 0xFF
        b[1] = value & 0xFF
        self.tx_mem(reg, b)

    def check_id(self, what, found, want, known):
        """Raise ChipIdError when an id register holds another value than
        `want`, naming the value and the chip it usually means (`known`:
        id -> chip name)."""
        if found == want:
            return
        if found in known:
            means = "a " + known[found]
        elif found == 0xFF or found == 0xFFFF:
            means = "nobody drives SDA: bus floating?"
        else:
            means = "unknown chip"
        raise ChipIdError("%s: %s reads 0x%0*x (%s), want 0x%0*x"
                          % (self.name, what, 2 if want < 0x100 else 4, found, means,
                             2 if want < 0x100 else 4, want))
