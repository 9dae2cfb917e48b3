"""Serve a serial device model on a pseudo-terminal (CPython only).

    with PtyServer(SDM120Model(source)) as srv:
        port = serial.Serial(srv.port, 9600, timeout=0.2)   # or srv.open_serial()

A daemon thread reads request bytes from the master side, frames them as the
model's requests (model.REQUEST_LEN bytes, model.frame_ok(); on a bad frame
it discards one byte and tries again; a partial frame followed by more than
`gap_ms` of silence is dropped, like the RTU inter-frame gap), passes each to
model.handle() and writes the reply, model.delay_ms late when the model set
it. A model with poll(now_ms) may also send on its own (a PMS5003 in active
mode); it is polled at least every 50 ms.
stop() (or leaving the with block) ends the thread and closes every fd.

PtyLink is a null-modem cable instead: two pseudo-terminals joined back to
back, so two programs that each want a device path (a real Modbus stack and
our driver) can talk.
"""
import os
import select
import threading
import time
import tty



class _Relay:
    """A daemon thread (_run) over file descriptors that a subclass opens in
    _open() and hands back in _release(); start() and stop() are idempotent,
    a with block does both; stop() wakes the thread through a pipe."""
    NAME = "pty"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        if self._thread is None:
            self._open()
            self._wake_r, self._wake_w = os.pipe()
            self._stop = False
            self._thread = threading.Thread(target=self._run, name=self.NAME, daemon=True)
            self._thread.start()
        return self

    def stop(self):
        t = self._thread
        if t is None:
            return
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        t.join(5)
        self._thread = None
        for fd in self._release() + [self._wake_r, self._wake_w]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = None


class PtyServer(_Relay):
    NAME = "pty-serial"

    def __init__(self, model, gap_ms=50):
        self.model = model
        self.gap_ms = gap_ms
        self.port = None
        self.frames = 0
        self.discarded = 0
        self.error = None
        self._master = self._slave = None
        self._serials = []
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stop = False

    def _open(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)          # no echo, no line discipline
        self.port = os.ttyname(self._slave)

    def _release(self):
        for ser in self._serials:
            ser.close()
        self._serials = []
        fds = [self._master, self._slave]
        self._master = self._slave = None
        return fds

    def open_serial(self, baud=9600, timeout=0.2):
        """A pyserial port on the pty, closed by stop()."""
        import serial
        ser = serial.Serial(self.port, baud, timeout=timeout)
        self._serials.append(ser)
        return ser

    def _run(self):
        buf = bytearray()
        last = time.monotonic()
        fd = self._master
        m = self.model
        n = m.REQUEST_LEN
        poll = getattr(m, "poll", None)
        try:
            while not self._stop:
                r, _, _ = select.select([fd, self._wake_r], [], [], 0.05)
                now = time.monotonic()
                if poll is not None:
                    out = poll(int(now * 1000))
                    if out:
                        os.write(fd, out)
                if fd not in r:
                    if buf and (now - last) * 1000 > self.gap_ms:
                        self.discarded += len(buf)
                        del buf[:]
                    continue
                try:
                    data = os.read(fd, 256)
                except OSError:      # EIO: no slave side open right now
                    time.sleep(0.01)
                    continue
                last = now
                buf.extend(data)
                while len(buf) >= n:
                    if not m.frame_ok(buf):
                        del buf[0]
                        self.discarded += 1
                        continue
                    frame = bytes(buf[:n])
                    del buf[:n]
                    self.frames += 1
                    reply = m.handle(frame)
                    if reply:
                        delay = getattr(m, "delay_ms", 0)
                        if delay:
                            time.sleep(delay / 1000)
                        os.write(fd, reply)
        except Exception as e:       # keep the failure for the test to see
            self.error = e


class PtyLink(_Relay):
    """Two pseudo-terminals joined back to back by a relay thread: whatever is
    written to ports[0] is read from ports[1] and the other way round.
        with PtyLink() as link:
            server(link.ports[0]); serial.Serial(link.ports[1], ...)
    `relayed` counts bytes passed each way ([0 -> 1, 1 -> 0])."""
    NAME = "pty-link"

    def __init__(self):
        self.ports = None
        self.relayed = [0, 0]
        self.error = None
        self._fds = []
        self._wake_r = self._wake_w = None
        self._thread = None

    def _open(self):
        for _ in range(2):
            m, s = os.openpty()
            tty.setraw(s)
            self._fds.append((m, s))
        self.ports = [os.ttyname(s) for _, s in self._fds]

    def _release(self):
        fds = [fd for pair in self._fds for fd in pair]
        self._fds = []
        return fds

    def _run(self):
        a, b = self._fds[0][0], self._fds[1][0]
        wake = self._wake_r
        try:
            while True:
                r, _, _ = select.select([a, b, wake], [], [], 1)
                if wake in r:
                    return
                for src, dst, i in ((a, b, 0), (b, a, 1)):
                    if src not in r:
                        continue
                    try:
                        data = os.read(src, 4096)
                    except OSError:          # EIO: that end has no reader open right now
                        time.sleep(0.01)
                        continue
                    os.write(dst, data)
                    self.relayed[i] += len(data)
        except Exception as e:               # keep the failure for the test to see
            self.error = e
