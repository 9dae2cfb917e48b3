# MQTT transport for CPython devices (a Raspberry Pi), on paho-mqtt 2.x.
# paho's network thread reconnects by itself; the uplink sees connected(),
# and a new session() number after each reconnect, so it re-sends its birth.
#
# TLS: an mqtts:// URL, with tls=dict(ca=..., cert=..., key=...) for the CA
# that signed the broker's certificate and this client's certificate and key
# (docs/security.md). A connection that fails keeps its cause, in plain
# words, in last_error until the next successful connect.
import os
import queue
import socket
import ssl
import threading
from urllib.parse import urlparse

import paho.mqtt.client as mqtt

PLAIN = ("mqtt", "tcp")
SECURE = ("mqtts", "ssl")


def parse_url(url):
    """(host, port, tls) from mqtt://host[:1883] or mqtts://host[:8883]."""
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in PLAIN + SECURE:
        raise ValueError("broker URL %r: scheme must be mqtt:// or mqtts:// (TLS)" % url)
    if not u.hostname:
        raise ValueError("broker URL %r has no host" % url)
    tls = u.scheme in SECURE
    return u.hostname, u.port or (8883 if tls else 1883), tls


def tls_context(ca=None, cert=None, key=None):
    """A client TLS context (TLS 1.2 at least, the broker's name checked):
    ca is the CA file that signed the broker's certificate (None: the
    system's CAs); cert and key are this client's certificate and key."""
    if bool(cert) != bool(key):
        raise ValueError("TLS: a client certificate needs its key and a key its certificate")
    for what, path in (("CA file", ca), ("certificate", cert), ("key", key)):
        if path and not os.path.isfile(path):
            raise ValueError("TLS %s %s: no such file" % (what, path))
    try:
        ctx = ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as e:
        raise ValueError("TLS CA file %s: not a PEM CA certificate (%s)" % (ca, e))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as e:
            raise ValueError("TLS certificate %s with key %s: %s" % (cert, key, e))
    return ctx


def check_client_cert(ca, cert, key):
    """Why a broker that trusts the CA file ca would refuse the client
    certificate cert, as OpenSSL says it ("certificate has expired", "unable
    to get local issuer certificate"), or None. A TLS 1.3 broker that refuses
    a certificate often just closes the connection, so this checks the
    certificate here, in memory, with one handshake between two contexts."""
    try:
        srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.load_cert_chain(cert, key)          # the server side may show any certificate
        srv.verify_mode = ssl.CERT_REQUIRED
        srv.load_verify_locations(ca)
        cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cli.check_hostname = False
        cli.verify_mode = ssl.CERT_NONE
        cli.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as e:
        return str(e)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = cli.wrap_bio(c_in, c_out)
    s = srv.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(8):
        for side in (c, s):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as e:
                return e.verify_message
            except ssl.SSLError as e:
                return None if side is c else str(e)
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    return None


# What a failed TLS connection says, and what it means.
_ALERTS = (
    ("CERTIFICATE_VERIFY_FAILED", None),       # the broker's certificate: see describe()
    ("WRONG_VERSION_NUMBER", "TLS handshake failed: the broker's port does not speak TLS "
                             "(use mqtt:// or the broker's TLS port)"),
    ("UNKNOWN_CA", "the broker refused our client certificate: unknown CA (not issued by a CA "
                   "the broker trusts)"),
    ("CERTIFICATE_EXPIRED", "the broker refused our client certificate: certificate has expired"),
    ("CERTIFICATE_REVOKED", "the broker refused our client certificate: certificate revoked"),
    ("CERTIFICATE_REQUIRED", "the broker requires a client certificate"),
    ("BAD_CERTIFICATE", "the broker refused our client certificate (bad certificate)"),
    ("UNSUPPORTED_CERTIFICATE", "the broker refused our client certificate (unsupported "
                                "certificate: a client certificate needs clientAuth usage)"),
    ("HANDSHAKE_FAILURE", "TLS handshake failed (the broker may require a client certificate)"),
)


