# TI INA219 current/power monitor (I2C). Integer math only.
#
# Registers (16-bit, big-endian; a read is a pointer write then 2 bytes):
#   0x00 config       power-on 0x399F
#   0x01 shunt        signed, LSB 10 uV
#   0x02 bus voltage  bits 15..3 value (LSB 4 mV), bit 1 CNVR, bit 0 OVF
#   0x03 power        LSB = 20 x current LSB (unsigned)
#   0x04 current      signed, LSB = current LSB
#   0x05 calibration  bit 0 always reads 0
#
# Calibration = trunc(0.04096 / (current_LSB[A] * R_shunt[ohm])).
# With current_LSB in uA and R in milliohm the product is in 1e-9 A*ohm, so
# cal = 40960000 // (current_lsb_ua * shunt_milliohm)   (100 uA, 100 mohm -> 4096).
#
# read() -> (bus_mV, current_mA, power_mW), ints:
#   bus_mV     = (reg >> 3) * 4, exact
#   current_mA = current_reg * current_lsb_ua / 1000, rounded half away from zero
#   power_mW   = power_reg * 20 * current_lsb_ua / 1000, rounded half up (>= 0)
# OVF set -> RangeError. A calibration register reading 0 means the chip reset
# itself (brown-out, ESD): init() is re-applied, `resets` counted, and that one
# reading is computed from the shunt register the way the chip would (the
# current/power registers are only refreshed by the next conversion).
# Bus transactions per reading: 4 register reads (calibration, bus, current,
# power); after a reset 5 (calibration, config and calibration writes, bus,
# shunt).

from drivers._reg import I2CDevice, const, rdiv, s16
from drivers.errors import RangeError

_REG_CONFIG = const(0x00)
_REG_SHUNT = const(0x01)
_REG_BUS = const(0x02)
_REG_POWER = const(0x03)
_REG_CURRENT = const(0x04)
_REG_CAL = const(0x05)
# BRNG=1 (32 V), PG=/8 (+-320 mV), BADC=SADC=12-bit, mode 7 (shunt+bus continuous)
CONFIG = const(0x399F)


class INA219(I2CDevice):
    def __init__(self, i2c, addr=0x40, shunt_milliohm=100, current_lsb_ua=100):
        if shunt_milliohm <= 0 or current_lsb_ua <= 0:
            raise ValueError("INA219: shunt and current LSB must be > 0")
        cal = (40960000 // (current_lsb_ua * shunt_milliohm)) & 0xFFFE
        if not 0 < cal <= 0xFFFE:
            raise ValueError("INA219: calibration %d out of range (shunt %d mohm, LSB %d uA)"
                             % (cal, shunt_milliohm, current_lsb_ua))
        I2CDevice.__init__(self, i2c, addr, "INA219")
        self.shunt_milliohm = shunt_milliohm
        self.current_lsb_ua = current_lsb_ua
        self.calibration = cal
        self.resets = 0

    def init(self):
        self.set16(_REG_CONFIG, CONFIG)
        self.set16(_REG_CAL, self.calibration)

    def read(self):
        reset = self.reg16(_REG_CAL) == 0
        if reset:
            self.init()
            self.resets += 1            # counted once init() got through
        bus = self.reg16(_REG_BUS)
        if bus & 1:
            raise RangeError("%s: math overflow (OVF) in current/power, bus reg 0x%04x"
                             % (self.name, bus))
        if reset:
            # the current/power registers only refresh at the next conversion:
            # derive them from the shunt register as the chip does
            cur = s16(self.reg16(_REG_SHUNT)) * self.calibration
            cur = cur // 4096 if cur >= 0 else -((-cur) // 4096)    # truncates
            pwr = (cur if cur >= 0 else -cur) * (bus >> 3) // 5000
            if not -32768 <= cur <= 32767 or pwr > 0xFFFF:
                raise RangeError("%s: current/power beyond register range" % self.name)
        else:
            cur = s16(self.reg16(_REG_CURRENT))
            pwr = self.reg16(_REG_POWER)
        return ((bus >> 3) * 4, rdiv(cur * self.current_lsb_ua, 1000),       # uA -> mA
                (pwr * 20 * self.current_lsb_ua + 500) // 1000)
