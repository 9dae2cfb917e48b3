"""The collector as an MQTT service. Data arrives on a shared subscription
($share/<group>/tally/v1/+/data) so several workers can split a fleet; births
(retained) and deaths on plain subscriptions, since a broker gives retained
messages only to non-shared ones. Messages are handled on the caller's
thread, in arrival order; acks are published at QoS 1 after the commit."""
import os
import queue
import sys
import threading
import time

from agent.collector.store import DB_ERRORS
from agent.port.mqtt_paho import Client


class CollectorService:
    def __init__(self, url, collector, group="tally", client_id=None, tls=None):
        """tls: dict(ca=, cert=, key=) with an mqtts:// URL (docs/security.md)."""
        self.collector = collector
        self.group = group
        self._q = queue.Queue()
        self._ready = threading.Event()
        self.handled = 0
        self.db_errors = 0
        # the pid keeps two workers on one host from taking each other's session
        c = Client(client_id or "tally-collector-%d-%x" % (os.getpid(), id(self) & 0xffffff), url, tls,
                   on_connect=self._on_connect, on_disconnect=lambda *a: self._ready.clear())
        self.host, self.port = c.host, c.port
        c.on_subscribe = lambda *a: self._ready.set()
        c.on_message = lambda c, u, m: self._q.put((m.topic, m.payload))
        self.c = c

    def _on_connect(self, c, userdata, flags, rc, props=None):
        if rc == 0:
            c.subscribe([("$share/%s/tally/v1/+/data" % self.group, 1),
                         ("tally/v1/+/birth", 1), ("tally/v1/+/death", 1),
                         ("tally/v1/+/cfgack", 1)])

    def start(self):
        self.c.connect_async(self.host, self.port, 30)
        self.c.loop_start()
        return self

    def wait_ready(self, timeout):
        if not self._ready.wait(timeout):
            raise ConnectionError("collector: no subscription on %s:%d after %gs%s"
                                  % (self.host, self.port, timeout,
                                     "; " + self.c.last_error if self.c.last_error else ""))

    def pump(self, timeout=0.0):
        """Handle queued messages; wait up to timeout for the first one."""
        n = 0
        try:
            item = self._q.get(timeout=timeout) if timeout else self._q.get_nowait()
        except queue.Empty:
            return 0
        while True:
            topic, payload = item
            try:
                replies = self.collector.handle(topic, payload)
            except DB_ERRORS as e:
                # Nothing was committed and nothing is acked: the device
                # re-sends. Say so and keep serving.
                self.db_errors += 1
                print("collector: database error on %s, not acked: %s" % (topic, e),
                      file=sys.stderr, flush=True)
                replies = ()
            for tp, body in replies:
                self.c.publish(tp, body, qos=1)
            n += 1
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
        self.handled += n
        return n

    def run_forever(self, stop=None, report=None, every_s=60):
        last = time.monotonic()
        while stop is None or not stop.is_set():
            self.pump(0.5)
            if report and time.monotonic() - last >= every_s:
                last = time.monotonic()
                report(self)

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()
