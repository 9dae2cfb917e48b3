# MQTT transport for CPython devices (a Raspberry Pi), on paho-mqtt 2.x.
# paho's network thread reconnects by itself; the uplink sees connected(),
# and a new session() number after each reconnect, so it re-sends its birth.
import queue
import threading
from urllib.parse import urlparse

import paho.mqtt.client as mqtt


def parse_url(url):
    u = urlparse(url if "://" in url else "mqtt://" + url)
    if u.scheme not in ("mqtt", "tcp"):
        raise ValueError("broker URL %r: scheme must be mqtt:// (TLS comes with issue 5)" % url)
    if not u.hostname:
        raise ValueError("broker URL %r has no host" % url)
    return u.hostname, u.port or 1883


class PahoTransport:
    def __init__(self, device_id, url, keepalive=30):
        self.host, self.port = parse_url(url)
        self.device_id = device_id
        self.keepalive = keepalive
        self.will = None
        self._q = queue.Queue()
        self._up = threading.Event()
        self._session = 0
        self._started = False
        self.errors = 0
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device_id,
                        clean_session=True)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.c = c

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
        if self._started:
            return True
        if self.will:
            self.c.will_set(self.will[0], self.will[1], qos=1)
        try:
            self.c.connect_async(self.host, self.port, self.keepalive)
            self.c.loop_start()
        except (OSError, ValueError):
            self.errors += 1
            return False
        self._started = True
        return True

    def connected(self):
        return self._up.is_set()

    def wait_connected(self, timeout):
        return self._up.wait(timeout)

    def session(self):
        return self._session

    def publish(self, topic, payload, retain=False):
        if not self._up.is_set():
            return False
        info = self.c.publish(topic, bytes(payload), qos=1, retain=retain)
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
