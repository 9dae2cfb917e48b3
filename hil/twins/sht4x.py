# Model of a Sensirion SHT4x for the emulated I2C bus. Portable.
#
# The quantities come from source() -> (temp_cC, rh_cP), or are fixed with
# set(temp_cC=..., rh_cP=...). One-byte commands:
#   0xFD / 0xF6 / 0xE0  measure (high / medium / low repeatability)
#   0x89                serial number (`serial`, 32 bits)
#   0x94                soft reset (drops a pending answer)
# any other byte NACKs (OSError EIO). The next read returns the 6-byte answer
# (word, CRC, word, CRC); a read with nothing pending NACKs, as the chip does
# before a measurement is done. Answers, NACKs and CRC corruption
# (corrupt_crc_next = True / "temp" / "rh", one-shot) are SHT3xModel's.
#
# Raw values are the smallest whose datasheet conversion (floored, as the
# driver does) gives back exactly the value set, clamped to 0..65535:
#   St  = ceil((T + 4500) * 65535 / 17500)
#   Srh = ceil((RH + 600) * 65535 / 12500)     (RH 0..100 % lies inside)

import errno

from hil.twins.settable import Settable
from hil.twins.sht3x import SHT3xModel, _raw


class SHT4xModel(Settable, SHT3xModel):
    NAMES = ("temp_cC", "rh_cP")

    def __init__(self, source=None, serial=0x0BADC0DE):
        SHT3xModel.__init__(self, None)
        self._quantities(source, (2500, 5000))
        self.serial = serial

    def write(self, data):
        if not data:
            return                                  # address probe
        cmd = data[0] if len(data) == 1 else -1
        if cmd in (0xFD, 0xF6, 0xE0):
            t, rh = self.source()
            self.measurements += 1
            self._pending = self.frame(_raw(t + 4500, 17500), _raw(rh + 600, 12500))
        elif cmd == 0x89:
            self._pending = self.frame(self.serial >> 16, self.serial & 0xFFFF)
        elif cmd == 0x94:
            self._pending = None
        else:
            raise OSError(errno.EIO, "EIO")
