# An in-process serial port wired to a device model. Portable.
#
# It has the UART protocol of drivers/uart.py (write, readinto, read, any,
# reset_input_buffer). The model says how its requests are framed:
#   model.REQUEST_LEN          fixed request size
#   model.frame_ok(buf)        True if buf[0:REQUEST_LEN] is a whole request
#   model.handle(frame)        -> reply bytes, or None for silence
#   model.delay_ms             (optional) set by handle(): hold that reply back
#                              this long, a late answer
#   model.poll(now_ms)         (optional) bytes the device sends on its own
#                              (a PMS5003 in active mode), asked for whenever
#                              the reader finds nothing waiting
# Written bytes that do not frame are dropped one at a time (resync).
# Counters: frames_in (requests framed), frames_out (replies and unsolicited
# frames queued).

from drivers.uart import ticks_ms, ticks_diff


class LoopbackPort:
    def __init__(self, model):
        self.model = model
        self.frames_in = 0
        self.frames_out = 0
        self._req = bytearray()
        self._out = bytearray()
        self._ready = None           # ticks when held-back bytes arrive

    def _arrived(self):
        if self._ready is not None and ticks_diff(ticks_ms(), self._ready) < 0:
            return 0
        self._ready = None
        return len(self._out)

    def write(self, buf):
        req = self._req
        req.extend(buf)
        m = self.model
        n = m.REQUEST_LEN
        while len(req) >= n:
            if m.frame_ok(req):
                self.frames_in += 1
                r = m.handle(bytes(req[0:n]))
                req[0:n] = b""
                if r:
                    self._out.extend(r)
                    self.frames_out += 1
                    d = getattr(m, "delay_ms", 0)
                    if d:
                        self._ready = ticks_ms() + d
            else:
                req[0:1] = b""
        return len(buf)

    def any(self):
        k = self._arrived()
        if not k and self._ready is None and hasattr(self.model, "poll"):
            r = self.model.poll(ticks_ms())
            if r:
                self._out.extend(r)
                self.frames_out += 1
                k = len(r)
        return k

    def readinto(self, buf):
        k = min(self.any(), len(buf))
        if not k:
            return None                  # like machine.UART on a timeout
        buf[0:k] = self._out[0:k]
        self._out[0:k] = b""
        return k

    def read(self, n=1):
        b = bytearray(n)
        return bytes(b[0:self.readinto(b) or 0])

    def reset_input_buffer(self):
        # drops what has arrived; a reply still on its way (delay_ms) stays
        if self._arrived():
            self._out = bytearray()

    def close(self):
        pass
