# Bosch BME280 pressure/temperature/humidity sensor (I2C, 0x76 or 0x77),
# forced mode. Integer math only: the datasheet's integer compensation
# (BME280_compensate_T_int32, _P_int64, _H_int32 in section 4.2.3), written
# out here from its formulas.
#
#   0xD0 id           0x60 (0x58 BMP280; 0x56/0x57 BMP280 samples; 0x61 BME680)
#   0x88..0xA1        dig_T1..dig_P9 (little-endian words), dig_H1 at 0xA1
#   0xE1..0xE7        dig_H2..dig_H6 (H4 and H5 are 12-bit, sharing 0xE5)
#   0xF2 ctrl_hum     osrs_h; takes effect with the next ctrl_meas write
#   0xF3 status       bit 3 measuring, bit 0 NVM copying
#   0xF4 ctrl_meas    osrs_t, osrs_p, mode (01 forced: one measurement, then sleep)
#   0xF5 config       standby, IIR filter (0: off)
#   0xF7..0xFE        press (20 bit), temp (20 bit), hum (16 bit), big-endian;
#                     bits 3..0 of 0xF9 and 0xFC always read 0
# Reads auto-increment; writes are register/value pairs in one transaction.
#
# Oversampling: temperature x2, pressure x16, humidity x1, filter off
# (ADC steps of about 0.0025 C, 0.16 Pa and 0.006 %RH, finer than the output
# LSBs below). Measurement time max 1.25 + 2.3*2 + 2.3*16 + 0.575 + 2.3*1 +
# 0.575 = 46.1 ms: wait 47 ms, then poll the measuring bit at most POLLS
# times POLL_MS apart; still busy -> BusTimeout ("stuck busy bit").
#
# read() -> (temp_cC, press_Pa, rh_cP), ints: 0.01 C, Pa (Q24.8 rounded),
# 0.01 %RH (Q22.10 rounded). Bus transactions per reading: 3 (ctrl_hum +
# ctrl_meas write, status poll, one 8-byte burst of 0xF7..0xFE).
# Bad data:
#   bits 3..0 of 0xF9 or 0xFC set, or humidity 0xFFFF (far beyond 100 %RH):
#   a burst cut short (0xFF from there on) or a floating bus -> CRCError
#   (a burst that loses only its last byte is not caught)
#   all three values at their reset values (0x80000, 0x80000, 0x8000): the
#   chip reset (brown-out) and slept instead of measuring -> `resets`
#   counted, measured again once; twice in a row           -> BusTimeout
#   T outside -40..85 C or p outside 300..1100 hPa         -> RangeError
# init() checks the id and reads the calibration twice (a short read there
# would skew every reading until the next init): a mismatch -> CRCError.
# read() calls init() first while it has not succeeded.

from drivers._reg import I2CDevice, const, default_sleep_ms, s16
from drivers.errors import BusTimeout, CRCError, RangeError

_REG_ID = const(0xD0)
_REG_CALIB_A = const(0x88)          # 26 bytes: 0x88..0xA1
_REG_CALIB_B = const(0xE1)          # 7 bytes: 0xE1..0xE7
_REG_STATUS = const(0xF3)
_REG_DATA = const(0xF7)             # 8 bytes: 0xF7..0xFE
CHIP_ID = const(0x60)
KNOWN_IDS = {0x58: "BMP280 (no humidity)", 0x56: "BMP280 sample", 0x57: "BMP280 sample",
             0x61: "BME680", 0x55: "BMP180"}
OSRS_T = const(2)                   # x2
OSRS_P = const(5)                   # x16
OSRS_H = const(1)                   # x1
CTRL_MEAS = const((OSRS_T << 5) | (OSRS_P << 2) | 1)     # forced mode
# register/value pairs: ctrl_hum first (it latches on the ctrl_meas write)
TRIGGER = bytes((0xF2, OSRS_H, 0xF4, CTRL_MEAS))
SETUP = bytes((0xF4, 0x00, 0xF5, 0x00))                  # sleep, then filter off
MEASURE_MS = const(47)
POLLS = const(10)
POLL_MS = const(2)
_STATUS_MEASURING = const(0x08)
SKIPPED_PT = const(0x80000)         # value of an unmeasured (or reset) 20-bit channel
SKIPPED_H = const(0x8000)


def _s8(v):
    return v - 0x100 if v & 0x80 else v


def calibration(a, b):
    """(dig_T1, T2, T3, P1 .. P9, H1 .. H6) from the bytes of 0x88..0xA1 (a)
    and 0xE1..0xE7 (b)."""
    c = []
    for i in range(0, 24, 2):
        v = a[i] | (a[i + 1] << 8)
        c.append(v if i == 0 or i == 6 else s16(v))      # dig_T1, dig_P1 unsigned
    c.append(a[25])                                     # H1
    c.append(s16(b[0] | (b[1] << 8)))                   # H2
    c.append(b[2])                                      # H3
    c.append((_s8(b[3]) << 4) | (b[4] & 0x0F))          # H4: 0xE4 [11:4], 0xE5 [3:0]
    c.append((_s8(b[5]) << 4) | (b[4] >> 4))            # H5: 0xE6 [11:4], 0xE5 [7:4]
    c.append(_s8(b[6]))                                 # H6
    return tuple(c)


