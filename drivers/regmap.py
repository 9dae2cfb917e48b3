# Modbus meters whose values are IEEE-754 binary32, big-endian, over two
# registers (the Eastron SDM family), declared as data: a meter class gives
# MODEL and BLOCKS, and RegisterMap.read() does one request per block.
#
#   BLOCKS = ((fc, first register, register count, fields), ...)
#   fields = ((register, name, scale, lo, hi), ...)   each inside its block
#
# read() -> a tuple of ints, the fields in BLOCKS order: round(value * scale)
# (see f32_scaled), RangeError when NaN/inf, |value| >= 2**40 or outside
# [lo, hi] (after scaling). `names` lists the field names in that order.
# serial()/ident(): the meter's serial number from holding register 0xFC00.
#
# The float32 is decoded with integer math only (sign, exponent, mantissa), so
# the scaled result is exact and bit-identical on CPython (double floats) and
# an ESP32 (single floats): round(value * scale), ties away from zero (i.e.
# int(x*scale + 0.5) for x >= 0, mirrored for x < 0).

from drivers.errors import RangeError

# Eastron meters: the meter's serial number, a u32 over two holding registers
# (fc 0x03) at 0xFC00, high word first (not a float).
REG_SERIAL = 0xFC00


def f32_scaled(d, o, scale):
    """Big-endian binary32 at d[o:o+4] -> round(value * scale) (ties away from
    zero) as an int; None for NaN/inf or |value| >= 2**40. Integer-only."""
    neg = d[o] & 0x80
    e = ((d[o] & 0x7F) << 1) | (d[o + 1] >> 7)
    m = ((d[o + 1] & 0x7F) << 16) | (d[o + 2] << 8) | d[o + 3]
    if e == 0xFF or e >= 127 + 40:
        return None
    if e == 0:
        e = 1                      # subnormal: no implicit bit
    else:
        m |= 0x800000
    sh = e - 150                   # value = m * 2**(e - 150)
    if sh >= 0:
        r = (m * scale) << sh
    else:
        sh = -sh
        if sh > 62:
            r = 0
        else:
            r = (m * scale + (1 << (sh - 1))) >> sh
    return -r if neg else r


class RegisterMap:
    MODEL = "meter"
    BLOCKS = ()

    def __init__(self, modbus, slave=1):
        self.modbus = modbus
        self.slave = slave
        self.name = "%s@%d" % (self.MODEL, slave)
        self.names = tuple(f[1] for b in self.BLOCKS for f in b[3])
        self._out = [0] * len(self.names)

    def read(self):
        out = self._out
        i = 0
        for fc, addr, count, fields in self.BLOCKS:
            d = self.modbus.read_raw(self.slave, fc, addr, count)
            for reg, name, scale, lo, hi in fields:
                o = 2 * (reg - addr)
                v = f32_scaled(d, o, scale)
                if v is None or v < lo or v > hi:
                    raise RangeError("%s: %s out of range (raw %02x%02x%02x%02x)"
                                     % (self.name, name, d[o], d[o + 1], d[o + 2], d[o + 3]))
                out[i] = v
                i += 1
        return tuple(out)

    def serial(self):
        """The meter's serial number (holding registers 0xFC00-0xFC01, u32).
        0 or 0xFFFFFFFF (never programmed) -> RangeError."""
        d = self.modbus.read_raw(self.slave, 0x03, REG_SERIAL, 2)
        v = (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]
        if v == 0 or v == 0xFFFFFFFF:
            raise RangeError("%s: serial register reads 0x%08x (not programmed)" % (self.name, v))
        return v

    def ident(self):
        """The component id: "<model>-<serial, decimal>", e.g. "sdm630-21000123"."""
        return "%s-%d" % (self.MODEL.lower(), self.serial())
