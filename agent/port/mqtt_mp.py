# A small MQTT 3.1.1 client for MicroPython (ESP32) and CPython, and the
# uplink's transport on it (agent/sync.py). Plain TCP, or TLS with an
# ssl.SSLContext (agent/port/tls_mp.py makes the device's: its client
# certificate, the fleet CA, the broker's name checked); clean sessions only;
# publishes at QoS 0 or 1; subscriptions at QoS 1.
#
# Nothing blocks for long: the socket has a timeout (timeout_ms) on every
# read and write, check_msg() reads only what select.poll says is there, and
# any failure - a socket error, a timeout, a broker that closes on us, no
# PINGRESP or PUBACK within timeout_ms - closes the socket and raises OSError
# (MQTTError for what the broker says or sends wrong). The caller reconnects.
# Not bounded by timeout_ms: resolving a host name (getaddrinfo); use an IP.
#
# A publish allocates nothing of its own: the fixed header, topic and packet
# id go out from a preallocated buffer, then the payload as it is.
import sys
import errno
import socket
try:
    import select
except ImportError:
    import uselect as select
from agent.clock import ticks_ms, ticks_diff

_MP = sys.implementation.name == "micropython"
MAX_PEND = 8        # our QoS 1 publishes awaiting a PUBACK (the uplink keeps window + 2)
MAX_QUEUE = 8       # received messages held until taken (check_msg stops reading there)
_PINGREQ = b"\xc0\x00"
_DISCONNECT = b"\xe0\x00"


class MQTTError(OSError):
    """The broker refused us or broke the protocol."""


class TLSError(OSError):
    """The TLS session did not come up: the broker's certificate did not
    verify (its CA, its dates or its name)."""


class TLSRefused(TLSError):
    """The broker closed a TLS connection before accepting it: most often it
    refused our certificate (MicroPython does not expose the alert's reason)."""


