# The uplink: birth on every connect, batches from the log at QoS 1 oldest
# first with one batch in flight, log space freed only on the collector's
# application ack, republish on ack timeout or reconnect, exponential backoff
# with jitter when connecting fails.
#
# A transport has: connect() -> bool (starts a session; the will is the death
# message), connected() -> bool, session() -> int (changes on every new
# connection), publish(topic, payload, retain=False) -> bool, poll() -> list of
# (topic, payload), close(). agent.port.mqtt_paho and hil.loopback provide them.

from agent import cbor
from agent import cose
from agent import batch as wire
from agent import port
from agent import __version__


def topic(device_id, kind):
    return "tally/v1/" + device_id + "/" + kind


class Uplink:
    def __init__(self, device_id, transport, log, meter, board="unknown", key=None,
                 batch_max=60, max_latency_ms=15 * 60000, ack_timeout_ms=30000,
                 backoff_min_ms=1000, backoff_max_ms=300000):
        if not key:
            raise ValueError("uplink: a per-device key is required (every message is MAC'd)")
        self.device_id = device_id
        self.key = key
        self.t = transport
        self.log = log
        self.meter = meter
        self.board = board
        self.batch_max = batch_max
        self.max_latency = max_latency_ms
        self.ack_timeout = ack_timeout_ms
        self.bmin = backoff_min_ms
        self.bmax = backoff_max_ms
        self._backoff = backoff_min_ms
        self._next_try = 0
        self._session = None
        self.inflight = None          # [epoch, first_seq, last_seq, sent_at_ms, payload, retries]
        self.flush = False            # send what is pending now, regardless of latency
        self.topic_data = topic(device_id, "data")
        self.topic_ack = topic(device_id, "ack")
        # health (also mirrored into meter odometers when the schema has them)
        self.sent_batches = 0
        self.sent_records = 0
        self.republished = 0
        self.acks = 0
        self.bad_acks = 0             # acks whose MAC did not verify: ignored, nothing freed
        self.failures = 0
        self.bytes_sent = 0
        self._i = {}
        for name in ("sync_ok", "sync_fail", "bytes_sent", "republished"):
            try:
                self._i[name] = meter.index(name)
            except KeyError:
                pass
        self.reason = "poweron"
        self.ival_ms = 0

    def _count(self, name, n=1):
        i = self._i.get(name)
        if i is not None:
            self.meter.add(i, n)

    def _seal(self, payload):
        return cose.mac0(payload, self.key, self.device_id)

    def birth(self):
        schema = [list(m) for m in self.meter.schema]
        for m in schema:
            m[3] = "odometer" if m[3] == "odo" else "gauge:" + m[3]
        return self._seal(cbor.dumps({
            "v": 1, "device": self.device_id, "fw": __version__, "board": self.board,
            "reason": self.reason,
            "boot": self.log.boot, "epoch": self.log.epoch, "seq0": self.log.epoch_seq0, "schema_id": self.meter.id,
            "schema": schema, "wall_q": 0, "ival_ms": self.ival_ms,
        }))

    def death(self):
        return self._seal(cbor.dumps({"v": 1, "boot": self.log.boot, "epoch": self.log.epoch}))

    def _fail(self, now):
        self.failures += 1
        self._count("sync_fail")
        # full jitter: wait a random time up to the current backoff
        self._next_try = now + self._backoff // 2 + port.random_u32() % (self._backoff // 2 + 1)
        self._backoff = min(self._backoff * 2, self.bmax)

    def _publish(self, topic_, payload, now, retain=False):
        if self.t.publish(topic_, payload, retain):
            self.bytes_sent += len(payload)
            self._count("bytes_sent", len(payload))
            return True
        self._fail(now)
        return False

    def _on_ack(self, payload):
        try:
            epoch, first, last = cbor.loads(cose.verify(payload, self.key, self.device_id))
        except (ValueError, TypeError):
            self.bad_acks += 1        # forged or damaged: never free log space on it
            return
        inf = self.inflight
        old = self.log.oldest()
        # Free only a contiguous prefix: the ack must start at or before the
        # oldest unacked record.
        if old and first <= old[0]:
            n = self.log.ack(epoch, last)
            if n:
                self.acks += 1
                self._count("sync_ok")
        if inf and inf[0] == epoch and inf[2] <= last:
            self.inflight = None

    def step(self, now):
        """Advance the uplink; now is uptime in ms. Never raises on I/O trouble."""
        t = self.t
        try:
            for tp, payload in t.poll():
                if tp == self.topic_ack:
                    self._on_ack(payload)
            if not t.connected():
                if now >= self._next_try:
                    t.will = (topic(self.device_id, "death"), self.death())
                    if t.connect():
                        self._backoff = self.bmin
                    else:
                        self._fail(now)
                return
            s = t.session()
            if s != self._session:
                # new connection: birth first, then resend whatever was in flight
                if not self._publish(topic(self.device_id, "birth"), self.birth(), now, True):
                    return
                self._session = s
                if self.inflight:
                    self.inflight[3] = now - self.ack_timeout
            inf = self.inflight
            if inf is not None:
                if now - inf[3] >= self.ack_timeout:
                    # No ack: the collector may not know our schema (a lost
                    # birth, a collector that lost its state), so every second
                    # retry re-sends the birth before the batch.
                    inf[5] += 1
                    if inf[5] % 2 == 0:
                        if not self._publish(topic(self.device_id, "birth"), self.birth(), now, True):
                            return
                    if self._publish(self.topic_data, inf[4], now):
                        inf[3] = now
                        self.republished += 1
                        self._count("republished")
                return
            old = self.log.oldest()
            if old is None:
                return
            if not (self.flush or self.log.depth() >= self.batch_max
                    or now - old[2] >= self.max_latency or old[1] != self.log.boot):
                return
            run = wire.take_run(self.log.pending(self.batch_max), self.batch_max)
            payload = self._seal(wire.encode(run))
            a, z = run[0], run[-1]
            if self._publish(self.topic_data, payload, now):
                self.inflight = [a[3], a[0], z[0], now, payload, 0]
                self.sent_batches += 1
                self.sent_records += len(run)
        except OSError:
            self._fail(now)

    def idle(self):
        return self.inflight is None and self.log.depth() == 0
