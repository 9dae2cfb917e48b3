"""An emulated NTP server (CPython only) on a free loopback UDP port, for the
device's SNTP client (agent/port/net_mp.py): it answers each request in the
way the next entry of `modes` says, the last entry repeating:

  ok            a good server reply (stratum 2), with the client's transmit
                time echoed as the origin time
  silent        no reply at all (the client's timeout)
  kod           a kiss-o'-death: stratum 0, kiss code RATE (or kod:DENY ...)
  wrong_origin  an origin time that is not the client's (a stale or spoofed reply)
  li3           leap indicator 3: the server's own clock is not synchronised
  stratum16     stratum 16: unsynchronised
  zero_tx       a transmit time of zero
  client_mode   mode 3 instead of 4
  short         a garbage length: the first 20 bytes of a reply

The time it serves is wall0 (Unix seconds) plus the time since it started,
so a test can serve a date far from the host's own clock."""
import socket
import struct
import threading
import time

NTP_DELTA = 2208988800


def ntp_ts(unix):
    s = int(unix)
    return struct.pack("!II", (s + NTP_DELTA) & 0xFFFFFFFF, int((unix - s) * (1 << 32)) & 0xFFFFFFFF)


class SntpServer:
    def __init__(self, modes=("ok",), wall0=None, host="127.0.0.1"):
        self.modes = list(modes)
        self.wall0 = time.time() if wall0 is None else wall0
        self._m0 = time.monotonic()
        self.requests = []        # (request bytes, the mode it was answered in)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.05)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.addr = "%s:%d" % (host, self.port)
        self._stop = threading.Event()
        self._thread = None

    def now(self):
        return self.wall0 + time.monotonic() - self._m0

    def start(self):
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def close(self):
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _serve(self):
        while not self._stop.is_set():
            try:
                req, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            mode = self.modes[min(len(self.requests), len(self.modes) - 1)]
            self.requests.append((req, mode))
            reply = self.reply(req, mode)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def reply(self, req, mode):
        if mode == "silent":
            return None
        rx = self.now()
        li = 3 if mode == "li3" else 0
        stratum = {"kod": 0, "stratum16": 16}.get(mode.split(":")[0], 2)
        refid = mode.split(":")[1].encode() if mode.startswith("kod:") else b"RATE" if mode == "kod" \
            else b"\x7f\x00\x00\x01"
        origin = req[40:48] if len(req) >= 48 else b"\0" * 8
        if mode == "wrong_origin":
            origin = bytes(b ^ 0x5A for b in origin)
        tx = b"\0" * 8 if mode == "zero_tx" else ntp_ts(self.now())
        pkt = struct.pack("!BBbb", li << 6 | 4 << 3 | (3 if mode == "client_mode" else 4), stratum, 6, -20)
        pkt += struct.pack("!II", 0, 0x100) + refid + ntp_ts(rx - 16) + origin + ntp_ts(rx) + tx
        return pkt[:20] if mode == "short" else pkt
