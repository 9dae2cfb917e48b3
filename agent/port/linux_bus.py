# Linux bus adapters (Raspberry Pi): smbus2 behind the machine.I2C method
# names our drivers use, and pyserial for the serial drivers (docs/buses.md:
# a serial.Serial is their UART protocol as it is). Transactions go through
# i2c_rdwr (the I2C_RDWR ioctl of /dev/i2c-N), so command-based chips (SHT3x)
# work and a register read is one combined transaction (write the pointer,
# repeated start, read any length): read_i2c_block_data would be an SMBus
# block read, capped at 32 bytes.
#
# Errors: the kernel's answer to a missing ACK is ENXIO, EREMOTEIO (the Pi's
# bcm2835 driver) or EIO, and ETIMEDOUT when a slave holds SCL low; these
# come out as the drivers' typed NackError / BusTimeout (errno kept). Other
# OSErrors (EACCES on open, EBADF, EOPNOTSUPP) are not bus faults and pass
# through unchanged.
import errno

from smbus2 import SMBus, i2c_msg

from drivers.errors import wrap_oserror

BUS_ERRNOS = (errno.ENXIO, errno.EREMOTEIO, errno.EIO, errno.ETIMEDOUT)


class SMBus2I2C:
    """bus: the N of /dev/i2c-N. smbus: an SMBus-like object (i2c_rdwr,
    write_quick, close) to use instead of opening the device."""

    def __init__(self, bus=1, smbus=None):
        self.id = bus
        self.bus = SMBus(bus) if smbus is None else smbus

    def _rdwr(self, addr, *msgs):
        try:
            self.bus.i2c_rdwr(*msgs)
        except OSError as e:
            if e.errno in BUS_ERRNOS:
                raise wrap_oserror(e, "i2c-%d@0x%02x" % (self.id, addr)) from None
            raise

    def writeto(self, addr, buf, stop=True):
        # stop=False cannot be honoured: every call is one I2C_RDWR transaction
        # ending in a stop; a write-then-read is readfrom_mem_into
        self._rdwr(addr, i2c_msg.write(addr, bytes(buf)))
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        msg = i2c_msg.read(addr, len(buf))
        self._rdwr(addr, msg)
        buf[:] = bytes(msg)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        reg = memaddr.to_bytes(addrsize // 8, "big")
        rd = i2c_msg.read(addr, len(buf))
        self._rdwr(addr, i2c_msg.write(addr, reg), rd)   # repeated start between them
        buf[:] = bytes(rd)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._rdwr(addr, i2c_msg.write(addr, memaddr.to_bytes(addrsize // 8, "big") + bytes(buf)))

    def scan(self):
        """Addresses 0x08-0x77 that ACK a quick write, like machine.I2C.scan()
        (a read probe would miss an SHT3x, which NACKs reads between measurements)."""
        found = []
        for addr in range(0x08, 0x78):
            try:
                self.bus.write_quick(addr)
            except OSError as e:
                if e.errno in BUS_ERRNOS:
                    continue
                raise
            found.append(addr)
        return found

    def close(self):
        self.bus.close()


def open_serial(port, baud, timeout_ms=200):
    """A pyserial port. It is the UART protocol of docs/buses.md as it is:
    write, read, readinto (0 on timeout), reset_input_buffer; timeout_ms is
    how long one read waits for its first byte. Exclusive: a second process
    opening the same tty fails instead of interleaving frames."""
    import serial
    return serial.Serial(port, baud, timeout=timeout_ms / 1000, exclusive=True)


# Pulse inputs on a Raspberry Pi: the kernel's GPIO character device
# (/dev/gpiochip0) through libgpiod's own Python bindings (pip install gpiod,
# libgpiod 2.x; what the kernel's GPIO maintainers ship, not the deprecated
# sysfs interface). The kernel timestamps and queues every rising edge in
# its interrupt handler, debounced; a thread here drains the queue into a
# count, so no edge is lost while the agent's loop is busy.
GPIO_CHIP = "/dev/gpiochip0"       # the header's GPIOs on a Pi 4 and a Zero 2 W
DEBOUNCE_MS = 1                    # a reed contact's bounce


class EdgeCounter:
    """Rising edges on a GPIO line, counted from the kernel's edge events.
    value() -> edges since it was opened; close() releases the line."""

    def __init__(self, pin, chip=GPIO_CHIP):
        try:
            import gpiod
            from gpiod.line import Bias, Edge
        except ImportError:
            raise OSError("pulse input GPIO%d: the gpiod package (libgpiod 2 bindings) is not "
                          "installed: pip install 'tally[pi]'" % pin)
        import datetime
        import threading
        self.pin = pin
        self.n = 0
        self._stop = threading.Event()
        settings = gpiod.LineSettings(edge_detection=Edge.RISING, bias=Bias.PULL_UP,
                                      debounce_period=datetime.timedelta(milliseconds=DEBOUNCE_MS))
        self._req = gpiod.request_lines(chip, consumer="tally", config={pin: settings})
        self._wait = datetime.timedelta(milliseconds=200)
        self._t = threading.Thread(target=self._run, name="tally-pulse-%d" % pin, daemon=True)
        self._t.start()

    def _run(self):
        req = self._req
        while not self._stop.is_set():
            if req.wait_edge_events(self._wait):
                self.n += len(req.read_edge_events())

    def value(self):
        return self.n

    def close(self):
        self._stop.set()
        self._t.join(1)
        self._req.release()


def open_counter(o):
    """An EdgeCounter on the GPIO of a board's counter bus (o: its settings, "pin")."""
    return EdgeCounter(o["pin"])
