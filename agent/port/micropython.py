# MicroPython (ESP32, unix port) side of the port: files (no fsync: they commit on
# flush), randomness, free heap, reset cause, the buses a board's pins name
# (open_i2c, open_uart), deep sleep and the chip's unique id. Only APIs both
# the unix port and the ESP32 port have are used at import time; machine is
# optional.
import os
import gc

PLATFORM = "micropython"


def fsync_file(f):
    # MicroPython has no os.fsync; littlefs and the unix VFS commit on flush.
    f.flush()


def fsync_dir(path):
    pass


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def file_size(path):
    return os.stat(path)[6]


def rename(a, b):
    os.rename(a, b)


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def random_u32():
    b = os.urandom(4)
    return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)


def mem_free():
    gc.collect()
    return gc.mem_free()


def reset_cause():
    try:
        import machine
    except ImportError:
        return "poweron"
    if not hasattr(machine, "reset_cause"):      # the unix port's machine has none
        return "poweron"
    c = machine.reset_cause()
    names = {
        getattr(machine, "PWRON_RESET", -1): "poweron",
        getattr(machine, "HARD_RESET", -2): "poweron",
        getattr(machine, "WDT_RESET", -3): "watchdog",
        getattr(machine, "DEEPSLEEP_RESET", -4): "deliberate",
        getattr(machine, "SOFT_RESET", -5): "deliberate",
        getattr(machine, "BROWNOUT_RESET", -6): "brownout",
    }
    return names.get(c, "crash")


# I2C: machine.I2C already has the method names the drivers use (writeto,
# readfrom_into, readfrom_mem_into, writeto_mem, readfrom, scan), so it is
# passed to them as is, no adapter. Its errors are OSError with MicroPython's
# errno (ENODEV: no ACK on the address, EIO, ETIMEDOUT: SCL held low), which
# every driver turns into NackError / BusTimeout with drivers.errors.wrap_oserror.

def _pin(bus, key):
    # machine.Pin's ValueError ("invalid pin") does not say which: this one does
    from machine import Pin
    try:
        return Pin(bus[key])
    except ValueError as e:
        raise ValueError("%s=GPIO%d: %s on this chip" % (key, bus[key], e))


def open_i2c(bus):
    """machine.I2C for a board's I2C bus entry (boards/*.py: id, sda, scl, freq).
    ValueError names a pin the chip does not have."""
    from machine import I2C
    return I2C(bus["id"], scl=_pin(bus, "scl"), sda=_pin(bus, "sda"), freq=bus.get("freq", 100000))


# UART: machine.UART already is the serial side of the bus protocol
# (docs/buses.md: write, readinto -> None on a timeout, read, any), so it too
# is passed to the serial drivers as is.

def open_uart(bus, timeout_ms=200):
    """machine.UART for a board's uart bus entry (boards/*.py: id, tx, rx,
    baud). A read waits timeout_ms for its first byte and 10 ms between
    bytes; the drivers keep their own timeout on top."""
    from machine import UART
    return UART(bus["id"], baudrate=bus.get("baud", 9600), tx=_pin(bus, "tx"), rx=_pin(bus, "rx"),
                timeout=timeout_ms, timeout_char=10)


def deepsleep():
    """machine.deepsleep (call it with ms: the board powers down and boots
    afresh when they are up), or None on a port without it (the unix port)."""
    try:
        from machine import deepsleep
    except ImportError:
        return None
    return deepsleep


def unique_id():
    """The chip's id as hex (the ESP32's MAC), or None."""
    try:
        from machine import unique_id
    except ImportError:
        return None
    return "".join("%02x" % b for b in unique_id())
