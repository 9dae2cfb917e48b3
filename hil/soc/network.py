# network, as the ESP32 port has it, for the emulated SoC (hil/soc/__init__.py):
# a station whose association takes join_ms and fails the first `fail`
# attempts (no AP found), or every attempt with the wrong ssid or password;
# with drop_after_ms it loses the link once that long after joining.
from time import ticks_ms, ticks_diff

from hil.soc import CFG

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

_W = CFG.get("wifi", {})
_sta = None


class _WLAN:
    def __init__(self):
        self.attempts = 0
        self._active = False
        self._st = STAT_IDLE
        self._t = 0              # ticks the attempt began, or the link came up
        self._end = STAT_IDLE    # what the attempt in progress comes to
        self._dropped = False

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
            if not on:
                self._st = STAT_IDLE
        return self._active

    def config(self, *args, **kw):
        return None

    def connect(self, ssid, password=""):
        if not self._active:
            raise OSError("Wifi Not Started")
        self.attempts += 1
        if ssid != _W.get("ssid"):
            self._end = STAT_NO_AP_FOUND
        elif password != _W.get("password", ""):
            self._end = STAT_WRONG_PASSWORD
        else:
            self._end = STAT_NO_AP_FOUND if self.attempts <= _W.get("fail", 0) else STAT_GOT_IP
        self._st = STAT_CONNECTING
        self._t = ticks_ms()

    def disconnect(self):
        self._st = STAT_IDLE

    def status(self):
        now = ticks_ms()
        if self._st == STAT_CONNECTING and ticks_diff(now, self._t) >= _W.get("join_ms", 200):
            self._st = self._end
            self._t = now
        drop = _W.get("drop_after_ms", 0)
        if self._st == STAT_GOT_IP and drop and not self._dropped and ticks_diff(now, self._t) >= drop:
            self._dropped = True
            self._st = STAT_BEACON_TIMEOUT
        return self._st

    def isconnected(self):
        return self.status() == STAT_GOT_IP

    def ifconfig(self):
        return ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")


def WLAN(interface=STA_IF):
    global _sta
    if _sta is None:
        _sta = _WLAN()
    return _sta
