# Register-file model of a TI INA226 for the emulated I2C bus. Portable.
#
# The measured quantities come from source() -> (bus_mV, current_mA), or are
# fixed with set(bus_mV=..., current_mA=...). A read of the bus voltage
# register (0x02) starts a new conversion (one source() call); reads of the
# shunt, current and power registers use the latest conversion (taking one if
# none yet). Registers are computed as the chip does, in integers:
#   shunt   = current_mA * R_mohm / 2.5 uV, truncated, clamped to +-81.92 mV
#   bus     = bus_mV / 1.25 mV, truncated, 0..0x7FFF
#   current = shunt * cal / 2048, truncated toward zero (int16); 0 when cal is 0
#   power   = |current| * bus / 20000, truncated; 0 when cal is 0
# Writes: 1 byte sets the pointer; 3 bytes set pointer + register. Config
# bit 15 resets the chip. Calibration bit 15 is reserved (reads 0).
# 0xFE/0xFF answer `manufacturer` and `die_id` (set them to model another
# part: wrong chip id). Faults: silent_reset() (brown-out: power-on values,
# calibration 0); bus-level faults (NACK, absent, short read) are on
# hil.buses.i2c.EmulatedI2C. The pointer protocol and read() are the INA219's.

from hil.twins.ina219 import INA219Model, _tdiv
from hil.twins.settable import Settable

POR_CONFIG = 0x4127


class INA226Model(Settable, INA219Model):
    NAMES = ("bus_mV", "current_mA")

    def __init__(self, source=None, shunt_milliohm=100, manufacturer=0x5449, die_id=0x2260):
        self._quantities(source, (0, 0))
        self.shunt_milliohm = shunt_milliohm
        self.manufacturer = manufacturer
        self.die_id = die_id
        self.resets = 0            # config-bit-15 and silent resets seen
        self.conversions = 0
        self.silent_reset()
        self.resets = 0

    # faults ----------------------------------------------------------------------

    def silent_reset(self):
        """Brown-out: every register back to its power-on value."""
        self.config = POR_CONFIG
        self.cal = 0
        self.mask = 0
        self.limit = 0
        self.pointer = 0
        self._conv = None          # (shunt, bus, power, current) register values
        self.resets += 1

    # chip ------------------------------------------------------------------------

    def _convert(self):
        bus_mV, cur_mA = self.source()
        self.conversions += 1
        shunt = _tdiv(cur_mA * self.shunt_milliohm * 2, 5)     # uV / 2.5 uV
        shunt = 32767 if shunt > 32767 else -32768 if shunt < -32768 else shunt
        vb = bus_mV * 4 // 5 if bus_mV > 0 else 0
        vb = 0x7FFF if vb > 0x7FFF else vb
        cur = _tdiv(shunt * self.cal, 2048)
        cur = 32767 if cur > 32767 else -32768 if cur < -32768 else cur
        pwr = (cur if cur >= 0 else -cur) * vb // 20000
        self._conv = (shunt & 0xFFFF, vb, pwr, cur & 0xFFFF)
        return self._conv

    def register(self, reg):
        """Current value of a register (as an I2C read would return it)."""
        if 1 <= reg <= 4:
            conv = self._convert() if reg == 2 or self._conv is None else self._conv
            return conv[reg - 1]
        return {0: self.config, 5: self.cal, 6: self.mask, 7: self.limit,
                0xFE: self.manufacturer, 0xFF: self.die_id}.get(reg, 0)

    def write(self, data):
        if not data:
            return                                  # address probe
        self.pointer = data[0]
        if len(data) < 3:
            return
        v = (data[1] << 8) | data[2]
        p = self.pointer
        if p == 0:
            if v & 0x8000:
                self.silent_reset()
            else:
                self.config = v
        elif p == 5:
            self.cal = v & 0x7FFF
        elif p == 6:
            self.mask = v
        elif p == 7:
            self.limit = v
