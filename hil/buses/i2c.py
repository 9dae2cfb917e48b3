# An emulated I2C bus at the transaction level, with the machine.I2C method
# names the drivers use. Portable (CPython and MicroPython).
#
# Device models implement:
#   write(data)  the bytes of a write transaction (b"" for an address probe)
#   read(n)      -> n bytes for a read transaction
# readfrom_mem_into() is a pointer write then a read (repeated start): one bus
# transaction, delivered to the model as write(memaddr bytes) then read(n).
# A model raising OSError(EIO) is a NACK; an absent address raises
# OSError(ENODEV) like machine.I2C. Every attempted transaction counts in
# `transactions`, including failed ones.
# Bus faults: fail_next (NACK or timeout), absent (no ACK at all), and
# short_read (the device stops driving SDA part way: the master clocks in
# 0xFF for the bytes it did not send).

import errno

def _oserror(n):
    # two-argument form so .errno is set on CPython as well as MicroPython
    return OSError(n, getattr(errno, "errorcode", {}).get(n, "I2C error"))


def _mem(memaddr, addrsize):
    # register address bytes, big-endian
    if addrsize == 8:
        return bytes((memaddr & 0xFF,))
    return bytes(((memaddr >> 8) & 0xFF, memaddr & 0xFF))


def _copy(buf, data):
    n = len(buf)
    k = len(data) if len(data) < n else n
    for i in range(k):
        buf[i] = data[i]
    for i in range(k, n):
        buf[i] = 0xFF          # nobody drives SDA: the bus reads ones


class EmulatedI2C:
    def __init__(self):
        self.devices = {}
        self.transactions = 0
        self._fail = {}        # addr -> [remaining, errno]
        self._absent = {}      # addr -> True
        self._short = {}       # addr -> [remaining, bytes delivered]

    # setup and faults ----------------------------------------------------------

    def attach(self, addr, device):
        self.devices[addr] = device

    def fail_next(self, addr, n=1, errno_=errno.EIO):
        """The next n transactions to addr fail with OSError(errno_)."""
        if n > 0:
            self._fail[addr] = [n, errno_]
        else:
            self._fail.pop(addr, None)

    def absent(self, addr, flag=True):
        """Make addr stop (flag True) or resume (False) acknowledging."""
        if flag:
            self._absent[addr] = True
        else:
            self._absent.pop(addr, None)

    def short_read(self, addr, nbytes, n=1):
        """The next n read transactions from addr deliver only their first
        nbytes bytes; the rest read 0xFF."""
        if n > 0:
            self._short[addr] = [n, nbytes]
        else:
            self._short.pop(addr, None)

    def _cut(self, addr, data):
        s = self._short.get(addr)
        if s is None:
            return data
        s[0] -= 1
        if s[0] <= 0:
            del self._short[addr]
        return data[:s[1]]

    def _dev(self, addr):
        self.transactions += 1
        f = self._fail.get(addr)
        if f is not None:
            f[0] -= 1
            if f[0] <= 0:
                del self._fail[addr]
            raise _oserror(f[1])
        dev = self.devices.get(addr)
        if dev is None or addr in self._absent:
            raise _oserror(errno.ENODEV)
        return dev

    # machine.I2C API -----------------------------------------------------------

    def scan(self):
        return [a for a in sorted(self.devices) if a not in self._absent]

    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write(bytes(buf))
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        _copy(buf, self._cut(addr, self._dev(addr).read(len(buf))))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        dev = self._dev(addr)
        dev.write(_mem(memaddr, addrsize))
        _copy(buf, self._cut(addr, dev.read(len(buf))))

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._dev(addr).write(_mem(memaddr, addrsize) + bytes(buf))
