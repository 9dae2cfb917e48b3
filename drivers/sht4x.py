# Sensirion SHT4x temperature/humidity sensor (I2C, 0x44; 0x45/0x46 on some
# part numbers). Integer math only. Command based: no register pointer.
#
#   0xFD  measure T and RH, high repeatability (max 8.3 ms: wait 9 ms)
#   0x89  read serial number (two words)       (wait 1 ms)
#   0x94  soft reset                            (max 1 ms)
# Every answer is 6 bytes: word, CRC, word, CRC; CRC-8 poly 0x31, init 0xFF
# (0xBE 0xEF -> 0x92). Before a measurement is ready the chip NACKs the read.
#
# read() -> (temp_cC, rh_cP), ints in 0.01 C and 0.01 %RH:
#   T  = -4500 + (17500 * St) // 65535         (floor, as SHT3x)
#   RH = -600 + (12500 * Srh) // 65535, clipped to 0..10000 as the datasheet says
# Bad data: all six bytes 0xFF (released bus; a read cut short reads 0xFF for
# the missing bytes) or a CRC mismatch -> CRCError naming the word.
# Bus transactions per reading: 2 (command write, 6-byte read).
# ident() -> "sht4x-<8 hex>" from serial() (command 0x89, two CRC-checked words).

from drivers._reg import I2CDevice, default_sleep_ms
from drivers.crc import sensirion_words

CMD_MEASURE = b"\xfd"
CMD_SERIAL = b"\x89"
CMD_RESET = b"\x94"
MEASURE_MS = 9
SERIAL_MS = 1
RESET_MS = 1


class SHT4x(I2CDevice):
    def __init__(self, i2c, addr=0x44, sleep_ms=None):
        I2CDevice.__init__(self, i2c, addr, "SHT4x")
        self.sleep_ms = sleep_ms if sleep_ms is not None else default_sleep_ms()
        self._rx = bytearray(6)

    def _ask(self, cmd, ms, first, second):
        self.tx(cmd)
        self.sleep_ms(ms)
        self.rx(self._rx)
        return sensirion_words(self._rx, self.name, first, second)

    def read(self):
        t, rh = self._ask(CMD_MEASURE, MEASURE_MS, "temperature", "humidity")
        rh = -600 + (12500 * rh) // 65535
        return (-4500 + (17500 * t) // 65535, 0 if rh < 0 else 10000 if rh > 10000 else rh)

    def serial(self):
        """The chip's 32-bit serial number."""
        hi, lo = self._ask(CMD_SERIAL, SERIAL_MS, "serial high", "serial low")
        return (hi << 16) | lo

    def ident(self):
        """The component id: "sht4x-<8 hex>" (unique)."""
        return "sht4x-%08x" % self.serial()

    def reset(self):
        self.tx(CMD_RESET)
        self.sleep_ms(RESET_MS)
