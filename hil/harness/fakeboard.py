"""A MicroPython board on a pseudo-terminal, for `tally flash --port` and
mpremote (CPython only).

    with FakeBoard() as fb:
        main(["flash", "--board", "unix", "--port", fb.port])
        os.listdir(fb.root)          # the board's filesystem: a real directory

The board's CPU is real: one persistent MicroPython unix-port process with
fb.root mounted at "/" (vfs.VfsPosix), so the os.mkdir, open, os.ilistdir,
os.stat and hashlib that code sent over the REPL calls are MicroPython's own,
on a real directory. This module is the board's serial console around it and
speaks the REPL protocol as shared/runtime/pyexec.c does on an ESP32:

  friendly   ">>> "; Ctrl-A: raw REPL; Ctrl-B: banner; Ctrl-C: new prompt;
             Ctrl-D: soft reset ("MPY: soft reboot", then main.py if
             run_main); a line typed is executed
  raw        "raw REPL; CTRL-B to exit\\r\\n>"; the bytes up to Ctrl-D are the
             code: "OK", its stdout, \\x04, its traceback, \\x04, ">".
             Ctrl-D on an empty line: "OK\\r\\n" and a soft reset (staying in
             the raw REPL); Ctrl-B: the friendly REPL
  raw-paste  Ctrl-E 'A' Ctrl-A: "R\\x01", the flow-control window (u16 LE) and
             \\x01; the board sends \\x01 each time it has taken a window; Ctrl-D
             ends the code (answered \\x04), then stdout \\x04 traceback \\x04 ">"

Ctrl-C while code runs interrupts it (SIGINT: KeyboardInterrupt, as a board's
UART interrupt char), other input then waits in the board's stdin buffer, and
the output is cooked (\\n sent as \\r\\n) as a board's stdout is. Output the host
does not take within half a second is lost, as from a UART nobody listens to.

Faults: silent=True never answers (a dead board, the wrong port);
fs_limit=N makes an N-byte filesystem whose files take whole 4 KiB blocks
(as on littlefs): a write past it fails with OSError 28 (ENOSPC, printed
"OSError: 28" as on an ESP32, whose errno table lacks the name) and
os.statvfs("/") reports what is left.
Not a board: no boot.py, no machine module, the host's heap and word size,
and raw-paste windows are granted as fast as bytes arrive.
"""
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import tty

from hil.harness import mpbuild
from hil.harness.pty_serial import _Relay

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
BANNER = (b"MicroPython v1.28.0 on 2026-01-01; Tally FakeBoard (unix port)\r\n"
          b'Type "help()" for more information.\r\n')
STDIN_BUFFER = 256          # MICROPY_REPL_STDIN_BUFFER_MAX: the raw-paste window is half

# The CPU: reads frames (kind, u32 length, code) on stdin and runs them in one
# globals dict (__main__'s, as on a board); after each, \x04 then the
# traceback if any then \x04, as pyexec.c's EXEC_FLAG_PRINT_EOF.
# kind: f = file input (raw REPL), s = single input (friendly REPL), r = run the file named.
CPU = r"""
import sys, os, vfs, struct

def _blocks(n):
    return (n + 4095) // 4096 * 4096

class _Fs:
    # the directory, as a board's filesystem: os.ilistdir gives sizes (as
    # littlefs does) and with a limit it holds `limit` bytes (then ENOSPC)
    def __init__(s, fs, limit):
        s.fs = fs
        s.limit = limit
    def __getattr__(s, name):
        return getattr(s.fs, name)
    def mount(s, readonly, mkfs):
        pass
    def umount(s):
        pass
    def ilistdir(s, d):
        for e in s.fs.ilistdir(d):
            p = (d.rstrip('/') + '/' if d else '') + e[0]
            yield (e[0], e[1], 0, 0 if e[1] & 0x4000 else s.fs.stat(p)[6])
    def used(s, d=''):
        # as littlefs: every file takes whole 4 KiB blocks
        n = 0
        for e in s.ilistdir(d or '/'):
            n += s.used(d + '/' + e[0]) if e[1] & 0x4000 else _blocks(e[3])
        return n
    def statvfs(s, path):
        if not s.limit:
            return s.fs.statvfs(path)
        free = max(0, s.limit - s.used()) // 4096
        return (4096, 4096, s.limit // 4096, free, free, 0, 0, 0, 0, 255)
    def open(s, path, mode):
        f = s.fs.open(path, mode)
        return f if not s.limit or 'r' in mode and '+' not in mode else _Capped(s, f)

class _Capped:
    def __init__(s, fs, f):
        s.fs = fs
        s.f = f
    def __getattr__(s, name):
        return getattr(s.f, name)
    def __enter__(s):
        return s
    def __exit__(s, *exc):
        s.f.close()
    def write(s, b):
        at = s.f.tell()
        if s.fs.used() + _blocks(at + len(b)) - _blocks(at) > s.fs.limit:
            raise OSError(28)
        return s.f.write(b)

vfs.mount(_Fs(vfs.VfsPosix(ROOT), LIMIT), '/')
os.chdir('/')
sys.path[:] = ['', '.frozen', '/lib']
g = {'__name__': '__main__'}

def _read(n):
    b = b''
    while len(b) < n:
        try:
            c = sys.stdin.buffer.read(n - len(b))
        except KeyboardInterrupt:
            continue
        if not c:
            raise SystemExit
        b += c
    return b

while True:
    kind = _read(1)
    src = _read(struct.unpack('<I', _read(4))[0]).decode()
    try:
        name = '<stdin>'
        if kind == b'r':
            name = src
            with open(name) as f:
                src = f.read()
        exec(compile(src, name, 'single' if kind == b's' else 'exec'), g)
    except BaseException as e:
        sys.stdout.write('\x04')
        sys.print_exception(e)
        sys.stdout.write('\x04')
    else:
        sys.stdout.write('\x04\x04')
"""


