# Model of a ROHM BH1750FVI for the emulated I2C bus. Portable.
#
# Illuminance comes from source() -> milli-lux, or is fixed with
# set(mlx=...). One-byte opcodes as the chip: 0x00 power down, 0x01 power on,
# 0x07 reset (data register to 0; ignored in power down), 0x10/0x11/0x13
# continuous high / high2 / low resolution, 0x20/0x21/0x23 the same one
# time (then power down), 0x40-0x47 / 0x60-0x7F the measurement time
# register (MTreg, default 69) high 3 / low 5 bits. Anything else NACKs.
# A measurement latches count = round(lx * 1.2 * MTreg / 69) (x2 in the
# high2 modes, a multiple of 4 in low resolution), clamped to 0xFFFF;
# in continuous mode every read measures again. A read returns the data
# register, big-endian. Fault: silent_reset() (power-on: power down, data 0).

import errno


class BH1750Model:
    def __init__(self, source=None):
        self.source = source if source is not None else self._fixed
        self.value = 0
        self.measurements = 0
        self.resets = 0
        self.silent_reset()
        self.resets = 0

    def _fixed(self):
        return self.value

    def set(self, mlx):
        self.value = mlx
        self.source = self._fixed

    def silent_reset(self):
        self.powered = False
        self.mode = None               # the opcode of the continuous mode running
        self.data = 0
        self.mtreg = 69
        self.resets += 1

    def _measure(self, op):
        self.measurements += 1
        c = self.source() * 6 * self.mtreg         # mlx * 1.2 * MT / 69, in 1/345000
        c = (c + 172500) // 345000 if c > 0 else 0
        if op & 0x0F == 1:
            c *= 2                                  # high resolution 2: 0.5 lx
        elif op & 0x0F == 3:
            c = (c + 2) // 4 * 4                    # low resolution: 4 lx
        self.data = c if c < 0xFFFF else 0xFFFF

    def write(self, data):
        if not data:
            return                                  # address probe
        op = data[0] if len(data) == 1 else -1
        if op == 0x00:
            self.powered = False
            self.mode = None
        elif op == 0x01:
            self.powered = True
        elif op == 0x07:
            if self.powered:
                self.data = 0
        elif op in (0x10, 0x11, 0x13):
            self.powered = True
            self.mode = op
            self._measure(op)
        elif op in (0x20, 0x21, 0x23):
            self._measure(op)
            self.powered = False
            self.mode = None
        elif 0x40 <= op <= 0x47:
            self.mtreg = ((op & 7) << 5) | (self.mtreg & 0x1F)
        elif 0x60 <= op <= 0x7F:
            self.mtreg = (self.mtreg & 0xE0) | (op & 0x1F)
        else:
            raise OSError(errno.EIO, "EIO")

    def read(self, n):
        if self.mode is not None:
            self._measure(self.mode)
        d = self.data
        out = bytearray(n)
        for i in range(n):
            out[i] = d >> 8 if i == 0 else d & 0xFF if i == 1 else 0xFF
        return bytes(out)
