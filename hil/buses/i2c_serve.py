# The far end of the test plugin's I2C proxy (hil/harness/i2c_proxy.py): runs on the
# other interpreter, owns the buses and answers one transaction per line.
# Portable (MicroPython unix port, an ESP32 over mpremote, CPython).
#
#   micropython-unix: serve_twins(board) reads requests on stdin, answers on
#                     stdout; the buses are EmulatedI2C with the board's twins.
#   esp32:            the host mounts the repo with mpremote and calls
#                     Server(machine_buses(board)).handle(line) per request;
#                     the buses are the board's machine.I2C.
#
# Requests, one per line, numbers in hex, data as hex ("-" for none):
#   w BUS ADDR DATA              writeto                 -> ok N
#   r BUS ADDR N                 readfrom_into, N bytes  -> ok DATA
#   m BUS ADDR MEMADDR N SIZE    readfrom_mem_into       -> ok DATA
#   M BUS ADDR MEMADDR DATA SIZE writeto_mem             -> ok
#   s BUS                        scan                    -> ok ADDR ADDR ...
#   f BUS ADDR N ERRNO           fail_next (twins only)  -> ok
#   a BUS ADDR 0|1               absent (twins only)     -> ok
#   z                            fresh buses             -> ok
# An OSError is "err ERRNO"; anything else "exc TYPE: MESSAGE".

import sys
import binascii


def unhex(s):
    return b"" if s == "-" else binascii.unhexlify(s)


def tohex(b):
    return binascii.hexlify(b).decode() if b else "-"


def _errno(e):
    n = getattr(e, "errno", None)
    if not isinstance(n, int):
        n = e.args[0] if e.args and isinstance(e.args[0], int) else 5
    return n


class Server:
    def __init__(self, open_buses):
        self.open_buses = open_buses
        self.buses = open_buses()

    def handle(self, line):
        p = line.split()
        try:
            return "ok" + self._do(p[0], p[1:])
        except OSError as e:
            return "err %d" % _errno(e)
        except Exception as e:
            return "exc %s: %s" % (type(e).__name__, e)

    def _do(self, op, a):
        if op == "z":
            self.buses = self.open_buses()
            return ""
        bus = self.buses[a[0]]
        if op == "s":
            return "".join(" %x" % x for x in bus.scan())
        addr = int(a[1], 16)
        if op == "w":
            return " %d" % bus.writeto(addr, unhex(a[2]))
        if op == "r":
            buf = bytearray(int(a[2], 16))
            bus.readfrom_into(addr, buf)
            return " " + tohex(buf)
        if op == "m":
            buf = bytearray(int(a[3], 16))
            bus.readfrom_mem_into(addr, int(a[2], 16), buf, int(a[4], 16))
            return " " + tohex(buf)
        if op == "M":
            bus.writeto_mem(addr, int(a[2], 16), unhex(a[3]), int(a[4], 16))
            return ""
        if op == "f":
            bus.fail_next(addr, int(a[2], 16), int(a[3], 16))
            return ""
        if op == "a":
            bus.absent(addr, a[2] == "1")
            return ""
        raise ValueError("unknown request %r" % op)


def machine_buses(board):
    """The board's I2C buses as machine.I2C (on the device)."""
    from agent.port.micropython import open_i2c
    return dict((name, open_i2c(bus)) for name, bus in board["buses"].items() if bus["kind"] == "i2c")


def serve(server):
    """Answer requests from stdin until EOF or "q"."""
    say("ready")
    while True:
        line = sys.stdin.readline()
        if not line or line.strip() == "q":
            break
        say(server.handle(line))


def say(line):
    sys.stdout.write(line + "\n")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()


def serve_twins(board, seed=1):
    from hil.twins import i2c_buses
    serve(Server(lambda: i2c_buses(board, seed)))
