# CRCs for the sensor protocols. Bitwise, table-free, no allocation per call
# (small ints only). `start`/`end` select data[start:end] without slicing.
#
# crc8_sensirion: CRC-8, polynomial x^8+x^5+x^4+1 (0x31), init 0xFF, not
#   reflected, no final XOR (Sensirion SHT3x datasheet: 0xBE 0xEF -> 0x92).
# crc16_modbus: CRC-16, polynomial 0x8005 processed reflected (0xA001), init
#   0xFFFF, no final XOR. On the wire the low byte goes first:
#   01 04 00 00 00 02 -> 0xCB71 -> bytes 71 CB.


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