class _Stopped(Exception):
    pass


class FakeBoard(_Relay):
    NAME = "fakeboard"

    def __init__(self, root=None, silent=False, fs_limit=None, run_main=False, heap="256K"):
        self.root = root
        self.silent = silent
        self.fs_limit = fs_limit
        self.run_main = run_main
        self.heap = heap
        self.port = None
        self.mode = "friendly"
        self.soft_resets = 0        # soft reboots, either REPL
        self.main_starts = 0        # boots in the friendly REPL with a main.py: it starts (run_main)
        self.execs = 0              # code sent over the raw REPL and run
        self.error = None
        self._own_root = root is None
        self._master = self._slave = None
        self._cpu = None
        self._pending = bytearray()     # the board's stdin buffer
        self._dropping = False
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stop = False

    # -- the serial line ---------------------------------------------------------------

    def _open(self):
        if self.root is None:
            self.root = tempfile.mkdtemp(prefix="fakeboard-")
        os.makedirs(self.root, exist_ok=True)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)

    def _release(self):
        self._halt()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        fds = [self._master, self._slave]
        self._master = self._slave = None
        return fds

    def _wait(self, rfds, wfds=(), timeout=None):
        r, w, _ = select.select(list(rfds) + [self._wake_r], list(wfds), [], timeout)
        if self._stop or self._wake_r in r:
            raise _Stopped()
        return r, w

    def _take(self):
        """What the host sent since last time (b"" if nothing yet)."""
        try:
            return os.read(self._master, 4096)
        except BlockingIOError:
            return b""
        except OSError:             # EIO: nobody has the port open
            time.sleep(0.01)
            return b""

    def _getc(self):
        while not self._pending:
            self._wait([self._master])
            self._pending += self._take()
        c = self._pending[0]
        del self._pending[0]
        return c

    def _out(self, data):
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view):]
                self._dropping = False
            except BlockingIOError:
                if self._dropping or not self._wait([], [self._master], 0.5)[1]:
                    self._dropping = True       # nobody reads: lost
                    return

    # -- the CPU ---------------------------------------------------------------------------

    def _halt(self):
        cpu, self._cpu = self._cpu, None
        if cpu is not None:
            cpu.kill()
            cpu.wait()
            cpu.stdin.close()
            cpu.stdout.close()

    def _boot(self, soft=True):
        """Power-on or soft reset: a fresh CPU (empty heap, no globals); in
        the friendly REPL a main.py then runs (with run_main) as on a board."""
        self._halt()
        main = self.mode == "friendly" and os.path.isfile(os.path.join(self.root, "main.py"))
        self.main_starts += main
        if soft:
            self.soft_resets += 1
            self._out(b"MPY: soft reboot\r\n")
        mp = mpbuild.tool("micropython")
        if not mp:
            raise RuntimeError("micropython (the unix port) not found")
        code = "ROOT = %r\nLIMIT = %r\n" % (os.path.abspath(self.root), self.fs_limit) + CPU
        self._cpu = subprocess.Popen([mp, "-X", "heapsize=" + self.heap, "-c", code], cwd=self.root,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        if main and self.run_main:
            self._execute(b"main.py", kind=b"r", eof=False)

    def _execute(self, code, kind=b"f", eof=True):
        """Run code on the CPU, its output to the host up to the two \\x04 that
        end it (passed on when eof: the raw REPL's framing)."""
        cpu = self._cpu
        try:
            cpu.stdin.write(kind + struct.pack("<I", len(code)) + code)
            cpu.stdin.flush()
        except BrokenPipeError:
            pass
        fd = cpu.stdout.fileno()
        seen = 0
        while seen < 2:
            r, _ = self._wait([fd, self._master])
            if self._master in r:
                data = self._take()
                if CTRL_C in data:
                    cpu.send_signal(signal.SIGINT)
                self._pending += data.replace(b"\x03", b"")
            if fd in r:
                out = os.read(fd, 4096)
                if not out:                     # the CPU died: the board resets
                    self.error = RuntimeError("the board's MicroPython process exited")
                    self._boot(soft=False)
                    return
                seen += out.count(b"\x04")
                if not eof:
                    out = out.replace(b"\x04", b"")
                self._out(out.replace(b"\n", b"\r\n"))

    # -- the REPLs (shared/runtime/pyexec.c) -----------------------------------------------

    def _run(self):
        try:
            if self.silent:
                while True:
                    self._getc()
            self._boot(soft=False)
            while True:
                if self.mode == "raw":
                    reset = self._raw_repl()
                else:
                    reset = self._friendly_repl()
                if reset:
                    self._boot()
        except _Stopped:
            pass
        except Exception as e:          # keep the failure for the test to see
            self.error = e

    def _raw_repl(self):
        """True for a soft reset, False to go to the friendly REPL."""
        banner = True
        while True:
            if banner:
                self._out(b"raw REPL; CTRL-B to exit\r\n")
            banner = False
            self._out(b">")
            line = bytearray()
            while True:
                c = self._getc()
                if c == CTRL_A:
                    if len(line) == 2 and line[0] == CTRL_E:
                        self._raw_paste(line[1])
                    else:
                        banner = True
                    break
                if c == CTRL_B:
                    self._out(b"\r\n")
                    self.mode = "friendly"
                    return False
                if c == CTRL_C:
                    line = bytearray()
                elif c == CTRL_D:
                    self._out(b"OK")
                    if not line:
                        self._out(b"\r\n")
                        return True
                    self.execs += 1
                    self._execute(bytes(line))
                    break
                else:
                    line.append(c)

    def _raw_paste(self, cmd):
        if cmd != ord("A"):
            self._out(b"R\x00")
            return
        self._out(b"R\x01")
        window = STDIN_BUFFER // 2
        self._out(struct.pack("<H", window) + b"\x01")
        code = bytearray()
        left = window
        while True:
            c = self._getc()
            if c in (CTRL_C, CTRL_D):
                self._out(b"\x04")
                if c == CTRL_C:
                    self._out(b"\x04KeyboardInterrupt: \r\n\x04")
                    return
                break
            code.append(c)
            left -= 1
            if not left:
                self._out(b"\x01")
                left = window
        self.execs += 1
        self._execute(bytes(code))

    def _friendly_repl(self):
        """True for a soft reset, False to go to the raw REPL."""
        self._out(BANNER)
        while True:
            self._out(b">>> ")
            line = bytearray()
            while True:
                c = self._getc()
                if c == CTRL_C:
                    self._out(b"\r\n")
                    break
                if not line and c in (CTRL_A, CTRL_B, CTRL_D):
                    self._out(b"\r\n")
                    if c == CTRL_B:
                        self._out(BANNER)
                        break
                    if c == CTRL_A:
                        self.mode = "raw"
                    return c == CTRL_D
                if c == ord("\r"):
                    self._out(b"\r\n")
                    if line:
                        self._execute(bytes(line), kind=b"s", eof=False)
                    break
                if c in (8, 127) and line:
                    line.pop()
                    self._out(b"\x08 \x08")
                elif 32 <= c < 127:
                    line.append(c)
                    self._out(bytes([c]))
