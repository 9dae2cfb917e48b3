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
    # A Linux host cannot tell power-on from a crash by itself: without the
    # state boot_reason() reads (tally run keeps it), "poweron".
    return "poweron"


# -- why this start: the boot reason on a Pi ---------------------------------------------
# `tally run` keeps one line in STATE_FILE beside its log: "running" from its
# start, "clean" once it has stopped cleanly (SIGTERM from systemctl stop or
# a shutdown, Ctrl-C, --duration: the interval in progress logged). The
# systemd unit (docs/systemd/tally.service) writes systemd's $SERVICE_RESULT
# for every stop to STOP_FILE beside it (ExecStopPost). At the next start,
# before anything is rewritten, the reason is, in this order:
#   no state file            "poweron"     first start on this log directory
#   "clean"                  "deliberate"  a clean stop (service stop or restart, a clean shutdown)
#   STOP_FILE says watchdog  "watchdog"    systemd killed the agent: no WATCHDOG=1 within WatchdogSec
#   host up < FRESH_S        "poweron"     the host itself restarted under us: power loss or a hard reset
#   otherwise                "crash"       the agent died while the host ran on (killed, an exception, OOM)
STATE_FILE = "tally.state"
STOP_FILE = "stop-result"
FRESH_S = 300                # a host up less than this came up with us


def host_uptime_s(path="/proc/uptime"):
    """Seconds the host has been up (the first field of /proc/uptime), None
    when it cannot be read."""
    try:
        with open(path) as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def boot_reason(state_dir, uptime_path="/proc/uptime"):
    """Why the agent is starting (docs/running-on-a-pi.md, "Boot reasons"):
    one of the birth's reasons, from the state the last run left."""
    state = _read(os.path.join(state_dir, STATE_FILE))
    stop = _read(os.path.join(state_dir, STOP_FILE))
    if state is None:
        return "poweron"
    if state == "clean":
        return "deliberate"
    if stop == "watchdog":
        return "watchdog"
    up = host_uptime_s(uptime_path)
    if up is not None and up < FRESH_S:
        return "poweron"
    return "crash"


def mark_state(state_dir, what):
    """Write "running" (at start, after boot_reason) or "clean" (after a
    clean stop), durably: replaced in one rename, the directory synced. The
    stop result of the run before is consumed with the first "running"."""
    path = os.path.join(state_dir, STATE_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(what + "\n")
        fsync_file(f)
    os.replace(path + ".tmp", path)
    if what == "running":
        remove(os.path.join(state_dir, STOP_FILE))
    fsync_dir(path)


# -- systemd's notify protocol: READY=1, WATCHDOG=1, STOPPING=1 --------------------------
# One datagram to the unix socket systemd names in $NOTIFY_SOCKET (a path, or
# an abstract name after "@"), sd_notify(3); no library. With WatchdogSec= the
# unit expects WATCHDOG=1 at least every $WATCHDOG_USEC microseconds; the
# agent's loop sends it every half of that, after a tick, so a loop that hangs
# (a bus that never answers, a deadlock) stops the pings and systemd restarts
# the agent, which then says "watchdog" in its birth.

class Notifier:
    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.path = env.get("NOTIFY_SOCKET") or None
        if self.path and self.path[0] == "@":
            self.path = "\0" + self.path[1:]
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.every_ms = 0            # 0: no watchdog asked for
        try:
            if usec and (not pid or int(pid) == os.getpid()):
                self.every_ms = max(1, int(usec) // 2000)
        except ValueError:
            pass
        self._next = 0
        self.sent = 0

    def notify(self, msg):
        """Send one notification; False when there is no socket or it fails
        (systemd not listening is never an error for the agent). Never
        blocks: a full socket queue drops the datagram (metering goes on)."""
        if not self.path:
            return False
        import socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setblocking(False)
        try:
            s.connect(self.path)
            s.send(msg.encode())
            self.sent += 1
            return True
        except OSError:
            return False
        finally:
            s.close()

    def ping(self, now_ms):
        """WATCHDOG=1 when half the watchdog time has gone since the last."""
        if self.every_ms and now_ms >= self._next:
            self._next = now_ms + self.every_ms
            return self.notify("WATCHDOG=1")
        return False

    def wait_ms(self, now_ms, wait_ms):
        """wait_ms, cut so the loop wakes for the next ping."""
        if self.every_ms and self._next - now_ms < wait_ms:
            return max(0, self._next - now_ms)
        return wait_ms


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
