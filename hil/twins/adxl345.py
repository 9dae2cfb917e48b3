# Register-file model of an Analog Devices ADXL345 for the emulated I2C bus.
# Portable.
#
# Acceleration comes from source() -> (x_mg, y_mg, z_mg), or is fixed with
# set(x_mg=..., y_mg=..., z_mg=...). While POWER_CTL has the measure bit, a
# read starting at or before the data registers (0x32..0x37) takes a new
# sample; in standby they keep their last value (0 after power-on).
# Counts as the chip scales them (DATA_FORMAT): full resolution 256 LSB/g
# with 10 + range bits, else 10 bits at 256 >> range LSB/g; rounded to
# nearest, clamped to the range. Right-justified only (the justify bit is
# ignored).
# Writes: the register pointer, then data to it and the registers after it.
# Reads auto-increment. Faults: chip_id (wrong DEVID), silent_reset()
# (power-on values: standby, DATA_FORMAT 0).

from drivers._reg import rdiv
from hil.twins.settable import Settable

_DATA = 0x32
_WRITABLE = (0x1D, 0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
             0x29, 0x2A, 0x2C, 0x2D, 0x2E, 0x2F, 0x31, 0x38)


def _counts(mg, fmt):
    rng = fmt & 3
    if fmt & 0x08:                                   # FULL_RES: 256 LSB/g
        div, lim = 125, 512 << rng
    else:                                            # 10 bits over +-(2 << rng) g
        div, lim = 125 << rng, 512
    c = rdiv(mg * 32, div)
    return lim - 1 if c > lim - 1 else -lim if c < -lim else c


class ADXL345Model(Settable):
    NAMES = ("x_mg", "y_mg", "z_mg")

    def __init__(self, source=None, chip_id=0xE5):
        self._quantities(source, (0, 0, 1000))
        self.chip_id = chip_id
        self.samples = 0
        self.resets = 0
        self.regs = bytearray(0x40)
        self.silent_reset()
        self.resets = 0

    def silent_reset(self):
        """Power-on values: standby, data registers cleared."""
        r = self.regs
        for i in range(len(r)):
            r[i] = 0
        r[0x2C] = 0x0A                                # BW_RATE power-on value
        self.pointer = 0
        self.resets += 1

    def _sample(self):
        r = self.regs
        self.samples += 1
        v = self.source()
        for i in range(3):
            c = _counts(v[i], r[0x31]) & 0xFFFF
            r[_DATA + 2 * i] = c & 0xFF
            r[_DATA + 2 * i + 1] = c >> 8

    def write(self, data):
        if not data:
            return                                    # address probe
        self.pointer = data[0]
        for i in range(1, len(data)):
            reg = (data[0] + i - 1) & 0x3F
            if reg in _WRITABLE:
                self.regs[reg] = data[i]

    def read(self, n):
        p = self.pointer
        if self.regs[0x2D] & 0x08 and p <= _DATA + 5 and p + n > _DATA:
            self._sample()
        out = bytearray(n)
        for i in range(n):
            reg = (p + i) & 0x3F
            out[i] = self.chip_id if reg == 0 else self.regs[reg]
        return bytes(out)
