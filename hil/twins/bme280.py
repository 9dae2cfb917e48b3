# Register-file model of a Bosch BME280 for the emulated I2C bus. Portable.
#
# The quantities come from source() -> (temp_cC, press_Pa, rh_cP), or are
# fixed with set(temp_cC=..., press_Pa=..., rh_cP=...). The calibration it
# holds is the datasheet's worked example (dig_T1 27504, dig_T2 26435,
# dig_T3 -1000, dig_P1 36477 .. dig_P9 6000) plus humidity words typical of
# a real part (the example has none).
#
# Bus semantics as the chip: a write is the register pointer followed by
# register/value pairs; a read returns registers from the pointer on,
# auto-incrementing. ctrl_hum takes effect with the next ctrl_meas write;
# a ctrl_meas write with mode 01/10 (forced) measures once and returns to
# sleep; 0xB6 to 0xE0 is a soft reset. A measurement finds the raw ADC
# values whose compensation (the driver's integer formulas) comes closest
# to the values set: an integer search over the ADC codes the oversampling
# leaves (x1: 16 bits, x2: 17, .. x16: 20), so the driver reads back what
# was set within one output LSB. Oversampling 0 skips the channel
# (0x80000 / 0x8000).
#
# Faults: chip_id (another part's id: 0x58 BMP280 ..), busy_polls (the next
# measurement shows the measuring bit for that many status reads),
# stuck_busy (the measuring bit never clears), reset_next_measurement (a
# brown-out as the next measurement starts: back to sleep, data at reset
# values), silent_reset().

from drivers.bme280 import compensate_h, compensate_p, compensate_t
from hil.twins.settable import Settable

# dig_T1..T3, dig_P1..P9, dig_H1..H6
DATASHEET_CAL = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000,
                 75, 362, 0, 333, 50, 30)


def calib_bytes(c):
    """The register contents of 0x88..0xA1 and 0xE1..0xE7 for calibration c."""
    a = bytearray(26)
    for i in range(12):
        a[2 * i] = c[i] & 0xFF
        a[2 * i + 1] = (c[i] >> 8) & 0xFF
    a[25] = c[12]
    h4, h5 = c[15], c[16]
    b = bytes((c[13] & 0xFF, (c[13] >> 8) & 0xFF, c[14], (h4 >> 4) & 0xFF,
               ((h5 & 0x0F) << 4) | (h4 & 0x0F), (h5 >> 4) & 0xFF, c[17] & 0xFF))
    return bytes(a), b


def _closest(f, target, n):
    """k in 0..n-1 for which f(k) (nondecreasing) comes closest to target."""
    lo, hi = 0, n - 1
    while lo < hi:                   # smallest k with f(k) >= target
        m = (lo + hi) // 2
        if f(m) >= target:
            hi = m
        else:
            lo = m + 1
    if lo > 0 and abs(f(lo - 1) - target) < abs(f(lo) - target):
        return lo - 1
    return lo


class BME280Model(Settable):
    NAMES = ("temp_cC", "press_Pa", "rh_cP")

    def __init__(self, source=None, chip_id=0x60, cal=DATASHEET_CAL):
        self._quantities(source, (2500, 101325, 5000))
        self.chip_id = chip_id
        self.cal = cal
        self.busy_polls = 0
        self.stuck_busy = False
        self.reset_next_measurement = False
        self.measurements = 0
        self.resets = 0
        self.regs = bytearray(256)
        a, b = calib_bytes(cal)
        self.regs[0x88:0x88 + 26] = a
        self.regs[0xE1:0xE1 + 7] = b
        self.silent_reset()
        self.resets = 0

    # faults ----------------------------------------------------------------------

    def silent_reset(self):
        """Power-on values: sleep mode, no oversampling, data at reset values.
        The calibration is in NVM and survives."""
        r = self.regs
        for reg in (0xE0, 0xF2, 0xF3, 0xF4, 0xF5):
            r[reg] = 0
        r[0xF7:0xFF] = b"\x80\x00\x00\x80\x00\x00\x80\x00"
        self.pointer = 0
        self._hum = 0                 # osrs_h in force (latched by a ctrl_meas write)
        self._busy = 0
        self.resets += 1

    # chip ------------------------------------------------------------------------

    def raw(self, temp_cC, press_Pa, rh_cP, osrs_t=5, osrs_p=5, osrs_h=1):
        """(adc_T, adc_P, adc_H) the chip would convert for these quantities."""
        c = self.cal
        if osrs_t == 0:                # no temperature: no t_fine for the others
            return 0x80000, 0x80000, 0x8000
        q = 1 << (5 - (osrs_t if osrs_t < 5 else 5))
        adc_t = q * _closest(lambda k: compensate_t(c, k * q)[0], temp_cC, (1 << 20) // q)
        t_fine = compensate_t(c, adc_t)[1]
        adc_p, adc_h = 0x80000, 0x8000
        if osrs_p:
            q = 1 << (5 - (osrs_p if osrs_p < 5 else 5))
            adc_p = q * _closest(lambda k: -((compensate_p(c, k * q, t_fine) + 128) >> 8),
                                 -press_Pa, (1 << 20) // q)
        if osrs_h:
            adc_h = _closest(lambda k: (compensate_h(c, k, t_fine) * 100 + 512) >> 10,
                             rh_cP, 1 << 16)
        return adc_t, adc_p, adc_h

    def _measure(self):
        r = self.regs
        if self.reset_next_measurement:
            self.reset_next_measurement = False
            self.silent_reset()
            return
        if self.stuck_busy:
            return                     # never finishes: the data stay as they were
        self.measurements += 1
        t, p, h = self.source()
        meas = r[0xF4]
        adc_t, adc_p, adc_h = self.raw(t, p, h, meas >> 5, (meas >> 2) & 7, self._hum)
        for reg, v in ((0xF7, adc_p), (0xFA, adc_t)):
            r[reg] = v >> 12
            r[reg + 1] = (v >> 4) & 0xFF
            r[reg + 2] = (v & 0x0F) << 4
        r[0xFD] = adc_h >> 8
        r[0xFE] = adc_h & 0xFF
        self._busy = self.busy_polls

    def _set(self, reg, v):
        r = self.regs
        if reg == 0xE0:
            if v == 0xB6:
                self.silent_reset()
        elif reg == 0xF2:
            r[reg] = v & 0x07
        elif reg == 0xF4:
            r[reg] = v
            self._hum = r[0xF2]
            if v & 3 == 3:
                self._measure()        # normal mode: a measurement now (and on data reads)
            elif v & 3:
                self._measure()        # forced: one measurement, then sleep
                self.regs[0xF4] &= 0xFC
        elif reg == 0xF5:
            r[reg] = v

    def write(self, data):
        if not data:
            return                     # address probe
        self.pointer = data[0]
        for i in range(0, len(data) - 1, 2):
            self._set(data[i], data[i + 1])

    def read(self, n):
        r = self.regs
        out = bytearray(n)
        if self.pointer == 0xF7 and r[0xF4] & 3 == 3:
            self._measure()
        for i in range(n):
            reg = (self.pointer + i) & 0xFF
            if reg == 0xD0:
                out[i] = self.chip_id
            elif reg == 0xF3:
                busy = self.stuck_busy or self._busy > 0
                if self._busy > 0:
                    self._busy -= 1
                out[i] = 0x08 if busy else 0
            else:
                out[i] = r[reg]
        return bytes(out)
