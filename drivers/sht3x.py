# Sensirion SHT3x temperature/humidity sensor (I2C). Integer math only.
#
# Single shot, high repeatability, no clock stretching: command 0x24 0x00,
# wait >= 15.5 ms (16 ms), read 6 bytes: T msb, T lsb, CRC, RH msb, RH lsb, CRC
# (CRC-8 0x31/0xFF over each word). Before the measurement is ready the chip
# NACKs the read header -> NackError.
#
# read() -> (temp_cC, rh_cP), ints in 0.01 C and 0.01 %RH:
#   T  = -4500 + (17500 * raw) // 65535     (floor)
#   RH = (10000 * raw) // 65535             (floor; always 0..10000)
# Bad data:
#   all six bytes 0xFF (a released bus: nobody drives SDA) -> CRCError, named so
#   a CRC on either word is wrong                           -> CRCError naming it
#   both words 0xFFFF with valid CRCs (130 C together with
#   100 %RH: saturated/implausible)                         -> RangeError

import time

from drivers.crc import crc8_sensirion
from drivers.errors import CRCError, RangeError, wrap_oserror

CMD_MEASURE = b"\x24\x00"
MEASURE_MS = 16


def _default_sleep_ms():
    f = getattr(time, "sleep_ms", None)
    if f is not None:
        return f
    return lambda ms: time.sleep(ms / 1000)


class SHT3x:
    def __init__(self, i2c, addr=0x44, sleep_ms=None):
        self.i2c = i2c
        self.addr = addr
        self.sleep_ms = sleep_ms if sleep_ms is not None else _default_sleep_ms()
        self.name = "SHT3x@0x%02x" % addr
        self._rx = bytearray(6)

    def read(self):
        b = self._rx
        try:
            self.i2c.writeto(self.addr, CMD_MEASURE)
            self.sleep_ms(MEASURE_MS)
            self.i2c.readfrom_into(self.addr, b)
        except OSError as e:
            raise wrap_oserror(e, self.name)
        if b[0] == 0xFF and b[1] == 0xFF and b[2] == 0xFF and b[3] == 0xFF \
                and b[4] == 0xFF and b[5] == 0xFF:
            raise CRCError("%s: read all 0xFF (bus floating?)" % self.name)
        c = crc8_sensirion(b, 0, 2)
        if c != b[2]:
            raise CRCError("%s: CRC mismatch on temperature word (got 0x%02x, want 0x%02x)"
                           % (self.name, b[2], c))
        c = crc8_sensirion(b, 3, 5)
        if c != b[5]:
            raise CRCError("%s: CRC mismatch on humidity word (got 0x%02x, want 0x%02x)"
                           % (self.name, b[5], c))
        t_raw = (b[0] << 8) | b[1]
        rh_raw = (b[3] << 8) | b[4]
        if t_raw == 0xFFFF and rh_raw == 0xFFFF:
            raise RangeError("%s: both words saturated (0xFFFF)" % self.name)
        return (-4500 + (17500 * t_raw) // 65535, (10000 * rh_raw) // 65535)
