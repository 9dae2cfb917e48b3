# CRCs for the sensor protocols. Bitwise, table-free, no allocation per call
# (small ints only). `start`/`end` select data[start:end] without slicing.
#
# crc8_sensirion: CRC-8, polynomial x^8+x^5+x^4+1 (0x31), init 0xFF, not
#   reflected, no final XOR (Sensirion SHT3x datasheet: 0xBE 0xEF -> 0x92).
#   sensirion_words() checks a 6-byte Sensirion answer (word, CRC, word, CRC).
# crc16_modbus: CRC-16, polynomial 0x8005 processed reflected (0xA001), init
#   0xFFFF, no final XOR. On the wire the low byte goes first:
#   01 04 00 00 00 02 -> 0xCB71 -> bytes 71 CB.

from drivers.errors import CRCError


def crc8_sensirion(data, start=0, end=None):
    if end is None:
        end = len(data)
    crc = 0xFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            if crc & 0x80:
                crc = ((crc << 1) ^ 0x31) & 0xFF
            else:
                crc = (crc << 1) & 0xFF
    return crc


def crc16_modbus(data, start=0, end=None):
    if end is None:
        end = len(data)
    crc = 0xFFFF
    for i in range(start, end):
        crc ^= data[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def sensirion_words(b, name, first="first", second="second"):
    """Check a Sensirion answer (word, CRC, word, CRC) in b[0:6] and return
    the two words. All six bytes 0xFF (a released bus) or a CRC mismatch
    raise CRCError naming the word."""
    if b[0] == 0xFF and b[1] == 0xFF and b[2] == 0xFF and b[3] == 0xFF \
            and b[4] == 0xFF and b[5] == 0xFF:
        raise CRCError("%s: read all 0xFF (bus floating?)" % name)
    c = crc8_sensirion(b, 0, 2)
    if c != b[2]:
        raise CRCError("%s: CRC mismatch on %s word (got 0x%02x, want 0x%02x)"
                       % (name, first, b[2], c))
    c = crc8_sensirion(b, 3, 5)
    if c != b[5]:
        raise CRCError("%s: CRC mismatch on %s word (got 0x%02x, want 0x%02x)"
                       % (name, second, b[5], c))
    return (b[0] << 8) | b[1], (b[3] << 8) | b[4]
