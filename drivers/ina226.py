# TI INA226 current/power monitor (I2C, 0x40..0x4F). Integer math only.
#
# Registers (16-bit, big-endian; a read is a pointer write then 2 bytes, no
# auto-increment):
#   0x00 config        power-on 0x4127 (bit 15 resets the chip)
#   0x01 shunt         signed, LSB 2.5 uV (+-81.92 mV)
#   0x02 bus voltage   LSB 1.25 mV, bit 15 always 0 (max 40.96 V)
#   0x03 power         LSB = 25 x current LSB, unsigned
#   0x04 current       signed, LSB = current LSB
#   0x05 calibration   bit 15 reserved (0); power-on 0
#   0xFE manufacturer  0x5449 ("TI")
#   0xFF die id        0x2260: device 0x226 in bits 15..4, die revision in 3..0
#
# Calibration = trunc(0.00512 / (current_LSB[A] * R_shunt[ohm])). With the
# LSB in uA and R in milliohm the product is in 1e-9 A*ohm, so
# cal = 5120000 // (current_lsb_ua * shunt_milliohm)   (1000 uA, 2 mohm -> 2560;
# the default 25 uA and 100 mohm, a common breakout's R100 shunt -> 2048).
# The chip computes current = shunt * cal / 2048 and power = current * bus / 20000.
#
# read() -> (bus_mV, current_mA, power_mW), ints:
#   bus_mV     = bus * 1.25, rounded half up
#   current_mA = current * current_lsb_ua / 1000, rounded half away from zero
#   power_mW   = power * 25 * current_lsb_ua / 1000, rounded half up
# A calibration register reading 0 means the chip reset itself (brown-out,
# ESD; config is back at 0x4127 too): config and calibration are written
# again, `resets` counted, and that one reading is computed from the shunt
# register as the chip would (current and power refresh at the next conversion).
# A current register at full scale (0x7FFF or 0x8000: the product shunt x
# cal overflowed, or the shunt ADC saturated at 81.92 mV) -> RangeError.
# Values no chip can give (a calibration other than the one written, bus bit
# 15 set, a power beyond what 16-bit current x 15-bit bus can make: what a
# read cut short, with 0xFF clocked in for the rest, looks like) -> CRCError.
# Bus transactions per reading: 4 (calibration, bus, current, power); 5 on
# the reading that finds a reset (calibration, config and calibration
# writes, bus, shunt).

from drivers._reg import I2CDevice, const, rdiv, s16
from drivers.errors import CRCError, RangeError

_REG_CONFIG = const(0x00)
_REG_SHUNT = const(0x01)
_REG_BUS = const(0x02)
_REG_POWER = const(0x03)
_REG_CURRENT = const(0x04)
_REG_CAL = const(0x05)
_REG_MANUFACTURER = const(0xFE)
_REG_DIE = const(0xFF)
MANUFACTURER_TI = const(0x5449)
DEVICE_ID = const(0x226)
# AVG=16 (bits 11..9 = 010), VBUSCT=VSHCT=1.1 ms, mode 7 (shunt+bus continuous)
CONFIG = const(0x4527)
_POWER_MAX = const(53686)           # 32768 * 0x7FFF // 20000
# die ids (bits 15..4) of TI parts that answer at 0xFF the same way
KNOWN_DIE = {0x227: "INA260", 0x322: "INA3221"}


class INA226(I2CDevice):
    def __init__(self, i2c, addr=0x40, shunt_milliohm=100, current_lsb_ua=25):
        if shunt_milliohm <= 0 or current_lsb_ua <= 0:
            raise ValueError("INA226: shunt and current LSB must be > 0")
        cal = 5120000 // (current_lsb_ua * shunt_milliohm)
        if not 0 < cal <= 0x7FFF:
            raise ValueError("INA226: calibration %d out of range (shunt %d mohm, LSB %d uA)"
                             % (cal, shunt_milliohm, current_lsb_ua))
        I2CDevice.__init__(self, i2c, addr, "INA226")
        self.shunt_milliohm = shunt_milliohm
        self.current_lsb_ua = current_lsb_ua
        self.calibration = cal
        self.resets = 0

    def init(self):
        """Check the id registers, then write config and calibration."""
        self.check_id("manufacturer id", self.reg16(_REG_MANUFACTURER), MANUFACTURER_TI,
                      {})
        die = self.reg16(_REG_DIE)
        self.check_id("die id (device)", die >> 4, DEVICE_ID, KNOWN_DIE)
        self.configure()

    def ident(self):
        """A model id, not unique (the chip has no serial): "ina226-model-<die
        id, 4 hex>" from 0xFF, after 0xFE said TI."""
        self.check_id("manufacturer id", self.reg16(_REG_MANUFACTURER), MANUFACTURER_TI, {})
        return "ina226-model-%04x" % self.reg16(_REG_DIE)

    def configure(self):
        self.set16(_REG_CONFIG, CONFIG)
        self.set16(_REG_CAL, self.calibration)

    def read(self):
        cal = self.reg16(_REG_CAL)
        reset = cal == 0
        if reset:
            self.configure()
            self.resets += 1                # counted once configure() got through
        elif cal != self.calibration:
            raise CRCError("%s: calibration reads 0x%04x, 0x%04x written (garbled read?)"
                           % (self.name, cal, self.calibration))
        bus = self.reg16(_REG_BUS)
        if bus & 0x8000:
            raise CRCError("%s: bus voltage 0x%04x has bit 15 set (garbled read?)"
                           % (self.name, bus))
        if reset:
            cur = s16(self.reg16(_REG_SHUNT)) * self.calibration
            cur = cur // 2048 if cur >= 0 else -((-cur) // 2048)        # truncates
            pwr = (cur if cur >= 0 else -cur) * bus // 20000
        else:
            cur = s16(self.reg16(_REG_CURRENT))
            pwr = self.reg16(_REG_POWER)
            if pwr > _POWER_MAX:
                raise CRCError("%s: power 0x%04x beyond current x bus (garbled read?)"
                               % (self.name, pwr))
        if cur >= 32767 or cur <= -32768:
            raise RangeError("%s: current register at full scale (%d): beyond the range"
                             " this calibration gives" % (self.name, cur))
        lsb = self.current_lsb_ua
        return ((bus * 5 + 2) // 4, rdiv(cur * lsb, 1000), (pwr * 25 * lsb + 500) // 1000)
