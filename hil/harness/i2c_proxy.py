"""The near end of an I2C bus that lives on another interpreter (CPython only).

ProxyI2C has machine.I2C's method names; each call is one request line to
hil/buses/i2c_serve.py on the far side, where the transaction runs on the real bus
object (EmulatedI2C with twins under the MicroPython unix port, machine.I2C on
an ESP32). The proxy is transparent: a bus error comes back as the OSError
the far bus raised, errno and all, and the drivers type it as they would on
the device. Links:

  PipeLink      a helper process (the MicroPython unix port) on stdin/stdout
  MpremoteLink  a board over USB: mpremote mounts the repo on it, and each
                request is one eval in its raw REPL
"""
import errno
import os
import subprocess

from hil.buses.i2c_serve import tohex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LinkError(RuntimeError):
    pass


class ProxyI2C:
    def __init__(self, link, bus):
        self.link = link
        self.bus = bus

    def _call(self, op, *args):
        line = " ".join((op, self.bus) + args)
        reply = self.link.call(line)
        if reply.startswith("err "):
            n = int(reply[4:])
            raise OSError(n, errno.errorcode.get(n, "I2C error"))
        if not reply.startswith("ok"):
            raise LinkError("%s: %r -> %s" % (self.link, line, reply))
        return reply[3:]

    def _data(self, reply, buf):
        data = b"" if reply == "-" else bytes.fromhex(reply)
        buf[:] = data

    # machine.I2C --------------------------------------------------------------------

    def writeto(self, addr, buf, stop=True):
        return int(self._call("w", "%x" % addr, tohex(bytes(buf))))

    def readfrom_into(self, addr, buf, stop=True):
        self._data(self._call("r", "%x" % addr, "%x" % len(buf)), buf)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self._data(self._call("m", "%x" % addr, "%x" % memaddr, "%x" % len(buf), "%x" % addrsize), buf)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._call("M", "%x" % addr, "%x" % memaddr, tohex(bytes(buf)), "%x" % addrsize)

    def scan(self):
        return [int(x, 16) for x in self._call("s").split()]

    # fault injection, where the far bus is an EmulatedI2C ------------------------------

    def fail_next(self, addr, n=1, errno_=errno.EIO):
        self._call("f", "%x" % addr, "%x" % n, "%x" % errno_)

    def absent(self, addr, flag=True):
        self._call("a", "%x" % addr, "1" if flag else "0")


class PipeLink:
    """hil.buses.i2c_serve in a helper process, one request and one reply per line."""

    def __init__(self, argv, cwd=ROOT, env=None):
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        first = self.proc.stdout.readline().strip()
        if first != "ready":
            raise LinkError("%s did not start: %s%s" % (self, first, self._stderr()))

    def __str__(self):
        return "helper %s" % os.path.basename(self.argv[0])

    def _stderr(self):
        self.proc.kill()
        return self.proc.communicate()[1]

    def call(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise LinkError("%s is gone: %s" % (self, self._stderr())) from None
        reply = self.proc.stdout.readline()
        if not reply:
            raise LinkError("%s is gone: %s" % (self, self._stderr()))
        return reply.strip()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("q\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def micropython_twins(micropython, board, heap="256K", seed=1):
    """A PipeLink to the MicroPython unix port serving EmulatedI2C buses with
    the board's twins (hil.twins), run from the repo's sources."""
    code = "import hil.buses.i2c_serve as s; s.serve_twins(%r, %d)" % (board, seed)
    env = dict(os.environ, MICROPYPATH=ROOT)
    return PipeLink([micropython, "-X", "heapsize=" + heap, "-c", code], env=env)


class MpremoteLink:
    """A MicroPython board over USB (mpremote): the repo is mounted on the
    board (mpremote mount), the helper imported from it, and each request is
    one eval in the raw REPL. The buses are the board's machine.I2C."""

    def __init__(self, port, board, root=ROOT, baudrate=115200):
        from mpremote.transport_serial import SerialTransport
        self.port = port
        self.t = SerialTransport(port, baudrate=baudrate)
        self.t.enter_raw_repl(soft_reset=True)
        self.t.mount_local(root)
        self.t.exec("from hil.buses.i2c_serve import Server, machine_buses\n"
                    "_tally_srv = Server(lambda: machine_buses(%r))" % (board,))

    def __str__(self):
        return "board on %s" % self.port

    def call(self, line):
        return self.t.eval("_tally_srv.handle(%r)" % line, parse=False).decode().strip()

    def close(self):
        try:
            self.t.umount_local()
            self.t.exit_raw_repl()
        finally:
            self.t.close()
