# Clocks. Both give monotonic milliseconds since start (uptime_ms) and, when
# known good, wall-clock seconds with a quality flag.
#
# Wall-clock quality (carried in every record and batch):
WALL_NONE = 0     # unknown: the collector re-anchors from (boot, uptime_ms)
WALL_HOST = 1     # the host's clock, while the system says it is synchronised (a Pi's NTP)
WALL_NTP = 2      # set from NTP by the agent itself
WALL_SIM = 3      # simulated (virtual clock)

try:
    from time import ticks_ms, ticks_diff, sleep_ms
except ImportError:  # CPython
    import time as _t

    def ticks_ms():
        return int(_t.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        _t.sleep(ms / 1000)


HOST_CHECK_MS = 60000     # how often a host clock's synchronisation is asked again


class RealClock:
    """host_sync: a callable that says whether the host's clock is synchronised
    (agent.port.cpython.host_clock_synchronised on a Pi); while it does not
    say True, the host clock is not good and records carry no wall time."""

    def __init__(self, wall_quality=WALL_HOST, host_sync=None):
        self._t0 = ticks_ms()
        self._up = 0
        self._last = self._t0
        self._q = wall_quality
        self._wall0 = None            # set_wall(): wall ms at uptime 0
        self.host_sync = host_sync
        self._synced = False
        self._asked = None

    @property
    def wall_quality(self):
        if self._wall0 is not None or self.host_sync is None or self._q == WALL_NONE:
            return self._q
        now = ticks_ms()
        if self._asked is None or ticks_diff(now, self._asked) >= HOST_CHECK_MS:
            self._asked = now
            self._synced = self.host_sync() is True
        return self._q if self._synced else WALL_NONE

    @wall_quality.setter
    def wall_quality(self, q):
        self._q = q

    def uptime_ms(self):
        # Accumulate ticks_diff so a wrapping ticks counter (MicroPython) never
        # makes uptime go back.
        now = ticks_ms()
        self._up += ticks_diff(now, self._last)
        self._last = now
        return self._up

    world_ms = uptime_ms

    def wall_s(self):
        if self._wall0 is not None:
            return (self._wall0 + self.uptime_ms()) // 1000
        if self.wall_quality == WALL_NONE:
            return 0
        import time
        return int(time.time())

    def set_wall(self, unix_ms, quality=WALL_NTP):
        """The wall clock reads unix_ms now (from NTP): from here on wall_s()
        counts on from the ticks, never from time.time(), whose epoch and
        setting on a board are its own."""
        self._wall0 = unix_ms - self.uptime_ms()
        self._q = quality

    def sleep_ms(self, ms):
        if ms > 0:
            sleep_ms(ms)


class VirtualClock:
    """Time that moves only when told to: a simulated month runs in seconds."""

    def __init__(self, start_wall_s=1767225600, start_ms=0):  # 2026-01-01T00:00Z
        self._ms = start_ms          # world time since the simulation began
        self._boot_ms = start_ms     # world time of the last (re)boot
        self._wall0 = start_wall_s
        self.wall_quality = WALL_SIM

    def world_ms(self):
        return self._ms

    def uptime_ms(self):
        return self._ms - self._boot_ms

    def reboot(self):
        """Uptime restarts at zero; world and wall time carry on."""
        self._boot_ms = self._ms

    def wall_s(self):
        return self._wall0 + self._ms // 1000

    def sleep_ms(self, ms):
        if ms > 0:
            self._ms += ms

    advance_ms = sleep_ms
