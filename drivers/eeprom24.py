# Small I2C ID EEPROMs that give a part an identity it lacks (a motor, a fan,
# an LED engine): a 256-byte array with a factory serial next to it. Portable.
#
# Both chips (datasheets: Microchip AT24CS01/AT24CS02 DS20006330A, Microchip
# 24AA02E48/24AA025E48):
#   array     at 0x50 | A2A1A0 (device type 1010); a read is a word-address
#             write then a sequential read (one transaction, repeated start);
#             the address wraps at the end of the array.
#   pages     8 bytes: a write of N bytes at `mem` stays in mem's page, the
#             address rolling over to the page's start past its end, so a
#             write is split at page boundaries here (one transaction a page).
#   write     self-timed, at most 5 ms; while it runs the chip does not
#             acknowledge its address: after each page, poll with an address
#             probe until it ACKs (acknowledge polling), at most POLL_MAX
#             times 1 ms apart -> BusTimeout.
#   endurance 1,000,000 write cycles per byte (both), retention > 100 years.
# AT24CS02: the 128-bit factory serial sits in a separate read-only block at
#   0x58 | A2A1A0 (device type 1011), word address 0x80, 16 bytes, read from
#   its first byte ("reading from another location does not give a unique
#   number"). ident() -> "at24cs02-<32 hex>".
# 24AA02E48: the EUI-48 node address is at 0xFA-0xFF of the array's upper
#   half (0x80-0xFF), which is permanently write-protected; 0x00-0x7F is the
#   user area. write() refuses the upper half (ValueError).
#   ident() -> "24aa02e48-<12 hex>".
# Bus transactions: read = 1; write = one per page touched plus the polls.

from drivers._reg import I2CDevice, default_sleep_ms
from drivers.errors import BusTimeout, CRCError

PAGE = 8
SIZE = 256
POLL_MAX = 20        # 20 ms: four times the 5 ms write cycle
_PROBE = b""


class EEPROM24(I2CDevice):
    CHIP = "24C02"
    WRITABLE = SIZE           # bytes from 0 that may be written

    def __init__(self, i2c, addr=0x50, sleep_ms=None):
        I2CDevice.__init__(self, i2c, addr, self.CHIP)
        self.sleep_ms = sleep_ms if sleep_ms is not None else default_sleep_ms()
        self.polls = 0            # acknowledge polls that found the chip busy (health)

    def read(self, mem, n):
        """n bytes from word address mem (a new bytearray)."""
        if mem < 0 or n < 0 or mem + n > SIZE:
            raise ValueError("%s: read of %d bytes at 0x%02x is outside the array" % (self.name, n, mem))
        b = bytearray(n)
        if n:
            self.rx_mem(mem, b)
        return b

    def write(self, mem, data):
        """Write data at mem, page by page, waiting out each write cycle."""
        n = len(data)
        if mem < 0 or mem + n > self.WRITABLE:
            raise ValueError("%s: write of %d bytes at 0x%02x is outside the writable 0x00-0x%02x"
                             % (self.name, n, mem, self.WRITABLE - 1))
        mv = memoryview(data)
        i = 0
        while i < n:
            a = mem + i
            k = PAGE - (a % PAGE)
            if k > n - i:
                k = n - i
            self.tx_mem(a, mv[i:i + k])
            self.wait()
            i += k

    def wait(self):
        """Acknowledge polling: address probes until the write cycle is over."""
        for _ in range(POLL_MAX):
            try:
                self.i2c.writeto(self.addr, _PROBE)
                return
            except OSError:
                self.polls += 1
                self.sleep_ms(1)
        raise BusTimeout("%s: still busy %d ms after a page write" % (self.name, POLL_MAX))


class AT24CS02(EEPROM24):
    CHIP = "AT24CS02"
    SERIAL_REG = 0x80

    def __init__(self, i2c, addr=0x50, sleep_ms=None):
        if not 0x50 <= addr <= 0x57:
            raise ValueError("AT24CS02: array address must be 0x50-0x57, not 0x%02x" % addr)
        EEPROM24.__init__(self, i2c, addr, sleep_ms)
        self.serial_addr = addr | 0x08           # 1011 A2 A1 A0

    def serial(self):
        """The factory 128-bit serial: 16 bytes (a new bytearray). All 0xFF
        or all 0x00 (nobody drives SDA, a bus fault) -> CRCError."""
        b = bytearray(16)
        try:
            self.i2c.readfrom_mem_into(self.serial_addr, self.SERIAL_REG, b)
        except OSError as e:
            from drivers.errors import wrap_oserror
            raise wrap_oserror(e, "%s@0x%02x" % (self.CHIP, self.serial_addr))
        _plausible(b, self.name, "serial")
        return b

    def ident(self):
        return "at24cs02-" + _hex(self.serial())


class M24AA02E48(EEPROM24):
    CHIP = "24AA02E48"
    WRITABLE = 0x80           # the upper half is write-protected
    EUI_REG = 0xFA

    def eui48(self):
        """The factory EUI-48 (6 bytes, a new bytearray)."""
        b = self.read(self.EUI_REG, 6)
        _plausible(b, self.name, "EUI-48")
        return b

    def ident(self):
        return "24aa02e48-" + _hex(self.eui48())


def _hex(b):
    return "".join("%02x" % x for x in b)


def _plausible(b, name, what):
    ff = zz = True
    for x in b:
        if x != 0xFF:
            ff = False
        if x:
            zz = False
    if ff or zz:
        raise CRCError("%s: %s reads all 0x%s (bus floating?)" % (name, what, "FF" if ff else "00"))
