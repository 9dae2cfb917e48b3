# Register-file model of a TI INA219 for the emulated I2C bus. Portable.
#
# source() -> (bus_mV, current_mA) ints for "now". A read of the bus voltage
# register (0x02) starts a new conversion (one source() call); reads of the
# shunt, current and power registers use the latest conversion (taking one if
# none yet). Registers are computed the way the chip does, in integers:
#   shunt   = current_mA * R_mohm / 10 (uV / 10 uV), truncated, clamped to the
#             PGA range (+-4000 << PG)
#   current = shunt * cal / 4096, truncated toward zero; 0 when cal is 0
#   bus     = (bus_mV // 4) << 3 | CNVR | OVF
#   power   = |current| * (bus_mV // 4) / 5000, truncated; 0 when cal is 0
# OVF is set when `overflow` is True or current/power leave their 16 bits.
# Writes: 1 byte sets the pointer; 3 bytes set pointer + register. Config bit
# 15 resets the chip (power-on values, calibration 0). Calibration bit 0 is
# read-only 0. Read-only registers ignore writes.

POR_CONFIG = 0x399F


def _tdiv(a, b):
    return a // b if a >= 0 else -((-a) // b)


class INA219Model:
    def __init__(self, source, shunt_milliohm=100):
        self.source = source
        self.shunt_milliohm = shunt_milliohm
        self.overflow = False
        self.pointer = 0
        self.config = POR_CONFIG
        self.cal = 0
        self.resets = 0            # config-bit-15 and silent resets seen
        self.conversions = 0
        self._conv = None          # (shunt, bus, current, power) register values

    # faults ----------------------------------------------------------------------

    def silent_reset(self):
        """Brown-out: every register back to its power-on value."""
        self.config = POR_CONFIG
        self.cal = 0
        self.pointer = 0
        self.resets += 1

    # chip ------------------------------------------------------------------------

    def _convert(self):
        bus_mV, cur_mA = self.source()
        self.conversions += 1
        lim = 4000 << ((self.config >> 11) & 3)
        shunt = _tdiv(cur_mA * self.shunt_milliohm, 10)
        if shunt > lim:
            shunt = lim
        elif shunt < -lim:
            shunt = -lim
        vb = bus_mV // 4 if bus_mV > 0 else 0
        if vb > 0x1FFF:
            vb = 0x1FFF
        ovf = self.overflow
        cur = _tdiv(shunt * self.cal, 4096)
        if cur > 32767 or cur < -32768:
            ovf = True
            cur = 32767 if cur > 0 else -32768
        pwr = ((cur if cur >= 0 else -cur) * vb) // 5000
        if pwr > 0xFFFF:
            ovf = True
            pwr = 0xFFFF
        bus = (vb << 3) | 0x2 | (1 if ovf else 0)
        self._conv = (shunt & 0xFFFF, bus, pwr, cur & 0xFFFF)
        return self._conv

    def register(self, reg):
        """Current value of a register (as an I2C read would return it)."""
        if reg == 0:
            return self.config
        if reg == 5:
            return self.cal
        if 1 <= reg <= 4:
            conv = self._convert() if reg == 2 or self._conv is None else self._conv
            return conv[reg - 1]
        return 0xFFFF

    def write(self, data):
        if not data:
            return
        self.pointer = data[0]
        if len(data) < 3:
            return
        v = (data[1] << 8) | data[2]
        if self.pointer == 0:
            if v & 0x8000:
                self.silent_reset()
            else:
                self.config = v
        elif self.pointer == 5:
            self.cal = v & 0xFFFE

    def read(self, n):
        v = self.register(self.pointer)
        out = bytearray(n)
        for i in range(n):
            out[i] = (v >> 8) & 0xFF if i % 2 == 0 else v & 0xFF
        return bytes(out)
