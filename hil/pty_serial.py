"""Serve a Modbus RTU slave model on a pseudo-terminal (CPython only).

    with PtyServer(SDM120Model(source)) as srv:
        port = serial.Serial(srv.port, 9600, timeout=0.2)

A daemon thread reads request bytes from the master side, frames them as
8-byte fc 3/4 requests (on a bad CRC it discards one byte and tries again; a
partial frame followed by more than `gap_ms` of silence is dropped, like the
RTU inter-frame gap), passes each to model.handle() and writes the reply.
stop() (or leaving the with block) ends the thread and closes every fd.
"""
import os
import select
import threading
import time
import tty

from hil.sdm120 import REQUEST_LEN, frame_ok


class PtyServer:
    def __init__(self, model, gap_ms=50):
        self.model = model
        self.gap_ms = gap_ms
        self.port = None
        self.frames = 0
        self.discarded = 0
        self.error = None
        self._master = self._slave = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stop = False

    def start(self):
        if self._thread is not None:
            return self
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)          # no echo, no line discipline
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="pty-modbus", daemon=True)
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
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = self._wake_r = self._wake_w = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _run(self):
        buf = bytearray()
        last = time.monotonic()
        fd = self._master
        try:
            while not self._stop:
                r, _, _ = select.select([fd, self._wake_r], [], [], 0.05)
                now = time.monotonic()
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
                while len(buf) >= REQUEST_LEN:
                    if not frame_ok(buf):
                        del buf[0]
                        self.discarded += 1
                        continue
                    frame = bytes(buf[:REQUEST_LEN])
                    del buf[:REQUEST_LEN]
                    self.frames += 1
                    reply = self.model.handle(frame)
                    if reply:
                        os.write(fd, reply)
        except Exception as e:       # keep the failure for the test to see
            self.error = e
