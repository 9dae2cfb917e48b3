# The component passport in an ID EEPROM's user area (docs/passport.md is the
# specification; the offsets below are its table). Portable, integer only.
#
# Two 64-byte copies, A at 0x00 and B at 0x40 (the 24AA02E48's writable
# lower half holds both). Each copy, little-endian:
#    0  magic "TP" (2)        2  format version (1)     3  part family (1)
#    4  write sequence u32    8  part number, ASCII, NUL padded (16)
#   24  manufacture year u16, month u8, day u8
#   28  rated hours u32      32  rated cycles u32
#   36  run seconds u32      40  cycles u32      44  energy Wh u32
#   48  installed seconds u32 (powered, in any asset)
#   52  installations u16    54  reserved, 0xFF (6)
#   60  CRC-32 (zlib/binascii) of bytes 0..59, u32
# A write goes to the copy that does not hold the newest valid passport, with
# the sequence one higher, page by page, the CRC's page last: a power cut
# leaves that copy with a bad CRC and the other one intact. read() takes the
# valid copy with the highest sequence.
# Nothing valid gives a reason instead: "blank" (both copies all 0xFF),
# "foreign" (no copy has our magic, or a valid copy names another part
# family), "version" (a format this code does not know), "corrupt" (our
# magic but a bad CRC in every copy).

import binascii

MAGIC0 = 0x54         # "T"
MAGIC1 = 0x50         # "P"
VERSION = 1
COPY = 64
SLOTS = (0x00, 0x40)
PART_LEN = 16
U32 = 0xFFFFFFFF

O_MAGIC = 0
O_VERSION = 2
O_FAMILY = 3
O_SEQ = 4
O_PART = 8
O_DATE = 24
O_RATED_H = 28
O_RATED_CYCLES = 32
O_RUN_S = 36
O_CYCLES = 40
O_ENERGY_WH = 44
O_INSTALLED_S = 48
O_INSTALLS = 52
O_CRC = 60

# the checkpoint odometers, in order: (offset, name)
COUNTERS = ((O_RUN_S, "run_s"), (O_CYCLES, "cycles"), (O_ENERGY_WH, "energy_Wh"),
            (O_INSTALLED_S, "installed_s"))


def _u32(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def _put32(b, o, v):
    v = 0 if v < 0 else U32 if v > U32 else v
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF
    b[o + 2] = (v >> 16) & 0xFF
    b[o + 3] = (v >> 24) & 0xFF


def crc(b, n=O_CRC):
    return binascii.crc32(bytes(b[:n])) & U32


class Passport:
    """One component's passport. Counters are u32 (saturating)."""

    def __init__(self, part="", family=1, year=0, month=0, day=0, rated_h=0, rated_cycles=0):
        self.part = part
        self.family = family
        self.year = year
        self.month = month
        self.day = day
        self.rated_h = rated_h
        self.rated_cycles = rated_cycles
        self.run_s = 0
        self.cycles = 0
        self.energy_Wh = 0
        self.installed_s = 0
        self.installs = 0
        self.seq = 0
        self.slot = -1            # the copy it was read from / last written to

    def encode(self, seq):
        b = bytearray(b"\xff" * COPY)
        b[O_MAGIC] = MAGIC0
        b[O_MAGIC + 1] = MAGIC1
        b[O_VERSION] = VERSION
        b[O_FAMILY] = self.family & 0xFF
        _put32(b, O_SEQ, seq)
        p = self.part.encode() if isinstance(self.part, str) else bytes(self.part)
        for i in range(PART_LEN):
            b[O_PART + i] = p[i] if i < len(p) else 0
        b[O_DATE] = self.year & 0xFF
        b[O_DATE + 1] = (self.year >> 8) & 0xFF
        b[O_DATE + 2] = self.month & 0xFF
        b[O_DATE + 3] = self.day & 0xFF
        _put32(b, O_RATED_H, self.rated_h)
        _put32(b, O_RATED_CYCLES, self.rated_cycles)
        for o, name in COUNTERS:
            _put32(b, o, getattr(self, name))
        n = self.installs if self.installs < 0xFFFF else 0xFFFF
        b[O_INSTALLS] = n & 0xFF
        b[O_INSTALLS + 1] = n >> 8
        _put32(b, O_CRC, crc(b))
        return b

    def counters(self):
        return {name: getattr(self, name) for _, name in COUNTERS}


def decode(b, family):
    """(Passport, None) for a valid copy of our family, else (None, reason)."""
    blank = True
    for x in b:
        if x != 0xFF:
            blank = False
            break
    if blank:
        return None, "blank"
    if b[O_MAGIC] != MAGIC0 or b[O_MAGIC + 1] != MAGIC1:
        return None, "foreign"
    if _u32(b, O_CRC) != crc(b):
        return None, "corrupt"
    if b[O_VERSION] != VERSION:
        return None, "version"
    if b[O_FAMILY] != family:
        return None, "foreign"
    end = O_PART
    while end < O_PART + PART_LEN and b[end]:
        end += 1
    try:
        part = bytes(b[O_PART:end]).decode()
    except UnicodeError:
        return None, "corrupt"
    p = Passport(part, b[O_FAMILY], b[O_DATE] | (b[O_DATE + 1] << 8), b[O_DATE + 2], b[O_DATE + 3],
                 _u32(b, O_RATED_H), _u32(b, O_RATED_CYCLES))
    for o, name in COUNTERS:
        setattr(p, name, _u32(b, o))
    p.installs = b[O_INSTALLS] | (b[O_INSTALLS + 1] << 8)
    p.seq = _u32(b, O_SEQ)
    return p, None


# reasons, worst last: what a read that found nothing valid reports
_RANK = {"blank": 0, "foreign": 1, "version": 2, "corrupt": 3}


def read(eeprom, family):
    """(Passport, None) from the newest valid copy, or (None, reason)."""
    best = None
    why = None
    for k in range(len(SLOTS)):
        p, r = decode(eeprom.read(SLOTS[k], COPY), family)
        if p is not None:
            if best is None or p.seq > best.seq:
                p.slot = k
                best = p
        elif why is None or _RANK[r] > _RANK[why]:
            why = r
    if best is not None:
        return best, None
    return None, why


def write(eeprom, p):
    """Write p to the copy not holding its newest version, sequence + 1."""
    k = 1 if p.slot == 0 else 0
    seq = (p.seq + 1) & U32
    eeprom.write(SLOTS[k], p.encode(seq))
    p.seq = seq
    p.slot = k
    return k