def compensate_t(c, adc):
    """-> (T in 0.01 C, t_fine)"""
    v1 = (((adc >> 3) - (c[0] << 1)) * c[1]) >> 11
    d = (adc >> 4) - c[0]
    t_fine = v1 + ((((d * d) >> 12) * c[2]) >> 14)
    return (t_fine * 5 + 128) >> 8, t_fine


def compensate_p(c, adc, t_fine):
    """-> pressure in Pa, Q24.8 (the 64-bit variant); 0 if dig_P1 makes it undefined"""
    v1 = t_fine - 128000
    v2 = v1 * v1 * c[8] + ((v1 * c[7]) << 17) + (c[6] << 35)
    v1 = ((v1 * v1 * c[5]) >> 8) + ((v1 * c[4]) << 12)
    v1 = (((1 << 47) + v1) * c[3]) >> 33
    if v1 == 0:
        return 0
    p = (((1048576 - adc) << 31) - v2) * 3125
    p = p // v1 if (p >= 0) == (v1 > 0) else -((-p) // v1)    # C division truncates
    v1 = (c[11] * (p >> 13) * (p >> 13)) >> 25
    v2 = (c[10] * p) >> 19
    return ((p + v1 + v2) >> 8) + (c[9] << 4)


def compensate_h(c, adc, t_fine):
    """-> relative humidity in %, Q22.10, 0 .. 100 %"""
    x = t_fine - 76800
    x = ((((adc << 14) - (c[15] << 20) - c[16] * x) + 16384) >> 15) * \
        (((((((x * c[17]) >> 10) * (((x * c[14]) >> 11) + 32768)) >> 10) + 2097152)
          * c[13] + 8192) >> 14)
    x -= ((((x >> 15) * (x >> 15)) >> 7) * c[12]) >> 4
    x = 0 if x < 0 else 419430400 if x > 419430400 else x
    return x >> 12


def convert(c, adc_t, adc_p, adc_h):
    """Raw ADC values -> (temp_cC, press_Pa, rh_cP) as read() returns them."""
    t, t_fine = compensate_t(c, adc_t)
    return t, (compensate_p(c, adc_p, t_fine) + 128) >> 8, \
        (compensate_h(c, adc_h, t_fine) * 100 + 512) >> 10


class BME280(I2CDevice):
    def __init__(self, i2c, addr=0x76, sleep_ms=None):
        I2CDevice.__init__(self, i2c, addr, "BME280")
        self.sleep_ms = sleep_ms if sleep_ms is not None else default_sleep_ms()
        self.cal = None
        self.resets = 0
        self._rx = bytearray(8)

    def ident(self):
        """A model id, not unique (no documented serial; the trim NVM is at
        best a weak fingerprint, not used): "bme280-model-<chip id, 2 hex>"."""
        return "bme280-model-%02x" % self.reg8(_REG_ID)

    def init(self):
        self.check_id("chip id", self.reg8(_REG_ID), CHIP_ID, KNOWN_IDS)
        a, b = bytearray(26), bytearray(7)
        a2, b2 = bytearray(26), bytearray(7)
        for x, y in ((a, b), (a2, b2)):
            self.rx_mem(_REG_CALIB_A, x)
            self.rx_mem(_REG_CALIB_B, y)
        if a != a2 or b != b2:
            raise CRCError("%s: calibration reads differ between two reads (garbled read?)"
                           % self.name)
        self.cal = calibration(a, b)
        self.tx(SETUP)

    def _measure(self):
        self.tx(TRIGGER)
        self.sleep_ms(MEASURE_MS)
        for i in range(POLLS):
            if not self.reg8(_REG_STATUS) & _STATUS_MEASURING:
                break
            self.sleep_ms(POLL_MS)
        else:
            raise BusTimeout("%s: stuck busy bit (status measuring after %d polls)"
                             % (self.name, POLLS))
        b = self._rx
        self.rx_mem(_REG_DATA, b)
        if b[2] & 0x0F or b[5] & 0x0F or (b[6] & b[7]) == 0xFF:
            raise CRCError("%s: garbled or short read (0xF9=0x%02x, 0xFC=0x%02x, hum 0x%02x%02x)"
                           % (self.name, b[2], b[5], b[6], b[7]))

    def read(self):
        if self.cal is None:
            self.init()
        b = self._rx
        for attempt in range(2):
            self._measure()
            adc_p = (b[0] << 12) | (b[1] << 4) | (b[2] >> 4)
            adc_t = (b[3] << 12) | (b[4] << 4) | (b[5] >> 4)
            adc_h = (b[6] << 8) | b[7]
            if adc_p != SKIPPED_PT or adc_t != SKIPPED_PT or adc_h != SKIPPED_H:
                break
            self.resets += 1           # reset values: the chip slept instead of measuring
        else:
            raise BusTimeout("%s: no measurement after two triggers (data at reset values)"
                             % self.name)
        t, p, h = convert(self.cal, adc_t, adc_p, adc_h)
        if not -4000 <= t <= 8500 or not 30000 <= p <= 110000:
            raise RangeError("%s: %d.%02d C, %d Pa outside -40..85 C, 300..1100 hPa"
                             % (self.name, t // 100, t % 100, p))
        return t, p, h
