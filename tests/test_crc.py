"""drivers/crc.py: the Sensirion CRC-8 and the Modbus CRC-16 against the
datasheet and catalogue check values and against a bit-at-a-time reference
written from the polynomial, with the residue and single-byte-error
properties checked on random data."""
from hypothesis import given, strategies as st

from drivers.crc import crc8_sensirion, crc16_modbus


def ref_crc(data, width, poly, init, refin):
    """Textbook bit-at-a-time CRC (no final XOR), independent of drivers.crc."""
    top = 1 << (width - 1)
    mask = (1 << width) - 1
    crc = init
    for byte in data:
        if refin:
            byte = int("{:08b}".format(byte)[::-1], 2)
        for i in range(7, -1, -1):
            bit = (byte >> i) & 1
            fb = bool(crc & top) ^ bit
            crc = (crc << 1) & mask
            if fb:
                crc ^= poly
    if refin:
        crc = int("{:0{}b}".format(crc, width)[::-1], 2)
    return crc


def test_sensirion_datasheet_vector():
    assert crc8_sensirion(b"\xbe\xef") == 0x92
    assert crc8_sensirion(bytearray(b"\xbe\xef")) == 0x92


def test_sensirion_catalogue_check_value():
    # CRC-8/NRSC-5 (poly 0x31, init 0xFF, not reflected) check value
    assert crc8_sensirion(b"123456789") == 0xF7


def test_modbus_request_vector():
    frame = bytes.fromhex("010400000002")
    assert crc16_modbus(frame) == 0xCB71
    c = crc16_modbus(frame)
    assert bytes([c & 0xFF, c >> 8]) == b"\x71\xcb"


def test_modbus_catalogue_check_value():
    assert crc16_modbus(b"123456789") == 0x4B37


def test_start_end_select_a_window():
    buf = bytearray(b"\x00\x00\xbe\xef\x92\x01\x04\x00\x00\x00\x02\x71\xcb")
    assert crc8_sensirion(buf, 2, 4) == 0x92
    assert crc16_modbus(buf, 5, 11) == 0xCB71
    assert crc16_modbus(memoryview(buf)[5:11]) == 0xCB71
    assert crc8_sensirion(buf, 3, 3) == 0xFF          # empty window: init value
    assert crc16_modbus(buf, 7, 7) == 0xFFFF


@given(st.binary(max_size=64))
def test_crc8_matches_reference(data):
    assert crc8_sensirion(data) == ref_crc(data, 8, 0x31, 0xFF, False)


@given(st.binary(max_size=64))
def test_crc16_matches_reference(data):
    assert crc16_modbus(data) == ref_crc(data, 16, 0x8005, 0xFFFF, True)


@given(st.binary(max_size=64))
def test_appending_the_crc_gives_zero_residue(data):
    c8 = crc8_sensirion(data)
    assert crc8_sensirion(data + bytes([c8])) == 0
    c16 = crc16_modbus(data)
    assert crc16_modbus(data + bytes([c16 & 0xFF, c16 >> 8])) == 0


@given(st.binary(min_size=1, max_size=32), st.integers(0, 255), st.integers(1, 255))
def test_single_byte_error_is_detected(data, pos, flip):
    pos %= len(data)
    bad = bytearray(data)
    bad[pos] ^= flip
    assert crc8_sensirion(bad) != crc8_sensirion(data)
    assert crc16_modbus(bad) != crc16_modbus(data)