class Client(mqtt.Client):
    """paho's client for one broker URL, with TLS from the URL and tls
    settings, and the cause of the last failed connection in last_error
    (None once connected). on_connect/on_disconnect are passed through."""

    def __init__(self, client_id, url, tls=None, on_connect=None, on_disconnect=None):
        super().__init__(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=True)
        host, port, secure = parse_url(url)
        if tls and not secure:
            raise ValueError("broker URL %r: TLS settings need an mqtts:// URL" % url)
        self.host, self.port = host, port       # paho's own properties
        self.tls = dict(tls or {}) if secure else None
        if secure:
            self.tls_set_context(tls_context(**self.tls))
        self.reconnect_delay_set(1, 30)
        self.last_error = None
        self._acked = False          # a CONNACK on this connection
        self._noted = False          # a cause noted for this connection
        self._user_connect = on_connect
        self._user_disconnect = on_disconnect
        self.on_connect = self._connected
        self.on_disconnect = self._disconnected
        self.on_log = self._logged

    @property
    def where(self):
        return "%s:%d" % (self.host, self.port)

    def describe(self, err, handshake=False):
        """A plain cause for a connection error (an exception or paho's text of
        one); handshake: it came while connecting, before the TLS handshake ended."""
        text = str(err)
        for needle, meaning in _ALERTS:
            if needle in text:
                if meaning:
                    return "%s: %s" % (self.where, meaning)
                v = getattr(err, "verify_message", None) or text.rsplit("certificate verify failed:", 1)[-1]
                return ("%s: certificate verify failed: the broker's certificate: %s (trusted CAs: %s)"
                        % (self.where, v.split(" (_ssl")[0].strip(),
                           self.tls.get("ca") or "the system's"))
        if isinstance(err, ConnectionRefusedError) or "Connection refused" in text:
            return "%s: connection refused (no broker listening?)" % self.where
        if self._acked or not ("EOF" in text or "reset" in text or "closed" in text):
            return "%s: %s" % (self.where, text)
        # closed on us before the CONNACK, with no reason given
        if self.tls is None:
            return ("%s: the broker closed the connection before accepting it (a TLS port? "
                    "use mqtts://)" % self.where)
        cert = self.tls.get("cert")
        why = check_client_cert(self.tls["ca"], cert, self.tls["key"]) \
            if cert and self.tls.get("ca") else None
        if why:
            # say it as the broker's alert would have
            key = "EXPIRED" if "expired" in why else "UNKNOWN_CA" if "issuer" in why else None
            meaning = next((m for n, m in _ALERTS if key and n.endswith(key)), None)
            if meaning:
                # the very words of the broker's alert: whether the alert or the
                # close arrives first is timing, and the cause is said once
                return "%s: %s" % (self.where, meaning)
            return "%s: the broker refused our client certificate (%s: %s)" % (self.where, cert, why)
        if handshake:
            return ("%s: the broker closed the connection during the TLS handshake (is this "
                    "its TLS port?)" % self.where)
        return ("%s: the broker closed the TLS connection before accepting it (%s)"
                % (self.where, "does it trust our client certificate %s?" % cert if cert
                   else "does it require a client certificate?"))

    def _note(self, err, handshake=False):
        self._noted = True
        self.last_error = self.describe(err, handshake)

    def reconnect(self):
        self._acked = self._noted = False
        try:
            return super().reconnect()
        except (OSError, ValueError) as e:   # ssl errors are OSErrors
            self._note(e, handshake=True)
            raise

    def _logged(self, c, userdata, level, buf):
        # paho reports a failed read or write on the socket only in its log
        if level == mqtt.MQTT_LOG_ERR and buf.startswith("failed to receive on socket"):
            self._note(buf.split(": ", 1)[-1])

    def _connected(self, c, userdata, flags, rc, props=None):
        # Small messages each way (batches, acks): without TCP_NODELAY Nagle
        # holds each one for the peer's delayed ACK, ~40 ms a round trip.
        sock = self.socket()
        if sock is not None and hasattr(sock, "setsockopt"):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        if rc.is_failure:
            self._note("the broker refused the connection: %s" % rc)
        else:
            self._acked = True
            self.last_error = None
        if self._user_connect:
            self._user_connect(c, userdata, flags, rc, props)

    def _disconnected(self, c, userdata, flags, rc, props=None):
        if not self._acked and not self._noted:
            self._note("connection closed")
        if self._user_disconnect:
            self._user_disconnect(c, userdata, flags, rc, props)


class PahoTransport:
    def __init__(self, device_id, url, keepalive=30, tls=None):
        self.device_id = device_id
        self.keepalive = keepalive
        self.will = None
        self._q = queue.Queue()
        self._up = threading.Event()
        self._session = 0
        self._started = False
        self.errors = 0
        c = Client(device_id, url, tls, on_connect=self._on_connect,
                   on_disconnect=self._on_disconnect)
        c.on_message = self._on_message
        self.host, self.port = c.host, c.port
        self.c = c

    @property
    def last_error(self):
        """Why the last connection attempt failed, in plain words; None once connected."""
        return self.c.last_error

    def _on_connect(self, c, userdata, flags, rc, props=None):
        if rc == 0:
            base = "tally/v1/%s/" % self.device_id
            c.subscribe([(base + "ack", 1), (base + "config", 1)])
            self._session += 1
            self._up.set()
        else:
            self.errors += 1

    def _on_disconnect(self, c, userdata, flags, rc, props=None):
        self._up.clear()

    def _on_message(self, c, userdata, msg):
        self._q.put((msg.topic, msg.payload))

    def connect(self):
        """Start connecting (paho's thread then reconnects by itself). True
        while a connection is up or being tried; False when the last attempt
        failed, with the cause in last_error: the uplink then backs off."""
        if not self._started:
            self.c.last_error = None
            if self.will:
                self.c.will_set(self.will[0], self.will[1], qos=1)
            try:
                self.c.connect_async(self.c.host, self.c.port, self.keepalive)
                self.c.loop_start()
            except (OSError, ValueError) as e:
                self.errors += 1
                self.c.last_error = self.c.describe(e)
                return False
            self._started = True
        return self.c.last_error is None

    def connected(self):
        return self._up.is_set()

    def wait_connected(self, timeout):
        return self._up.wait(timeout)

    def session(self):
        return self._session

    def publish(self, topic, payload, retain=False):
        if not self._up.is_set():
            return False
        # a birth comes as a tuple of two buffers (agent/sync.py, Uplink._birth_msg)
        payload = b"".join(payload) if isinstance(payload, tuple) else bytes(payload)
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def poll(self):
        out = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out

    def close(self):
        if self._started:
            self.c.disconnect()
            self.c.loop_stop()
            self._started = False
        self._up.clear()
