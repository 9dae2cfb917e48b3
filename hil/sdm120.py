# Model of an Eastron SDM120 energy meter speaking Modbus RTU, and an
# in-process serial port that connects it to the master. Portable.
#
# source() -> (voltage_V, current_A, power_W, energy_kWh) floats, sampled once
# per request. Registers are IEEE-754 binary32 big-endian over 2 registers.
# Input registers (fc 0x04), readable blocks 0x0000-0x004F and 0x0156-0x0159:
#   0x0000 V   0x0006 A   0x000C W   0x0012 VA   0x0018 var   0x001E PF
#   0x0046 Hz  0x0048 import kWh   0x004A export kWh   0x0156 total kWh
#   (other registers inside a block read 0.0)
# Holding registers (fc 0x03), block 0x0000-0x003F: 0x0014 meter id,
#   0x001C baud code (2 = 9600).
# handle(frame) answers one complete request: another slave (or broadcast) or a
# bad CRC -> None (silence); unknown function -> exception 1; a register outside
# the blocks -> exception 2; count 0 or > 125 -> exception 3.
# Faults, one-shot: corrupt_crc_next, garble_next, drop_next, exception_next=code.

import struct

from drivers.crc import crc16_modbus
from hil.rng import Rng

INPUT_BLOCKS = ((0x0000, 0x0050), (0x0156, 0x015A))
HOLDING_BLOCKS = ((0x0000, 0x0040),)
REQUEST_LEN = 8


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
    def __init__(self, source, slave=1, seed=1):
        self.source = source
        self.slave = slave
        self.corrupt_crc_next = False
        self.garble_next = False
        self.drop_next = False
        self.exception_next = 0
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
            elif not 1 <= count <= 125:
                code = 3
            else:
                code = 2
                for lo, hi in INPUT_BLOCKS if fc == 0x04 else HOLDING_BLOCKS:
                    if lo <= addr and addr + count <= hi:
                        code = 0
        if code:
            return _with_crc(bytearray((self.slave, fc | 0x80, code)))
        vals = self._values(fc)
        out = bytearray((self.slave, fc, 2 * count))
        for r in range(addr, addr + count):
            f = struct.pack(">f", vals.get(r & ~1, 0.0))
            h = 2 * (r & 1)
            out.append(f[h])
            out.append(f[h + 1])
        return _with_crc(out)

    def handle(self, frame):
        """One 8-byte request -> reply bytes, or None for no reply."""
        if len(frame) != REQUEST_LEN or not frame_ok(frame) or frame[0] != self.slave:
            return None
        self.requests += 1
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
        return bytes(r)


class LoopbackPort:
    """In-process serial port (pyserial-like) wired to a Modbus slave model:
    written bytes are framed as 8-byte requests (resyncing one byte at a time
    on a bad CRC) and the model's reply is queued for read()."""

    def __init__(self, model):
        self.model = model
        self.timeout = 0
        self._req = bytearray()
        self._out = b""
        self._pos = 0

    def write(self, buf):
        self._req.extend(buf)
        req = self._req
        while len(req) >= REQUEST_LEN:
            if frame_ok(req):
                r = self.model.handle(bytes(req[0:REQUEST_LEN]))
                req[0:REQUEST_LEN] = b""
                if r:
                    self._out = self._out[self._pos:] + r
                    self._pos = 0
            else:
                req[0:1] = b""
        return len(buf)

    def read(self, n=1):
        p = self._pos
        k = len(self._out) - p
        if k <= 0:
            return b""
        if n < k:
            k = n
        self._pos = p + k
        return self._out[p:p + k]

    def reset_input_buffer(self):
        self._out = b""
        self._pos = 0

    def close(self):
        pass
