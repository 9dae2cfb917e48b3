# Modbus RTU master (read input/holding registers) over a serial port object:
#   write(buf) -> int
#   read(n) -> bytes, fewer or b"" on timeout (pyserial); None from
#              MicroPython's machine.UART is treated as b""
#   reset_input_buffer()  optional; called before every request and after
#                         an error so the next request starts clean
#
# Request:  [slave][fc][addr hi][addr lo][count hi][count lo][crc lo][crc hi]
# Response: [slave][fc][bytecount][data...][crc lo][crc hi]
# Exception [slave][fc|0x80][code][crc lo][crc hi]        -> NackError(.code)
# The 3-byte head is read first, then the rest. timeout_ms is the longest
# silence tolerated (before the reply starts, and between bytes); nothing or a
# short frame -> BusTimeout. Bad CRC, wrong slave or function echoed, or a byte
# count that does not match the request -> CRCError (garbage).

import time

from drivers.crc import crc16_modbus
from drivers.errors import BusTimeout, CRCError, NackError

try:
    from time import ticks_ms, ticks_diff, sleep_ms
except ImportError:
    def ticks_ms():
        return time.monotonic_ns() // 1000000

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        time.sleep(ms / 1000)

# exception codes 1..4 (others are reported as "exception N")
EXCEPTIONS = ("illegal function", "illegal data address", "illegal data value",
              "slave device failure")

MAX_COUNT = 125          # registers per read (250 data bytes)


class ModbusRTU:
    def __init__(self, port, timeout_ms=200):
        self.port = port
        self.timeout_ms = timeout_ms
        self._tx = bytearray(8)
        self._rx = bytearray(3 + 2 * MAX_COUNT + 2)
        self._mv = memoryview(self._rx)

    # low level -------------------------------------------------------------------

    def _flush(self):
        f = getattr(self.port, "reset_input_buffer", None)
        if f is not None:
            f()
            return
        for _ in range(64):      # bounded: a babbling line cannot hang us
            if not self.port.read(64):
                return

    def _fill(self, pos, end):
        # Read into _rx[pos:end]; returns the position reached. Gives up after
        # timeout_ms without a byte: an empty read is taken as "nothing yet"
        # (machine.UART may be non-blocking), a blocking port simply uses its
        # own timeout inside read().
        rx = self._rx
        t0 = ticks_ms()
        while pos < end:
            chunk = self.port.read(end - pos)
            if chunk:
                k = len(chunk)
                if k > end - pos:
                    k = end - pos
                    chunk = chunk[:k]
                rx[pos:pos + k] = chunk
                pos += k
                t0 = ticks_ms()
            elif ticks_diff(ticks_ms(), t0) >= self.timeout_ms:
                break
            else:
                sleep_ms(1)
        return pos

    def _fail(self, cls, msg, *args):
        # error path only: the message is formatted here, not on every request
        self._flush()
        tx = self._tx
        return cls("Modbus slave %d fc 0x%02x @0x%04x: " % (tx[0], tx[1], (tx[2] << 8) | tx[3])
                   + (msg % args if args else msg))

    def read_raw(self, slave, fc, addr, count):
        """One transaction; returns a memoryview of the 2*count data bytes
        (big-endian registers), valid until the next call."""
        if not 1 <= slave <= 247 or not 0 <= addr <= 0xFFFF or not 1 <= count <= MAX_COUNT \
                or not 1 <= fc <= 0x7F:
            raise ValueError("modbus: bad request slave=%d fc=%d addr=%d count=%d"
                             % (slave, fc, addr, count))
        tx = self._tx
        tx[0] = slave
        tx[1] = fc
        tx[2] = addr >> 8
        tx[3] = addr & 0xFF
        tx[4] = count >> 8
        tx[5] = count & 0xFF
        crc = crc16_modbus(tx, 0, 6)
        tx[6] = crc & 0xFF
        tx[7] = crc >> 8
        self._flush()
        self.port.write(tx)
        rx = self._rx
        got = self._fill(0, 3)
        if got < 3:
            raise self._fail(BusTimeout, "no reply (%d of 3 head bytes)", got)
        if rx[0] != slave or (rx[1] & 0x7F) != fc:
            raise self._fail(CRCError, "garbage head %02x %02x %02x", rx[0], rx[1], rx[2])
        if rx[1] & 0x80:
            got = self._fill(3, 5)
            if got < 5:
                raise self._fail(BusTimeout, "short exception reply (%d of 5 bytes)", got)
            crc = crc16_modbus(rx, 0, 3)
            if crc != rx[3] | (rx[4] << 8):
                raise self._fail(CRCError, "CRC mismatch on exception reply")
            code = rx[2]
            e = self._fail(NackError, "exception %d (%s)", code,
                           EXCEPTIONS[code - 1] if 1 <= code <= 4 else "see the device manual")
            e.code = code
            raise e
        n = rx[2]
        if n != 2 * count:
            raise self._fail(CRCError, "byte count %d, want %d", n, 2 * count)
        got = self._fill(3, n + 5)
        if got < n + 5:
            raise self._fail(BusTimeout, "short reply (%d of %d bytes)", got, n + 5)
        crc = crc16_modbus(rx, 0, n + 3)
        want = rx[n + 3] | (rx[n + 4] << 8)
        if crc != want:
            raise self._fail(CRCError, "CRC mismatch (got 0x%04x, want 0x%04x)", want, crc)
        return self._mv[3:3 + n]

    # public ----------------------------------------------------------------------

    def read_registers(self, slave, fc, addr, count):
        d = self.read_raw(slave, fc, addr, count)
        return [(d[2 * i] << 8) | d[2 * i + 1] for i in range(count)]

    def read_input_registers(self, slave, addr, count):
        return self.read_registers(slave, 0x04, addr, count)

    def read_holding_registers(self, slave, addr, count):
        return self.read_registers(slave, 0x03, addr, count)
