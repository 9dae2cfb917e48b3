# The serial side of the bus protocol (docs/buses.md), shared by the serial
# drivers. A port has machine.UART's method names:
#   write(buf) -> n
#   readinto(buf) -> n, or 0/None when nothing came within the port's own
#                    timeout (pyserial returns 0, machine.UART None)
#   read(n) -> bytes (pyserial: fewer or b"" on timeout; UART: None)
#   any() -> n waiting                     optional (machine.UART)
#   reset_input_buffer()                   optional (pyserial)
# Drivers read with readinto into their own preallocated buffer and enforce
# their own silence timeout on top of the port's: a non-blocking port
# (timeout=0) is polled every millisecond, a blocking one waits inside
# readinto and adds at most one of its own timeouts.

import time

try:
    from time import ticks_ms, ticks_diff, sleep_ms
except ImportError:
    def ticks_ms():
        return time.monotonic_ns() // 1000000

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        time.sleep(ms / 1000)


class UARTDevice:
    """Base of a serial driver: the injected port, a receive buffer of `size`
    bytes (self._rx, and self._mv over it), the silence timeout, and `name`
    for error messages (or a _who() of the subclass's own)."""

    def __init__(self, port, size, timeout_ms, name="serial"):
        self.name = name
        self.port = port
        self.timeout_ms = timeout_ms
        self._rx = bytearray(size)
        self._mv = memoryview(self._rx)

    def _who(self):
        return self.name

    def _fail(self, cls, msg, *args):
        """Error path only (the message is formatted here, not per reading):
        drop the rest of the bad answer and return cls("<who>: msg % args")."""
        self._flush()
        return cls(self._who() + ": " + (msg % args if args else msg))

    def _flush(self):
        """Drop whatever is waiting: reset_input_buffer() if the port has it,
        else read while any() says so (or until a read comes back empty),
        bounded so a babbling line cannot hang us."""
        p = self.port
        f = getattr(p, "reset_input_buffer", None)
        if f is not None:
            f()
            return
        waiting = getattr(p, "any", None)
        for _ in range(64):
            if waiting is not None and not waiting():
                return
            if not p.readinto(self._mv):
                return

    def _fill(self, pos, end):
        """Read into _rx[pos:end]; returns the position reached, short when
        timeout_ms passed without a byte."""
        mv = self._mv
        t0 = ticks_ms()
        while pos < end:
            k = self.port.readinto(mv[pos:end])
            if k:
                pos += k
                t0 = ticks_ms()
            elif ticks_diff(ticks_ms(), t0) >= self.timeout_ms:
                break
            else:
                sleep_ms(1)
        return pos

    def _shift(self, k, n):
        """Drop the first k of the n bytes held in _rx; returns n - k."""
        rx = self._rx
        for i in range(n - k):
            rx[i] = rx[i + k]
        return n - k
