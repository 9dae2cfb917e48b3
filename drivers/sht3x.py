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
# Bus transactions per reading: 2 (command write, 6-byte read).
#
# Identity (Sensirion "Electronic identification code, SHT3x"): command
# 0x3780 (no clock stretching; 0x3682 is the same with clock stretching,
# tried when the first is not acknowledged), wait 1 ms, read 6 bytes: two
# words with their CRCs, the 32-bit serial high word first.
# serial() -> int; ident() -> "sht3x-<8 hex>" (a component id, unique).

from drivers._reg import I2CDevice, default_sleep_ms
from drivers.crc import sensirion_words
from drivers.errors import NackError, RangeError

CMD_MEASURE = b"\x24\x00"
CMD_SERIAL = b"\x37\x80"
CMD_SERIAL_CS = b"\x36\x82"
MEASURE_MS = 16
SERIAL_MS = 1


class SHT3x(I2CDevice):
    def __init__(self, i2c, addr=0x44, sleep_ms=None):
        I2CDevice.__init__(self, i2c, addr, "SHT3x")
        self.sleep_ms = sleep_ms if sleep_ms is not None else default_sleep_ms()
        self._rx = bytearray(6)

    def read(self):
        b = self._rx
        self.tx(CMD_MEASURE)
        self.sleep_ms(MEASURE_MS)
        self.rx(b)
        t_raw, rh_raw = sensirion_words(b, self.name, "temperature", "humidity")
        if t_raw == 0xFFFF and rh_raw == 0xFFFF:
            raise RangeError("%s: both words saturated (0xFFFF)" % self.name)
        return (-4500 + (17500 * t_raw) // 65535, (10000 * rh_raw) // 65535)

    def serial(self):
        """The chip's 32-bit serial number (two CRC-checked words)."""
        try:
            self.tx(CMD_SERIAL)
        except NackError:
            self.tx(CMD_SERIAL_CS)
        self.sleep_ms(SERIAL_MS)
        self.rx(self._rx)
        hi, lo = sensirion_words(self._rx, self.name, "serial high", "serial low")
        return (hi << 16) | lo

    def ident(self):
        return "sht3x-%08x" % self.serial()
