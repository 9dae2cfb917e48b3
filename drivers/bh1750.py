# ROHM BH1750FVI ambient light sensor (I2C, 0x23; 0x5C with ADDR high).
# No id register, no register pointer: one-byte opcodes, 2-byte result.
#
#   0x00 power down   0x01 power on   0x07 reset (clears the data register)
#   0x10 continuous high resolution (1 lx, 120 ms typ, 180 ms max)
#   0x20 one time high resolution (the same, then power down)
# Result: big-endian count; lux = count / 1.2 (measurement time register at
# its default 69). read() returns milli-lux as an int:
#   mlx = round(count * 1000 / 1.2) = (count * 2500 + 1) // 3
# A count of 0xFFFF is full scale (>= 54612 lx), and also what a read no
# chip drives looks like -> RangeError. A read cut after the first byte is
# not detectable (no CRC, no spare bits).
#
# One time mode (the default) sends the measurement command with every
# reading, so a chip that reset itself (back in power down) measures again
# as if nothing happened: 2 bus transactions per reading (command, read),
# 180 ms apart. continuous=True: init() starts continuous measurement and a
# reading is 1 transaction, but a reset chip would go on answering its
# cleared data register, 0 lx, unnoticed.

from drivers._reg import I2CDevice, default_sleep_ms
from drivers.errors import RangeError

POWER_ON = b"\x01"
RESET = b"\x07"
CONT_HRES = b"\x10"
ONCE_HRES = b"\x20"
MEASURE_MS = 180


class BH1750(I2CDevice):
    def __init__(self, i2c, addr=0x23, continuous=False, sleep_ms=None):
        I2CDevice.__init__(self, i2c, addr, "BH1750")
        self.continuous = continuous
        self.sleep_ms = sleep_ms if sleep_ms is not None else default_sleep_ms()
        self._rx = bytearray(2)

    def init(self):
        self.tx(POWER_ON)
        self.tx(RESET)
        if self.continuous:
            self.tx(CONT_HRES)
            self.sleep_ms(MEASURE_MS)

    def read(self):
        if not self.continuous:
            self.tx(ONCE_HRES)
            self.sleep_ms(MEASURE_MS)
        b = self._rx
        self.rx(b)
        count = (b[0] << 8) | b[1]
        if count == 0xFFFF:
            raise RangeError("%s: count 0xFFFF: full scale (>= 54612 lx) or nobody driving SDA"
                             % self.name)
        return (count * 2500 + 1) // 3
