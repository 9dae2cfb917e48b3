# CPython (Raspberry Pi, Linux, CI) side of the port: files with fsync, host
# randomness, reset cause, and whether the host's clock is synchronised
# (adjtimex, else timedatectl). Bus and network adapters live in their own modules
# (agent.port.linux_bus, agent.port.mqtt_paho) so importing this stays cheap.
import os

PLATFORM = "cpython"


def fsync_file(f):
    """Flush f and make it durable. An OSError here means the data is NOT durable."""
    f.flush()
    os.fsync(f.fileno())


def fsync_dir(path):
    d = os.path.dirname(os.path.abspath(path)) or "."
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(path):
    return os.path.exists(path)


def file_size(path):
    return os.stat(path).st_size


def rename(a, b):
    os.replace(a, b)


def remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def random_u32():
    return int.from_bytes(os.urandom(4), "little")


def mem_free():
    """Free heap is a MicroPython notion; on CPython report 0 (unknown)."""
    return 0


def reset_cause():
    # A Linux host cannot tell power-on from a crash by itself; the agent
    # records "poweron" unless it finds its own clean-shutdown marker.
    return "poweron"


# -- is the host clock good? ----------------------------------------------------------
# A Pi has no battery-backed clock: until NTP has synchronised it, the host's
# time may be the last shutdown's, or 1970. The agent calls the host clock good
# (WALL_HOST) only while the kernel says it is synchronised.

STA_UNSYNC = 0x0040       # adjtimex(2) status: the clock is not synchronised
TIME_ERROR = 5            # adjtimex(2) return: the clock is not synchronised


def parse_adjtimex(ret, status):
    """adjtimex(2)'s answer (its return value and the status field) -> True
    when the kernel calls the clock synchronised."""
    return ret >= 0 and ret != TIME_ERROR and not status & STA_UNSYNC


def parse_timedatectl(out):
    """`timedatectl show -p NTPSynchronized --value` -> True, False or None."""
    v = out.strip().lower()
    return True if v == "yes" else False if v == "no" else None


def _adjtimex():
    import ctypes

    class Timex(ctypes.Structure):      # struct timex, the fields up to status
        _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                    ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                    ("rest", ctypes.c_byte * 256)]   # the rest of the struct, whatever the arch
    libc = ctypes.CDLL(None, use_errno=True)
    t = Timex()                         # modes 0: read only, no privilege needed
    ret = libc.adjtimex(ctypes.byref(t))
    if ret < 0:
        raise OSError(ctypes.get_errno(), "adjtimex")
    return ret, t.status


def host_clock_synchronised():
    """True when the system says its clock is synchronised, False when it
    says it is not, None when it cannot tell (then the clock is not trusted)."""
    try:
        return parse_adjtimex(*_adjtimex())
    except (OSError, AttributeError, ImportError):
        pass
    import subprocess
    try:
        r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                           capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_timedatectl(r.stdout) if r.returncode == 0 else None


# -- the node's own identity ------------------------------------------------------------

def parse_cpuinfo(text):
    """The "Serial" line of /proc/cpuinfo (a Raspberry Pi's SoC serial) as 16
    hex digits, or None."""
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.strip() == "Serial":
            v = v.strip().lower()
            try:
                n = int(v, 16)
            except ValueError:
                return None
            return "%016x" % n if n else None
    return None


def node_id(root="/"):
    """The node's component id: "rpi-<SoC serial, 16 hex>" from the device
    tree (/sys/firmware/devicetree/base/serial-number) or /proc/cpuinfo, or
    None on a host that has neither (a PC)."""
    try:
        with open(os.path.join(root, "sys/firmware/devicetree/base/serial-number"), "rb") as f:
            v = f.read().rstrip(b"\x00\n").decode("ascii", "replace")
        return "rpi-%016x" % int(v, 16)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "proc/cpuinfo")) as f:
            s = parse_cpuinfo(f.read())
    except OSError:
        return None
    return "rpi-" + s if s else None
