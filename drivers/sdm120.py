# Eastron SDM120 single-phase energy meter over Modbus RTU (input registers,
# each value an IEEE-754 binary32, big-endian, over 2 registers):
#   0x0000 voltage (V)   0x0006 current (A)   0x000C active power (W)
#   0x0156 total active energy (kWh)
#
# read() -> (voltage_dV, current_mA, power_W, energy_Wh), ints, in two
# transactions (0x0000 x14, 0x0156 x2).
#
# The float32 is decoded with integer math only (sign, exponent, mantissa), so
# the scaled result is exact and bit-identical on CPython (double floats) and
# an ESP32 (single floats): round(value * scale), ties away from zero (i.e.
# int(x*scale + 0.5) for x >= 0, mirrored for x < 0).
# RangeError on: NaN/inf, |value| >= 2**40, negative voltage or energy,
# voltage > 1000 V, |current| > 200 A, |power| > 100 kW.

from drivers.errors import RangeError

REG_VOLTAGE = 0x0000
REG_ENERGY = 0x0156


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


class SDM120:
    def __init__(self, modbus, slave=1):
        self.modbus = modbus
        self.slave = slave
        self.name = "SDM120@%d" % slave

    def _val(self, d, o, scale, what, lo, hi):
        v = f32_scaled(d, o, scale)
        if v is None or v < lo or v > hi:
            raise RangeError("%s: %s out of range (raw %02x%02x%02x%02x)"
                             % (self.name, what, d[o], d[o + 1], d[o + 2], d[o + 3]))
        return v

    def read(self):
        d = self.modbus.read_raw(self.slave, 0x04, REG_VOLTAGE, 14)
        v = self._val(d, 0, 10, "voltage", 0, 10000)
        i = self._val(d, 12, 1000, "current", -200000, 200000)
        p = self._val(d, 24, 1, "power", -100000, 100000)
        d = self.modbus.read_raw(self.slave, 0x04, REG_ENERGY, 2)
        e = self._val(d, 0, 1000, "energy", 0, 1 << 60)
        return (v, i, p, e)
