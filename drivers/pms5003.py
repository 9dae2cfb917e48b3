# Plantower PMS5003 particulate matter sensor on a UART (9600 8N1), the
# protocol of the PMS5003 datasheet (V2.3, appendix I and II).
#
# Data frame, 32 bytes, words big-endian:
#   0x42 0x4D  frame length (= 2*13 + 2 = 28)
#   data 1..3   PM1.0 PM2.5 PM10, ug/m3, CF=1 "standard particle"
#   data 4..6   PM1.0 PM2.5 PM10, ug/m3, under atmospheric environment
#   data 7..12  particles > 0.3, 0.5, 1.0, 2.5, 5.0, 10 um in 0.1 L of air
#   data 13     reserved (version, error code)
#   checksum    sum of the 30 bytes before it, 16 bits
# Command, 7 bytes: 0x42 0x4D CMD 0x00 DATA, then the sum of those 5 bytes
# (16 bits, high byte first):
#   0xE1 mode  DATA 0 passive, 1 active (the power-up default: a frame every
#              0.2 to 2.3 s)
#   0xE2 read  one frame, in passive mode
#   0xE4 sleep DATA 0 sleep (fan off), 1 wake (data are good 30 s after)
# The sensor answers a mode or sleep command with a short frame (length 4),
# which read() skips.
#
# read() -> (pm1, pm2_5, pm10 standard, pm1, pm2_5, pm10 atmospheric ug/m3,
# n0_3, n0_5, n1_0, n2_5, n5_0, n10 per 0.1 L): ints. In passive mode one
# 0xE2 command written and one frame read per reading; in active mode no
# command, the next frame after the input is flushed. Frame start found by
# scanning for 0x42 0x4D, at most SCAN stray bytes (more -> CRCError); bad
# checksum -> CRCError; no whole frame before timeout_ms of silence ->
# BusTimeout (so is a sleeping sensor). `reserved` keeps data 13.
# The port is the UART protocol of drivers/uart.py; init() sets the mode.

from drivers.errors import BusTimeout, CRCError
from drivers.uart import UARTDevice

FRAME_LEN = 32
SCAN = 64                       # stray bytes searched for a frame start
CMD_MODE = 0xE1
CMD_READ = 0xE2
CMD_SLEEP = 0xE4


def checksum(b, start, end):
    s = 0
    for i in range(start, end):
        s += b[i]
    return s & 0xFFFF


class PMS5003(UARTDevice):
    def __init__(self, uart, passive=True, timeout_ms=2500):
        UARTDevice.__init__(self, uart, FRAME_LEN, timeout_ms, "PMS5003")
        self.passive = passive
        self.reserved = 0
        self._tx = bytearray(7)
        self._tx[0] = 0x42
        self._tx[1] = 0x4D

    def command(self, cmd, data=0):
        tx = self._tx
        tx[2] = cmd
        tx[3] = 0
        tx[4] = data
        s = checksum(tx, 0, 5)
        tx[5] = s >> 8
        tx[6] = s & 0xFF
        self.port.write(tx)

    def init(self):
        self.command(CMD_MODE, 0 if self.passive else 1)

    def set_passive(self):
        self.passive = True
        self.init()

    def set_active(self):
        self.passive = False
        self.init()

    def sleep(self):
        self.command(CMD_SLEEP, 0)

    def wake(self):
        self.command(CMD_SLEEP, 1)

    def _frame(self):
        rx = self._rx
        n = 0
        skipped = 0
        while True:
            n = self._fill(n, 4)
            if n < 4:
                raise self._fail(BusTimeout, "no frame (%d bytes, %d skipped)", n, skipped)
            k = 0
            while k < n - 1 and not (rx[k] == 0x42 and rx[k + 1] == 0x4D):
                k += 1
            if k == n - 1 and rx[k] != 0x42:
                k = n
            if k == 0:
                ln = (rx[2] << 8) | rx[3]
                end = 4 + ln
                if ln == FRAME_LEN - 4 or ln == 4:
                    n = self._fill(n, end)
                    if n < end:
                        raise self._fail(BusTimeout, "short frame (%d of %d bytes)", n, end)
                    if ln == 4:
                        k = end                  # a command's answer: skip it
                    else:
                        s = checksum(rx, 0, 30)
                        if s != (rx[30] << 8) | rx[31]:
                            raise self._fail(CRCError, "checksum 0x%04x, want 0x%04x",
                                             (rx[30] << 8) | rx[31], s)
                        return rx
                else:
                    k = 1                        # 0x42 0x4D inside noise
            skipped += k
            if skipped > SCAN:
                raise self._fail(CRCError, "no frame start in %d bytes", skipped)
            n = self._shift(k, n)

    def read(self):
        self._flush()
        if self.passive:
            self.command(CMD_READ)
        b = self._frame()
        self.reserved = (b[28] << 8) | b[29]
        return tuple([(b[i] << 8) | b[i + 1] for i in range(4, 28, 2)])
