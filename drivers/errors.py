# Typed bus errors. Every one is an OSError, so code that only knows the
# platform's own I2C/UART errors still catches them, and each carries a class
# attribute `kind`: the name of the health counter it is counted under.
#
#   BusError     "bus"      base class
#   NackError    "nack"     device absent / not acknowledging / Modbus exception
#     ChipIdError           the address answers with another chip's id
#   CRCError     "crc"      CRC mismatch, garbage or malformed frame
#   BusTimeout   "timeout"  no (complete) answer in time
#   RangeError   "range"    reading physically impossible / out of sensor range
#
# Construct as Cls(msg) or Cls(msg, errno_). `errno` is None unless given.
# Portable: CPython >= 3.11 and MicroPython >= 1.22 (whose OSError has no
# __init__ attribute to call directly, hence super()).

import errno as _errno


class BusError(OSError):
    kind = "bus"

    def __init__(self, msg, errno_=None):
        if errno_ is None:
            super().__init__(msg)
        else:
            super().__init__(errno_, msg)
        # MicroPython reports args[0] as errno; make it the same everywhere.
        self.errno = errno_
        self.msg = msg


class NackError(BusError):
    kind = "nack"
    code = None        # Modbus exception code (set on the instance), None for I2C


class ChipIdError(NackError):
    """The address answers but its id register names another chip: the chip
    asked for is not there. Counted as `nack`; the message names the id found."""


class CRCError(BusError):
    kind = "crc"


class BusTimeout(BusError):
    kind = "timeout"


class RangeError(BusError):
    kind = "range"


def wrap_oserror(e, who="bus"):
    """Map a plain OSError from a bus to a typed error (returned, not raised):
    ETIMEDOUT -> BusTimeout, anything else (ENODEV, EIO, EREMOTEIO, ...) ->
    NackError, keeping errno. Typed BusErrors are returned unchanged.
    `who` names the chip and address, e.g. "INA219@0x40"."""
    if isinstance(e, BusError):
        return e
    # CPython leaves .errno None for OSError(5), the form machine.I2C raises
    n = e.errno
    if not isinstance(n, int):
        n = e.args[0] if e.args and isinstance(e.args[0], int) else None
    name = getattr(_errno, "errorcode", {}).get(n, n) if n is not None else "no errno"
    if n == _errno.ETIMEDOUT:
        return BusTimeout("%s: bus timeout (%s)" % (who, name), n)
    return NackError("%s: no ACK (%s)" % (who, name), n)
