# Analog Devices ADXL345 3-axis accelerometer (I2C, 0x53 or 0x1D), full
# resolution +-16 g, 100 Hz, FIFO bypassed. Integer math only.
#
#   0x00 DEVID        0xE5
#   0x2C BW_RATE      0x0A: 100 Hz      0x2D POWER_CTL  0x08: measure
#   0x31 DATA_FORMAT  0x0B: FULL_RES, right-justified, +-16 g (13-bit values)
#   0x32..0x37        X, Y, Z: little-endian, signed (sign-extended to 16 bits)
#   0x38 FIFO_CTL     0x00: bypass
# Reads auto-increment, so one 8-byte burst 0x31..0x38 gets the three axes of
# one sample between two registers of known value:
#   DATA_FORMAT reads 0x00 (its power-on value): the chip reset and sits in
#     standby -> init() again, `resets` counted, read once more
#   DATA_FORMAT or FIFO_CTL anything else (a burst cut short reads 0xFF from
#     there on; a floating bus reads all 0xFF)            -> CRCError
# Scale: 256 LSB/g in full resolution, i.e. 1000/256 = 3.90625 mg/LSB (the
# datasheet's "3.9 mg/LSB"): mg = round(count * 125 / 32).
#
# read() -> (x_mg, y_mg, z_mg); read_raw() -> counts. Bus transactions per
# reading: 1 (the burst); 5 on the reading that finds a reset.
# Vibration: RMS accumulates samples (counts) and gives the RMS of the
# acceleration vector about its mean over the window, in mg (gravity and a
# static tilt drop out); rms_mg(n) takes n samples one output period apart,
# and Vibration(adxl, n).read() is that, for a channel that reads one number.

from drivers._reg import I2CDevice, const, default_sleep_ms, rdiv, s16
from drivers.errors import CRCError

_REG_DEVID = const(0x00)
_REG_BW_RATE = const(0x2C)
_REG_DATA_FORMAT = const(0x31)
_REG_FIFO_CTL = const(0x38)
DEVID = const(0xE5)
KNOWN_IDS = {0xE6: "ADXL346"}
DATA_FORMAT = const(0x0B)
FIFO_CTL = const(0x00)
RATE_HZ = const(100)
RATE_POWER = b"\x0a\x08"            # BW_RATE 100 Hz, then POWER_CTL measure


def isqrt(n):
    """floor(sqrt(n)) for an int n >= 0 (Newton's method, ints only)."""
    if n <= 0:
        return 0
    x = n
    y = (x + 1) // 2
    while y < x:
        x = y
        y = (x + n // x) // 2
    return x


class RMS:
    """Vibration RMS over a window of samples (counts in, mg out)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.n = 0
        self.sx = self.sy = self.sz = 0
        self.ss = 0

    def add(self, x, y, z):
        self.n += 1
        self.sx += x
        self.sy += y
        self.sz += z
        self.ss += x * x + y * y + z * z

    def mg(self):
        """sqrt(mean |a - mean(a)|^2) in mg, rounded; 0 for an empty window."""
        n = self.n
        if n == 0:
            return 0
        v = n * self.ss - (self.sx * self.sx + self.sy * self.sy + self.sz * self.sz)
        # counts^2 * n^2 -> mg^2 (x (125/32)^2), x4 to round the root
        return (isqrt(v * 62500 // (1024 * n * n)) + 1) // 2


class ADXL345(I2CDevice):
    def __init__(self, i2c, addr=0x53, sleep_ms=None):
        I2CDevice.__init__(self, i2c, addr, "ADXL345")
        self.sleep_ms = sleep_ms if sleep_ms is not None else default_sleep_ms()
        self.resets = 0
        self.window = RMS()
        self._rx = bytearray(8)
        self._v = bytearray(1)

    def _set(self, reg, v):
        self._v[0] = v
        self.tx_mem(reg, self._v)

    def init(self):
        self.check_id("DEVID", self.reg8(_REG_DEVID), DEVID, KNOWN_IDS)
        self.configure()

    def configure(self):
        # format and FIFO first, then rate and measure in one write
        self._set(_REG_DATA_FORMAT, DATA_FORMAT)
        self._set(_REG_FIFO_CTL, FIFO_CTL)
        self.tx_mem(_REG_BW_RATE, RATE_POWER)

    def read_raw(self):
        b = self._rx
        self.rx_mem(_REG_DATA_FORMAT, b)
        if b[0] == 0 and b[7] == FIFO_CTL:
            self.configure()                    # power-on values: standby
            self.resets += 1
            self.sleep_ms(1000 // RATE_HZ + 2)  # first sample after 1/rate + 1.1 ms
            self.rx_mem(_REG_DATA_FORMAT, b)
        if b[0] != DATA_FORMAT or b[7] != FIFO_CTL:
            raise CRCError("%s: DATA_FORMAT 0x%02x, FIFO_CTL 0x%02x around the data, want"
                           " 0x%02x, 0x%02x (garbled or short read)"
                           % (self.name, b[0], b[7], DATA_FORMAT, FIFO_CTL))
        return (s16(b[1] | (b[2] << 8)), s16(b[3] | (b[4] << 8)), s16(b[5] | (b[6] << 8)))

    def read(self):
        x, y, z = self.read_raw()
        return rdiv(x * 125, 32), rdiv(y * 125, 32), rdiv(z * 125, 32)

    def rms_mg(self, n):
        """Vibration RMS (mg) over n samples taken one output period apart."""
        w = self.window
        w.reset()
        for i in range(n):
            if i:
                self.sleep_ms(1000 // RATE_HZ)
            x, y, z = self.read_raw()
            w.add(x, y, z)
        return w.mg()


class Vibration:
    """The sensor as a vibration channel reads it: read() -> RMS (mg) over a
    window of n samples (n / 100 Hz long)."""

    def __init__(self, adxl, n=32):
        self.adxl = adxl
        self.n = n

    def init(self):
        self.adxl.init()

    def read(self):
        return self.adxl.rms_mg(self.n)
