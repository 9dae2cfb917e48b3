# The device's network: a Wi-Fi station that keeps itself joined, with
# exponential backoff and equal jitter between attempts (agent/backoff.py),
# and a small SNTP client (RFC 4330 / RFC 5905 client mode) that sets the
# clock's wall time, retried the same way. Both are stepped from the main
# loop and never hold it up for long: WifiLink.step only starts an
# association or looks at its state; Sntp.step makes at most one exchange,
# bounded by the socket timeout (not bounded: resolving a host name; give an
# IP address to bound that too). Portable: the SNTP client also
# runs on CPython and the MicroPython unix port (tests); WifiLink needs the
# `network` module (ESP32).
import os
import socket
import struct

from agent.backoff import Backoff
from agent.clock import ticks_ms, ticks_diff

NTP_DELTA = 2208988800        # s from 1900-01-01 (NTP) to 1970-01-01 (Unix)
_SOON = 100                   # ms between looks at an association in progress


class WifiLink:
    """Joins ssid and rejoins when the link drops. step(now_ms) each pass of
    the main loop; up is True while associated and holding an address.
    Counters: attempts, failures (attempts that did not join), drops."""

    def __init__(self, ssid, password, wlan=None, wait_ms=15000, bmin=1000, bmax=300000):
        import network
        self.w = wlan or network.WLAN(network.STA_IF)
        self.ssid = ssid
        self.pw = password
        self.wait = wait_ms
        self.up = False
        self.attempts = 0
        self.failures = 0
        self.drops = 0
        self._b = Backoff(bmin, bmax)
        self._t = 0               # joining: when the attempt began; else when to try next
        self._joining = False
        self._bad = {}            # status codes that end an attempt at once -> name
        for n in ("STAT_WRONG_PASSWORD", "STAT_NO_AP_FOUND", "STAT_CONNECT_FAIL",
                  "STAT_ASSOC_FAIL", "STAT_HANDSHAKE_TIMEOUT", "STAT_BEACON_TIMEOUT"):
            c = getattr(network, n, None)
            if c is not None:
                self._bad[c] = n[5:].lower().replace("_", " ")
        try:
            self.w.config(reconnects=0)    # the driver's own retries would fight our backoff
        except (ValueError, TypeError, OSError):
            pass

    def step(self, now):
        w = self.w
        if self.up:
            if w.isconnected():
                return True
            self.up = False
            self.drops += 1
            self._t = now
            print("wifi: lost %r; rejoining" % self.ssid)
        if self._joining:
            if w.isconnected():
                self._joining = False
                self.up = True
                self._b.reset()
                print("wifi: joined %r as %s (attempt %d, %d failed)"
                      % (self.ssid, w.ifconfig()[0], self.attempts, self.failures))
                return True
            why = self._bad.get(w.status())
            if why is None and now - self._t >= self.wait:
                why = "no address in %d ms" % self.wait
            if why is not None:
                self._fail(now, why)
            return False
        if now >= self._t:
            self.attempts += 1
            self._t = now
            self._joining = True
            try:
                w.active(True)
                w.connect(self.ssid, self.pw)
            except OSError as e:
                self._fail(now, repr(e))
        return False

    def _fail(self, now, why):
        self._joining = False
        self.failures += 1
        try:
            self.w.disconnect()
        except OSError:
            pass
        self._t = self._b.after(now)
        print("wifi: %r not joined (%s), attempt %d; next in %d ms"
              % (self.ssid, why, self.attempts, self._t - now))

    def due(self, now):
        """Uptime of the next step with work to do."""
        if self.up:
            return now + 1000
        return now + _SOON if self._joining else self._t


class Sntp:
    """Wall time from an NTP server: step(now_ms) queries when due (at once,
    then every resync_ms; after a failure with backoff and jitter, after a
    kiss-o'-death at the longest backoff) and sets clock.set_wall()."""

    def __init__(self, server, clock, timeout_ms=1000, resync_ms=3600000, bmin=2000, bmax=600000):
        host, _, p = server.partition(":")
        self.host = host
        self.port = int(p) if p else 123
        self.clock = clock
        self.timeout = timeout_ms
        self.resync = resync_ms
        self.synced = 0
        self.failures = 0
        self.last_error = None
        self.kod = None           # the kiss code of the last kiss-o'-death (b"RATE", b"DENY", ...)
        self._b = Backoff(bmin, bmax)
        self._t = 0
        self._buf = bytearray(48)

    def query(self):
        """One exchange; Unix time in ms as of its return. OSError: no answer
        in time; ValueError: an answer we do not trust."""
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
        s = socket.socket(ai[0], socket.SOCK_DGRAM)
        try:
            s.settimeout(self.timeout / 1000)
            b = self._buf
            for i in range(48):
                b[i] = 0
            b[0] = 0x23                    # LI 0, version 4, mode 3 (client)
            nonce = os.urandom(8)          # our transmit time: a nonce the reply must echo
            b[40:48] = nonce
            t1 = ticks_ms()
            s.sendto(b, ai[-1])
            try:
                r = s.recv(128)
            except OSError:                # EAGAIN / ETIMEDOUT / socket.timeout
                raise OSError("no answer in %d ms" % self.timeout)
            t4 = ticks_ms()
        finally:
            s.close()
        ms = self.parse(r, nonce, ticks_diff(t4, t1))
        return ms + ticks_diff(ticks_ms(), t4)

    def parse(self, r, nonce, rtt_ms):
        """Unix ms at the moment reply r arrived, rtt_ms after the request."""
        self.kod = None
        if len(r) < 48:
            raise ValueError("NTP reply of %d bytes (a reply has 48 or more)" % len(r))
        mode = r[0] & 7
        if mode != 4:
            raise ValueError("NTP reply in mode %d, not 4 (server)" % mode)
        if r[1] == 0:
            self.kod = bytes(r[12:16])
            raise ValueError("NTP kiss-o'-death %r" % self.kod)
        if r[1] >= 16:
            raise ValueError("NTP server unsynchronised (stratum %d)" % r[1])
        if r[0] >> 6 == 3:
            raise ValueError("NTP server unsynchronised (leap indicator 3)")
        if r[24:32] != nonce:
            raise ValueError("NTP reply's origin time is not our request's")
        t3 = _ms(r, 40)
        if not t3:
            raise ValueError("NTP reply without a transmit time")
        d = rtt_ms - (t3 - _ms(r, 32))     # the round trip less the server's own time
        return t3 - NTP_DELTA * 1000 + (d // 2 if d > 0 else 0)

    def step(self, now):
        """Sync if due; True when the clock was set by this call."""
        if now < self._t:
            return False
        try:
            ms = self.query()
        except (OSError, ValueError) as e:
            self.failures += 1
            self.last_error = e
            self._t = self._b.after(now, self.kod is not None)
            print("ntp: %s:%d: %s; next try in %d ms" % (self.host, self.port, e, self._t - now))
            return False
        self.clock.set_wall(ms)
        self.synced += 1
        self._b.reset()
        self._t = now + self.resync
        if self.synced == 1:
            print("ntp: wall clock set from %s:%d (unix %d), quality NTP" % (self.host, self.port, ms // 1000))
        return True


def _ms(r, o):
    """An NTP timestamp at r[o:o+8] as ms since 1900; 0 for a zero one."""
    s, f = struct.unpack_from(">II", r, o)
    if not (s or f):
        return 0
    if s < 0x80000000:
        s += 1 << 32                   # era 1: from 2036-02-07 on
    return s * 1000 + (f * 1000 >> 32)

