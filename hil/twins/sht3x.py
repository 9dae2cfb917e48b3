# Model of a Sensirion SHT3x for the emulated I2C bus. Portable.
#
# source() -> (temp_cC, rh_cP) ints. Command 0x2400 (single shot, high
# repeatability, no clock stretching) latches a measurement; the next read
# returns T msb, T lsb, CRC, RH msb, RH lsb, CRC. A read with no measurement
# pending NACKs (OSError EIO), as the chip does. 0x30A2 (soft reset) drops a
# pending measurement; 0x3780 and 0x3682 (serial number, without and with
# clock stretching) latch the serial (`serial`, 32 bits, settable: a test
# swaps the part by setting it); any other command NACKs.
#
# raw = ceil((T + 4500) * 65535 / 17500), raw_rh = ceil(RH * 65535 / 10000),
# clamped to 0..65535: the smallest raw whose datasheet conversion (floored,
# as the driver does) gives back exactly T and RH.
#
# Faults (one-shot): corrupt_crc_next = True or "temp" flips the temperature
# CRC byte of the next read, "rh" the humidity one.

import errno

from drivers.crc import crc8_sensirion


def _raw(x, span):
    if x <= 0:
        return 0
    r = (x * 65535 + span - 1) // span
    return r if r < 65535 else 65535


class SHT3xModel:
    def __init__(self, source, serial=0x1A2B3C4D):
        self.source = source
        self.serial = serial
        self.corrupt_crc_next = False
        self.measurements = 0
        self._pending = None

    def write(self, data):
        if not data:
            return                              # address probe
        cmd = (data[0] << 8) | data[1] if len(data) >= 2 else -1
        if cmd == 0x2400:
            t, rh = self.source()
            self.measurements += 1
            self._pending = self.frame(_raw(t + 4500, 17500), _raw(rh, 10000))
        elif cmd == 0x3780 or cmd == 0x3682:
            self._pending = self.frame(self.serial >> 16, self.serial & 0xFFFF)
        elif cmd == 0x30A2:
            self._pending = None
        else:
            raise OSError(errno.EIO, "EIO")

    @staticmethod
    def frame(t_raw, rh_raw):
        b = bytearray(6)
        b[0] = t_raw >> 8
        b[1] = t_raw & 0xFF
        b[2] = crc8_sensirion(b, 0, 2)
        b[3] = rh_raw >> 8
        b[4] = rh_raw & 0xFF
        b[5] = crc8_sensirion(b, 3, 5)
        return b

    def read(self, n):
        b = self._pending
        if b is None:
            raise OSError(errno.EIO, "EIO")     # no measurement ready: NACK
        self._pending = None
        c = self.corrupt_crc_next
        if c:
            b[5 if c == "rh" else 2] ^= 0xFF
            self.corrupt_crc_next = False
        out = bytearray(n)
        for i in range(n):
            out[i] = b[i] if i < 6 else 0xFF
        return bytes(out)
