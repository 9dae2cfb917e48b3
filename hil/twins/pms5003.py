# Model of a Plantower PMS5003 particulate sensor on a serial line. Portable.
# Serve it with hil/buses/serial_loop.py (in-process) or hil/harness/pty_serial.py.
#
# source() -> 12 ints: PM1.0, PM2.5, PM10 standard, the same atmospheric
# (ug/m3), particle counts > 0.3, 0.5, 1.0, 2.5, 5.0, 10 um per 0.1 L.
# Starts awake in active mode: poll(now_ms) gives a frame every period_ms
# (0: whenever asked). Commands (7 bytes, checksum checked, else ignored):
# 0xE1 mode and 0xE4 sleep are answered with a short frame (42 4D 00 04 CMD
# DATA sum); 0xE4 wake is not (the sensor restarts); 0xE2 read answers one
# data frame in passive mode. Asleep, it answers nothing but wake.
# Faults, one-shot unless said: drop_next (no frame), garble_next (96 random
# bytes without a frame start instead of the frame), truncate_next (the first
# 20 bytes only), bad_checksum_next, noise_next=n (n stray bytes, then the
# frame), stuck_asleep (kept: asleep, ignores wake, until cleared).

from drivers.pms5003 import CMD_MODE, CMD_READ, CMD_SLEEP, FRAME_LEN, checksum
from drivers.uart import ticks_diff
from hil.rng import Rng


def _sum(b, n):
    s = checksum(b, 0, n)
    b[n] = s >> 8
    b[n + 1] = s & 0xFF
    return b


class PMS5003Model:
    REQUEST_LEN = 7

    def __init__(self, source, seed=1, period_ms=1000):
        self.source = source
        self.period_ms = period_ms
        self.active = True
        self.asleep = False
        self.stuck_asleep = False
        self.drop_next = False
        self.garble_next = False
        self.truncate_next = False
        self.bad_checksum_next = False
        self.noise_next = 0
        self.frames = 0              # data frames sent
        self.commands = 0            # well-formed commands received
        self._last = None
        self._rng = Rng(seed)

    @staticmethod
    def frame_ok(buf, start=0):
        return buf[start] == 0x42 and buf[start + 1] == 0x4D and \
            checksum(buf, start, start + 5) == (buf[start + 5] << 8) | buf[start + 6]

    def handle(self, frame):
        """One 7-byte command -> the answer, or None."""
        cmd, data = frame[2], frame[4]
        self.commands += 1
        if self.stuck_asleep:
            self.asleep = True
            return None
        if cmd == CMD_SLEEP and data:
            self.asleep = False
            return None
        if self.asleep:
            return None
        if cmd == CMD_SLEEP:
            self.asleep = True
        elif cmd == CMD_MODE:
            self.active = data == 1
            self._last = None
        elif cmd == CMD_READ:
            return None if self.active else self._emit()
        else:
            return None
        return bytes(_sum(bytearray((0x42, 0x4D, 0, 4, cmd, data, 0, 0)), 6))

    def poll(self, now_ms):
        """Active mode: a frame when one is due, else None."""
        if not self.active or self.asleep or self.stuck_asleep:
            return None
        if self._last is not None and ticks_diff(now_ms, self._last) < self.period_ms:
            return None
        self._last = now_ms
        return self._emit()

    def _emit(self):
        if self.drop_next:
            self.drop_next = False
            return None
        if self.garble_next:
            self.garble_next = False
            g = bytearray(96)
            for i in range(96):
                b = self._rng.next() & 0xFF
                g[i] = 0x24 if b == 0x42 else b
            return bytes(g)
        f = bytearray(FRAME_LEN)
        f[0] = 0x42
        f[1] = 0x4D
        f[3] = FRAME_LEN - 4
        i = 4
        for v in self.source():
            f[i] = (v >> 8) & 0xFF
            f[i + 1] = v & 0xFF
            i += 2
        f[28] = 0x97                 # data 13: version, error code 0
        _sum(f, 30)
        self.frames += 1
        if self.bad_checksum_next:
            self.bad_checksum_next = False
            f[31] ^= 0xFF
        elif self.truncate_next:
            self.truncate_next = False
            f = f[:20]
        if self.noise_next:
            f = bytearray((0x00, 0xFF) * self.noise_next)[:self.noise_next] + f
            self.noise_next = 0
        return bytes(f)
