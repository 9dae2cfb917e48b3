# Modbus RTU master (read input/holding registers) over a serial port with
# the UART protocol of drivers/uart.py (write, readinto; any() or
# reset_input_buffer() optional, used to drop stale input before every request
# and after an error so the next request starts clean).
#
# Request:  [slave][fc][addr hi][addr lo][count hi][count lo][crc lo][crc hi]
# Response: [slave][fc][bytecount][data...][crc lo][crc hi]
# Exception [slave][fc|0x80][code][crc lo][crc hi]        -> NackError(.code)
# The 3-byte head is read first, then the rest. timeout_ms is the longest
# silence tolerated (before the reply starts, and between bytes); nothing or a
# short frame -> BusTimeout. Up to RESYNC stray bytes before the head (line
# noise at bus turnaround) are skipped; more, or stray bytes then silence, or
# a bad CRC, or a byte count that does not match the request -> CRCError,
# after which the master waits for timeout_ms of quiet on the line (so a late
# reply cannot shift every later answer by one request).

from drivers.crc import crc16_modbus
from drivers.errors import BusTimeout, CRCError, NackError
from drivers.uart import UARTDevice

# exception codes 1..6 (others, e.g. 10/11 from a gateway: "exception N")
EXCEPTIONS = ("illegal function", "illegal data address", "illegal data value",
              "slave device failure", "acknowledge", "slave device busy")

MAX_COUNT = 125          # registers per read (250 data bytes)
RESYNC = 8               # stray bytes skipped before a reply's head


class ModbusRTU(UARTDevice):
    def __init__(self, port, timeout_ms=200):
        UARTDevice.__init__(self, port, 3 + 2 * MAX_COUNT + 2, timeout_ms)
        self._tx = bytearray(8)

    # low level -------------------------------------------------------------------

    def _who(self):
        tx = self._tx
        return "Modbus slave %d fc 0x%02x @0x%04x" % (tx[0], tx[1], (tx[2] << 8) | tx[3])

    def _fail(self, cls, msg, *args):
        e = UARTDevice._fail(self, cls, msg, *args)
        if cls is CRCError:
            # Out of step (a late reply, line noise): wait until the line has
            # been quiet for timeout_ms, or the answer to this request, still
            # on its way, becomes the next request's garbage. Bounded.
            self._fill(0, len(self._rx))
        return e

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
        skipped = 0
        while got == 3 and (rx[0] != slave or (rx[1] & 0x7F) != fc) and skipped < RESYNC:
            got = self._fill(self._shift(1, 3), 3)
            skipped += 1
        if got < 3:
            if skipped:
                raise self._fail(CRCError, "%d stray bytes, then silence", skipped + got)
            raise self._fail(BusTimeout, "no reply (%d of 3 head bytes)", got)
        if rx[0] != slave or (rx[1] & 0x7F) != fc:
            raise self._fail(CRCError, "garbage head %02x %02x %02x after %d stray bytes",
                             rx[0], rx[1], rx[2], skipped)
        if rx[1] & 0x80:
            got = self._fill(3, 5)
            if got < 5:
                raise self._fail(BusTimeout, "short exception reply (%d of 5 bytes)", got)
            crc = crc16_modbus(rx, 0, 3)
            if crc != rx[3] | (rx[4] << 8):
                raise self._fail(CRCError, "CRC mismatch on exception reply")
            code = rx[2]
            e = self._fail(NackError, "exception %d (%s)", code, EXCEPTIONS[code - 1]
                           if 1 <= code <= len(EXCEPTIONS) else "see the device manual")
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