def _bytes(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def _lp(b):
    # a length-prefixed field (strings and the will payload)
    return bytes((len(b) >> 8, len(b) & 255)) + b


class MQTTClient:
    def __init__(self, client_id, host, port=1883, keepalive=30, timeout_ms=5000, max_msg=4096, ssl=None):
        self.client_id = client_id
        self.ssl = ssl                    # an SSLContext: TLS, the broker's certificate checked for host
        self.host = host
        self.port = port
        self.keepalive = keepalive        # s; 0: no pings
        self.timeout_ms = timeout_ms
        self.max_msg = max_msg            # bigger incoming payloads are read and dropped
        self.sock = None
        self.msgs = []                    # (topic, payload) received, oldest first
        self.pend = {}                    # packet id -> ticks sent, our QoS 1 publishes
        self.pid = 0
        self.pings = 0
        self.dropped = 0
        self._hb = bytearray(48)          # outgoing header; grows once for a long topic
        self._ab = bytearray(b"\x40\x02\x00\x00")   # PUBACK
        self._rb = bytearray(2)
        self._tc = {}                     # topic -> its bytes, for the few we publish to
        self._poll = None
        self._tx = 0                      # ticks of our last packet out
        self._ping = None                 # ticks of the PINGREQ awaiting its PINGRESP
        self._suback = None

    # -- the socket ---------------------------------------------------------------

    def connected(self):
        return self.sock is not None

    def close(self):
        s = self.sock
        self.sock = self._poll = self._ping = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _write(self, buf, n):
        s = self.sock
        if _MP:
            r = s.write(buf, n)           # writes buf[:n] without a slice
        else:
            s.sendall(memoryview(buf)[:n])
            r = n
        if r != n:
            raise OSError(errno.ETIMEDOUT, "MQTT: write timed out")
        self._tx = ticks_ms()

    def _read(self, buf, n):
        s = self.sock
        if _MP:
            r = s.readinto(buf, n)
        else:
            r = 0
            mv = memoryview(buf)
            while r < n:
                k = s.recv_into(mv[r:], n - r)
                if not k:
                    break
                r += k
        if r != n:                        # closed (0) or timed out (None) mid-packet
            if r is None:
                raise OSError(errno.ETIMEDOUT, "MQTT: read timed out")
            raise OSError(errno.ECONNRESET, "MQTT: connection closed")

    def _readn(self, n):
        """n bytes read, in a new bytearray: one block of n, not a second one
        for a bytes copy (an OTA chunk is 2 KiB; a day-old heap may not have
        two blocks that size free at once)."""
        b = bytearray(n)
        self._read(b, n)
        return b

    def _u8(self):
        self._read(self._rb, 1)
        return self._rb[0]

    def _u16(self):
        self._read(self._rb, 2)
        return self._rb[0] << 8 | self._rb[1]

    def _ready(self, ms):
        # readable, hung up or in error: the read that follows says which.
        # MicroPython's TLS socket counts what mbedtls holds decrypted; CPython's does not
        if not _MP and self.ssl is not None and self.sock.pending():
            return True
        for _ in (self._poll.ipoll(ms) if _MP else self._poll.poll(ms)):
            return True
        return False

    # -- packets --------------------------------------------------------------------

    def _hdr(self, op, n):
        """Fixed header (type, remaining length) into the header buffer; its size."""
        if n >= 1 << 28:
            raise ValueError("MQTT packet too long")
        hb = self._hb
        hb[0] = op
        i = 1
        while True:
            hb[i] = n & 0x7F | (0x80 if n > 0x7F else 0)
            n >>= 7
            i += 1
            if not n:
                return i

    def _send(self, op, body):
        self._write(self._hb, self._hdr(op, len(body)))
        self._write(body, len(body))

    def _length(self):
        n = sh = 0
        while True:
            b = self._u8()
            n |= (b & 0x7F) << sh
            if not b & 0x80:
                return n
            sh += 7
            if sh > 21:
                raise MQTTError("MQTT: bad remaining length")

    def _handle(self):
        """Read and act on one packet from the broker."""
        op = self._u8()
        n = self._length()
        t = op & 0xF0
        if t == 0x30:
            self._incoming(op, n)
        elif t == 0x40 and n == 2:        # PUBACK
            self.pend.pop(self._u16(), None)
        elif t == 0xD0 and n == 0:        # PINGRESP
            self._ping = None
        elif t == 0x90 and n >= 3:        # SUBACK: packet id, then a code per filter
            b = self._readn(n)
            ok = True
            for c in b[2:]:
                ok = ok and c < 0x80
            self._suback = (b[0] << 8 | b[1], ok)
        else:
            raise MQTTError("MQTT: unexpected packet 0x%02x" % op)

    def _incoming(self, op, n):
        qos = op >> 1 & 3
        tl = self._u16()
        n -= 2 + tl + (2 if qos else 0)
        if qos > 1 or n < 0:
            raise MQTTError("MQTT: bad PUBLISH")
        topic = self._readn(tl).decode()
        pid = self._u16() if qos else 0
        if n > self.max_msg:
            hb = self._hb
            while n:
                k = min(n, len(hb))
                self._read(hb, k)
                n -= k
            self.dropped += 1
        else:
            self.msgs.append((topic, self._readn(n)))
        if qos:
            ab = self._ab
            ab[2] = pid >> 8
            ab[3] = pid & 255
            self._write(ab, 4)

    def _until(self, done):
        t0 = ticks_ms()
        while not done():
            left = self.timeout_ms - ticks_diff(ticks_ms(), t0)
            if left <= 0:
                raise OSError(errno.ETIMEDOUT, "MQTT: no answer in time")
            if self._ready(left):
                self._handle()

    def _next_pid(self):
        pid = self.pid
        while True:
            pid = pid % 0xFFFF + 1
            if pid not in self.pend:
                self.pid = pid
                return pid

    def _guard(self, fn, *args):
        # any failure leaves the client closed, for the caller to reconnect
        if self.sock is None:
            raise OSError(errno.ENOTCONN, "MQTT: not connected")
        try:
            return fn(*args)
        except Exception:
            self.close()
            raise

    # -- the API ----------------------------------------------------------------------

    def connect(self, will=None):
        """Open a clean session. will: (topic, payload[, qos=1[, retain=False]])."""
        self.close()
        self.pend = {}
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        self.sock = socket.socket(ai[0], socket.SOCK_STREAM)
        self._guard(self._connect, ai[-1], will)

    def _connect(self, addr, will):
        s = self.sock
        s.settimeout(self.timeout_ms / 1000)
        s.connect(addr)
        if hasattr(socket, "TCP_NODELAY"):   # not on MicroPython (ESP32 prints a warning)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl is None:
            self._open(will)
            return
        try:                              # the handshake, bounded by the socket's timeout
            s = self.sock = self.ssl.wrap_socket(s, server_hostname=self.host)
        except ValueError as e:           # the broker's certificate did not verify (MicroPython's
            # message; CPython's SSLCertVerificationError is a ValueError too)
            raise TLSError("TLS: the broker's certificate: %s" % str(e).strip())
        except OSError as e:
            if e.errno == errno.ETIMEDOUT:
                raise
            raise TLSRefused("TLS: the broker closed the handshake (%r)" % e)
        try:
            self._open(will)
        except MQTTError:
            raise
        except OSError as e:              # TLS 1.3: a refused certificate shows after the handshake
            if e.errno == errno.ETIMEDOUT:
                raise
            raise TLSRefused("TLS: the broker closed the connection before accepting it (%r)" % e)

    def _open(self, will):
        s = self.sock
        self._poll = select.poll()
        self._poll.register(s, select.POLLIN)
        ka = self.keepalive
        p = bytearray(b"\x00\x04MQTT\x04\x02")          # protocol, level 4, clean session
        p += bytes((ka >> 8, ka & 255)) + _lp(_bytes(self.client_id))
        if will:
            p[7] |= 4 | (will[2] if len(will) > 2 else 1) << 3 | (0x20 if len(will) > 3 and will[3] else 0)
            p += _lp(_bytes(will[0])) + _lp(_bytes(will[1]))
        self._send(0x10, p)
        if self._u8() != 0x20 or self._length() != 2:
            raise MQTTError("MQTT: no CONNACK")
        self._read(self._rb, 2)
        if self._rb[1]:
            raise MQTTError("MQTT: connection refused, code %d" % self._rb[1])

    def subscribe(self, topics, qos=1):
        """Subscribe to topic filters; waits for the SUBACK (bounded)."""
        self._guard(self._subscribe, topics, qos)

    def _subscribe(self, topics, qos):
        pid = self._next_pid()
        p = bytearray((pid >> 8, pid & 255))
        for t in topics:
            p += _lp(_bytes(t))
            p.append(qos)
        self._suback = None
        self._send(0x82, p)
        self._until(lambda: self._suback is not None)
        if self._suback != (pid, True):
            raise MQTTError("MQTT: subscription refused")

    def publish(self, topic, msg, retain=False, qos=0):
        """Send a message; returns its packet id at QoS 1 (0 at QoS 0). The
        PUBACK is awaited only when MAX_PEND publishes already await theirs."""
        if self.sock is None:
            raise OSError(errno.ENOTCONN, "MQTT: not connected")
        try:                              # inline, not _guard: no bound method or tuple to allocate
            return self._publish(topic, msg, retain, qos)
        except Exception:
            self.close()
            raise

    def _publish(self, topic, msg, retain, qos):
        tb = self._tc.get(topic)
        if tb is None:
            tb = _bytes(topic)
            if len(self._tc) < 8:
                self._tc[topic] = tb
        n = len(tb)
        if qos:
            if len(self.pend) >= MAX_PEND:
                self._until(self._room)   # not a lambda: a closure over self allocates a cell per call
            pid = self._next_pid()
        if len(self._hb) < n + 9:
            self._hb = bytearray(n + 9)
        a = b""
        if isinstance(msg, tuple):          # a birth, in two buffers (agent/sync.py)
            a, msg = msg
        m = len(a) + len(msg)
        i = self._hdr(0x30 | qos << 1 | (1 if retain else 0), 2 + n + (2 if qos else 0) + m)
        hb = self._hb
        hb[i] = n >> 8
        hb[i + 1] = n & 255
        i += 2
        for j in range(n):                # a slice assignment would allocate a slice
            hb[i + j] = tb[j]
        i += n
        if qos:
            hb[i] = pid >> 8
            hb[i + 1] = pid & 255
            i += 2
            self.pend[pid] = ticks_ms()
        if i + m <= len(hb) and not a:
            # a small message goes out in one write with its header: two
            # small writes would wait out the peer's delayed ACK (Nagle; no
            # TCP_NODELAY here), 40 ms each on Linux (an OTA chunk request)
            for j in range(m):
                hb[i + j] = msg[j]
            self._write(hb, i + m)
            return pid if qos else 0
        self._write(hb, i)
        if a:
            self._write(a, len(a))
        self._write(msg, len(msg))
        return pid if qos else 0

    def _room(self):
        return len(self.pend) < MAX_PEND

    def wait_puback(self, pid):
        """Wait (bounded by timeout_ms) until our publish pid is acked."""
        self._guard(self._until, lambda: pid not in self.pend)

    def ping(self):
        self._guard(self._write, _PINGREQ, 2)
        self._ping = ticks_ms()
        self.pings += 1

    def check_msg(self, wait_ms=0):
        """Handle what the broker sent (waiting up to wait_ms for it), then
        keep the link alive: PINGREQ when idle half the keepalive, OSError
        when a PINGRESP or a PUBACK is more than timeout_ms late. Received
        messages collect in msgs."""
        if self.sock is None:
            raise OSError(errno.ENOTCONN, "MQTT: not connected")
        try:
            self._check(wait_ms)
        except Exception:
            self.close()
            raise

    def _check(self, wait_ms):
        while self._ready(wait_ms):
            self._handle()
            wait_ms = 0
            if len(self.msgs) >= MAX_QUEUE:
                return                    # the rest stays in the socket until taken
        now = ticks_ms()
        late = self._ping is not None and ticks_diff(now, self._ping) > self.timeout_ms
        pend = self.pend
        for pid in pend:
            late = late or ticks_diff(now, pend[pid]) > self.timeout_ms
        if late:
            raise OSError(errno.ETIMEDOUT, "MQTT: no PINGRESP or PUBACK in time")
        if self.keepalive and self._ping is None and ticks_diff(now, self._tx) >= self.keepalive * 500:
            self.ping()

    def disconnect(self):
        if self.sock is not None:
            try:
                self._write(_DISCONNECT, 2)
            except OSError:
                pass
        self.close()


class MPTransport:
    """The uplink's transport (agent/sync.py) on MQTTClient: subscribes to
    the device's ack and config topics on every connect; publishes at QoS 1
    without waiting for the PUBACK (check_msg watches for it). tls: the
    device's agent.port.tls_mp.Identity, for mqtts://; when the broker
    closes a handshake, last_error adds what its doubt() finds."""

    def __init__(self, device_id, host, port=1883, keepalive=30, timeout_ms=5000, tls=None):
        self.device_id = device_id
        self.will = None                  # (topic, payload): the death message
        self.tls = tls
        self.c = MQTTClient(device_id, host, port, keepalive, timeout_ms,
                            ssl=tls.ctx if tls is not None else None)
        base = "tally/v1/" + device_id + "/"
        self.subs = [base + "ack", base + "config"]   # OTA adds its two (agent/device_main.py)
        self._session = 0
        self.errors = 0
        self.last_error = None

    def _lost(self, e):
        self.errors += 1
        if isinstance(e, TLSError):
            self.last_error = "%s:%d: %s%s" % (self.c.host, self.c.port, e.args[0], "; " + self.tls.doubt()
                                               if isinstance(e, TLSRefused) and self.tls else "")
        else:
            self.last_error = "%s:%d: %r" % (self.c.host, self.c.port, e)

    def connect(self):
        c = self.c
        try:
            c.connect(self.will)
            c.subscribe(self.subs)
        except OSError as e:
            c.close()
            self._lost(e)
            return False
        self.last_error = None
        self._session += 1
        return True

    def connected(self):
        return self.c.sock is not None

    def session(self):
        return self._session

    def publish(self, topic, payload, retain=False):
        if self.c.sock is None:
            return False
        try:
            self.c.publish(topic, payload, retain, 1)
            return True
        except OSError as e:
            self._lost(e)
            return False

    def poll(self):
        c = self.c
        if c.sock is not None:
            try:
                c.check_msg()
            except OSError as e:
                self._lost(e)
        out = c.msgs
        if not out:
            return ()
        c.msgs = []
        return out

    def close(self):
        self.c.disconnect()
