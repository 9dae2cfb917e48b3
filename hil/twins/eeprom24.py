# Models of the ID EEPROMs (drivers/eeprom24.py) for the emulated I2C bus, at
# the transaction level. Portable.
#
# EEPROM24Model: a 256-byte array, blank (0xFF) when new. A write's first byte
# sets the word address; the bytes after it are latched into the address's
# 8-byte page, the address rolling over to the page's start past its end (as
# the chip does: a driver that does not split at page boundaries overwrites
# the page's start). A write with data starts a write cycle: the next
# `busy_polls` transactions of any kind NACK (OSError EIO), as the chip does
# not acknowledge its address while it writes. A read returns bytes from the
# address, which wraps at 0xFF. Bytes at or above `protect_from` are not
# written (write-protected: acknowledged, then ignored).
# Faults: cut_next_write = k: the next data write lands only its first k
# bytes, then the chip loses power (OSError EIO: a power cut mid-page);
# writes counts data writes (pages), cycles[i] per-byte write counts.
# AT24CS02Model: plus the read-only 16-byte serial at word 0x80 of the
#   companion address (attach security() at addr | 0x08); `serial` settable.
# M24AA02E48Model: the EUI-48 at 0xFA-0xFF, the upper half write-protected.
# tag(): a tag as a part leaves its maker: its own factory serial (seeded)
#   and a passport in the user area (agent/passport.py), for the emulated
#   world's wear parts (boards/emulated.py, hil/scenario.py PARTS).

import errno

PAGE = 8


def _eio():
    return OSError(errno.EIO, "EIO")


class EEPROM24Model:
    def __init__(self, busy_polls=2, protect_from=256):
        self.mem = bytearray(b"\xff" * 256)
        self.ptr = 0
        self.busy_polls = busy_polls
        self.protect_from = protect_from
        self.cut_next_write = None
        self.writes = 0
        self.polled = 0
        self.cycles = [0] * 256
        self._busy = 0

    def _check_busy(self):
        if self._busy > 0:
            self._busy -= 1
            self.polled += 1
            raise _eio()

    def write(self, data):
        self._check_busy()
        if not data:
            return                                    # address probe: ACK
        self.ptr = data[0]
        body = data[1:]
        if not body:
            return                                    # word address only (a read follows)
        cut = self.cut_next_write
        self.cut_next_write = None
        base = self.ptr & ~(PAGE - 1)
        off = self.ptr - base
        for i in range(len(body)):
            if cut is not None and i >= cut:
                raise _eio()                          # power lost mid-page
            a = base + ((off + i) % PAGE)
            if a < self.protect_from:
                self.mem[a] = body[i]
                self.cycles[a] += 1
        if cut is not None and cut < len(body):
            raise _eio()
        self.ptr = base + ((off + len(body)) % PAGE)
        self.writes += 1
        self._busy = self.busy_polls

    def read(self, n):
        self._check_busy()
        out = bytearray(n)
        for i in range(n):
            out[i] = self.mem[(self.ptr + i) & 0xFF]
        self.ptr = (self.ptr + n) & 0xFF
        return bytes(out)


class _Security:
    """The AT24CS02's serial block at the 1011 device address: 32 bytes, the
    serial in the first 16, read only; a read wraps within the block."""

    def __init__(self, owner):
        self.owner = owner
        self.ptr = 0

    def write(self, data):
        self.owner._check_busy()
        if not data:
            return
        if len(data) > 1:
            raise _eio()                              # the serial cannot be written
        self.ptr = data[0]

    def read(self, n):
        self.owner._check_busy()
        blk = bytes(self.owner.serial) + b"\xff" * 16
        out = bytearray(n)
        if self.ptr & 0xC0 != 0x80:
            for i in range(n):
                out[i] = 0xFF                         # not a serial word address: no valid data
            return bytes(out)
        p = self.ptr & 0x1F
        for i in range(n):
            out[i] = blk[(p + i) & 0x1F]
        return bytes(out)


class AT24CS02Model(EEPROM24Model):
    def __init__(self, serial=None, busy_polls=2):
        EEPROM24Model.__init__(self, busy_polls)
        self.serial = bytearray(serial if serial is not None else bytes(range(0x10, 0x20)))
        self._sec = _Security(self)

    def security(self):
        return self._sec


class M24AA02E48Model(EEPROM24Model):
    def __init__(self, eui48=b"\x00\x04\xa3\x12\x34\x56", busy_polls=2):
        EEPROM24Model.__init__(self, busy_polls, protect_from=0x80)
        self.set_eui(eui48)

    def set_eui(self, eui48):
        for i in range(6):
            self.mem[0xFA + i] = eui48[i]


def tag(chip, rng, passport):
    """An AT24CS02 or 24AA02E48 model with a serial drawn from rng (hil.rng.Rng:
    16 bytes; an EUI-48 under Microchip's OUI 00:04:A3) and `passport`
    (agent.passport.Passport) written to copy A, as the part's maker leaves it."""
    if chip == "at24cs02":
        m = AT24CS02Model(bytes([rng.below(256) for _ in range(16)]))
    else:
        m = M24AA02E48Model(b"\x00\x04\xa3" + bytes([rng.below(256) for _ in range(3)]))
    b = passport.encode(1)
    m.mem[0:len(b)] = b
    return m
