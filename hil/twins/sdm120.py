# Model of an Eastron SDM120 energy meter speaking Modbus RTU (and the base
# of the other Eastron models, hil/twins/sdm630.py: a subclass gives its register
# blocks and values). Portable. hil/buses/serial_loop.py connects it to the master
# in-process, hil/harness/pty_serial.py over a pseudo-terminal.
#
# source() -> (voltage_V, current_A, power_W, energy_kWh) floats, sampled once
# per request. Registers are IEEE-754 binary32 big-endian over 2 registers.
# Input registers (fc 0x04), readable blocks 0x0000-0x004F and 0x0156-0x0159:
#   0x0000 V   0x0006 A   0x000C W   0x0012 VA   0x0018 var   0x001E PF
#   0x0046 Hz  0x0048 import kWh   0x004A export kWh   0x0156 total kWh
#   (other registers inside a block read 0.0)
# Holding registers (fc 0x03), block 0x0000-0x003F: 0x0014 meter id,
#   0x001C baud code (2 = 9600); block 0xFC00-0xFC03: 0xFC00 the serial
#   number (`serial`, settable: a u32, high word first, not a float).
# handle(frame) answers one complete request: another slave (or broadcast) or a
# bad CRC -> None (silence); unknown function -> exception 1; a register outside
# the blocks -> exception 2; count 0 or > MAX_COUNT -> exception 3 (with PAIRS,
# as Eastron meters: an odd address -> 2, an odd count -> 3).
# Faults, one-shot: corrupt_crc_next, garble_next, drop_next, exception_next=code,
# truncate_next (half a reply, then silence), noise_next=n (n stray 0x00/0xFF
# bytes before the reply), delay_next=ms (the reply comes that late: the port
# reads delay_ms after each handle()).

import struct

from hil.rng import Rng
from hil.buses.serial_loop import LoopbackPort  # noqa: F401  (re-exported: it serves any model)

INPUT_BLOCKS = ((0x0000, 0x0050), (0x0156, 0x015A))
HOLDING_BLOCKS = ((0x0000, 0x0040), (0xFC00, 0xFC04))
REQUEST_LEN = 8


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC_T = _crc_table()


def crc16_modbus(data, start=0, end=None):
    """The Modbus CRC-16 of drivers/crc.py, a byte at a time from a table:
    the same values (tests/test_drivers_modbus.py), eight times fewer steps
    for the twin's long replies (the fleet simulation's hot path)."""
    if end is None:
        end = len(data)
    crc = 0xFFFF
    t = _CRC_T
    for i in range(start, end):
        crc = (crc >> 8) ^ t[(crc ^ data[i]) & 0xFF]
    return crc


def frame_ok(buf, start=0):
    """True if buf[start:start+8] is a request with a valid CRC."""
    c = crc16_modbus(buf, start, start + 6)
    return buf[start + 6] == (c & 0xFF) and buf[start + 7] == (c >> 8)


def _with_crc(b):
    c = crc16_modbus(b)
    b.append(c & 0xFF)
    b.append(c >> 8)
    return b


class SDM120Model:
    REQUEST_LEN = REQUEST_LEN
    frame_ok = staticmethod(frame_ok)
    INPUT_BLOCKS = INPUT_BLOCKS
    HOLDING_BLOCKS = HOLDING_BLOCKS
    MAX_COUNT = 125
    PAIRS = False

    def __init__(self, source, slave=1, seed=1, serial=21000123):
        self.source = source
        self.serial = serial
        self.slave = slave
        self.corrupt_crc_next = False
        self.garble_next = False
        self.drop_next = False
        self.exception_next = 0
        self.truncate_next = False
        self.noise_next = 0
        self.delay_next = 0
        self.delay_ms = 0
        self.requests = 0          # well-formed requests addressed to us
        self._rng = Rng(seed)

    def _values(self, fc):
        if fc == 0x03:
            return {0x0014: float(self.slave), 0x001C: 2.0}
        v, a, w, kwh = self.source()
        va = v * a
        return {
            0x0000: v, 0x0006: a, 0x000C: w, 0x0012: va, 0x0018: 0.0,
            0x001E: (w / va) if va else 1.0, 0x0046: 50.0,
            0x0048: kwh if kwh > 0 else 0.0, 0x004A: 0.0, 0x0156: kwh,
        }

    def _reply(self, fc, addr, count):
        code = self.exception_next
        self.exception_next = 0
        if not code:
            if fc not in (0x03, 0x04):
                code = 1
            elif not 1 <= count <= self.MAX_COUNT or (self.PAIRS and count & 1):
                code = 3
            else:
                code = 2
                for lo, hi in self.INPUT_BLOCKS if fc == 0x04 else self.HOLDING_BLOCKS:
                    if lo <= addr and addr + count <= hi and not (self.PAIRS and addr & 1):
                        code = 0
        if code:
            return _with_crc(bytearray((self.slave, fc | 0x80, code)))
        vals = self._values(fc)
        out = bytearray((self.slave, fc, 2 * count))
        for r in range(addr, addr + count):
            if fc == 0x03 and r >= 0xFC00:
                f = struct.pack(">I", self.serial if r < 0xFC02 else 0)
                h = 2 * (r & 1)
                out.append(f[h])
                out.append(f[h + 1])
                continue
            f = struct.pack(">f", vals.get(r & ~1, 0.0))
            h = 2 * (r & 1)
            out.append(f[h])
            out.append(f[h + 1])
        return _with_crc(out)

    def handle(self, frame):
        """One 8-byte request -> reply bytes, or None for no reply."""
        self.delay_ms = 0
        if len(frame) != REQUEST_LEN or not frame_ok(frame) or frame[0] != self.slave:
            return None
        self.requests += 1
        self.delay_ms, self.delay_next = self.delay_next, 0
        if self.drop_next:
            self.drop_next = False
            return None
        r = self._reply(frame[1], (frame[2] << 8) | frame[3], (frame[4] << 8) | frame[5])
        if self.garble_next:
            self.garble_next = False
            for i in range(len(r)):
                r[i] = self._rng.next() & 0xFF
            if r[0] == self.slave:
                r[0] ^= 0x80
        elif self.corrupt_crc_next:
            self.corrupt_crc_next = False
            r[-1] ^= 0xFF
        elif self.truncate_next:
            self.truncate_next = False
            r = r[:len(r) // 2]
        if self.noise_next:
            r = bytearray((0x00, 0xFF) * self.noise_next)[:self.noise_next] + r
            self.noise_next = 0
        return bytes(r)
