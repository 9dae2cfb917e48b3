# The uplink: birth on every connect, batches from the log at QoS 1 oldest
# first with up to `window` batches in flight, log space freed only on the
# collector's application ack (and only as a contiguous prefix, whatever order
# the acks come back in), republish on ack timeout or reconnect, exponential
# backoff with equal jitter (agent/backoff.py) when connecting or publishing
# fails, and a token bucket
# on data bytes so a long backlog drains at a set rate.
#
# A transport has: connect() -> bool (starts a session; the will is the death
# message), connected() -> bool, session() -> int (changes on every new
# connection), publish(topic, payload, retain=False) -> bool, poll() -> list of
# (topic, payload), close(). agent.port.mqtt_paho and hil.loopback provide them.
# publish() borrows payload for the call: a data message is a buffer the uplink
# reuses once its batch is acked, so a transport that keeps it keeps a copy.
#
# Heap: a batch is encoded into one buffer and sealed into one of a pool of
# message buffers (one per batch in flight), all kept and reused, so sending
# takes no new block of the message's size from a heap that a day of small
# allocations has fragmented (docs/firmware.md, 32-bit frozen firmware).

from agent import cbor
from agent import cose
from agent import batch as wire
from agent import remote
from agent.backoff import Backoff
from agent import __version__

# in-flight batch fields
B_EPOCH = 0
B_FIRST = 1
B_LAST = 2
B_SENT = 3
B_PAYLOAD = 4
B_RETRIES = 5
B_ACKED = 6

# health counters, mirrored into meter odometers when the schema has them
HEALTH = ("sync_ok", "sync_tries", "fail_conn", "fail_pub", "republished", "bad_acks",
          "bad_configs", "bytes_sent")
BUF0 = 1024                   # bytes: a birth of ~25 metrics, a batch of 30 records
U32 = 1 << 32
U64 = 1 << 64


def _room(n):
    """An empty bytearray with room for n bytes: appending to it up to n
    allocates nothing (MicroPython grows a bytearray 8 bytes at a time)."""
    b = bytearray(n)
    b[:] = b""
    return b


def topic(device_id, kind):
    return "tally/v1/" + device_id + "/" + kind


class Uplink:
    def __init__(self, device_id, transport, log, meter, board="unknown", key=None,
                 batch_max=60, max_latency_ms=60 * 60000, ack_timeout_ms=30000,
                 backoff_min_ms=1000, backoff_max_ms=300000, window=4, drain_bps=0, stress=None):
        if not key:
            raise ValueError("uplink: a per-device key is required (every message is MAC'd)")
        if window < 1:
            raise ValueError("uplink: window must be at least 1")
        self.device_id = device_id
        self.key = key
        self.t = transport
        self.log = log
        self.meter = meter
        self.board = board
        self.batch_max = batch_max
        self.max_latency = max_latency_ms
        self.ack_timeout = ack_timeout_ms
        self.window = window
        self.drain_bps = drain_bps    # bytes/s for data publishes; 0: as fast as acks come
        self._tokens = 0
        self._t_fill = None
        self._backoff = Backoff(backoff_min_ms, backoff_max_ms)
        self._next_try = 0
        self.wall_q = 0               # the clock's wall quality, for the birth (the agent keeps it current)
        self._session = None
        self.inflight = []            # oldest first: [epoch, first, last, sent_at, payload, retries, acked]
        self.flush = False            # send what is pending now, regardless of latency
        self.topic_data = topic(device_id, "data")
        self.topic_ack = topic(device_id, "ack")
        self.topic_config = topic(device_id, "config")
        self.sent_batches = 0
        self.sent_records = 0
        self.failures = 0
        self.h = {}                   # health counter -> count, for this process
        self._i = {}
        for name in HEALTH:
            self.h[name] = 0
            try:
                self._i[name] = meter.index(name)
            except KeyError:
                pass
        self.reason = "poweron"
        self.fw = __version__         # the release running (agent/ota.py sets it after an update)
        self.ival_ms = 0
        self.config = remote.Config()
        self.on_config = None         # callback(dict of changed settings), from the agent
        # agent.stress.Stress, from the agent: ext key 1, birth "hist" (before
        # the birth is sized below: its definitions are the birth's biggest part)
        self.stress = stress
        # the birth or batch being encoded, reused (see _send_next): its room is
        # taken once, now, while the heap is whole, not grown in steps per message
        self._buf = _room(BUF0)
        # the birth as sealed (see _birth_msg) goes out in two buffers: its
        # fields up to the schema in the batch buffer (idle while a birth is
        # sent), the schema on in one of its own; each with room for its
        # fields to grow (a later boot, config version, interval, parts) and
        # the COSE wrapping. The stress definitions and the parts, before the
        # schema, so take no buffer of their own
        m = bytearray()
        self._birth_map(bytearray(), m)
        n = len(m) + 64
        self._bmsg = _room(n + 32 if n > BUF0 else BUF0)
        # one message buffer per batch in flight, taken now too; a window raised
        # by remote config takes more when it fills
        self._spare = [_room(BUF0) for _ in range(window)]

    def _count(self, name, n=1):
        self.h[name] += n
        i = self._i.get(name)
        if i is not None:
            self.meter.add(i, n)

    def _seal(self, payload):
        return cose.mac0(payload, self.key, self.device_id)

    def _birth_map(self, buf, tail):
        """The birth map, encoded straight into two empty bytearrays (no copy
        of the schema: it is the biggest message, sent at the heap's busiest
        time), keys in deterministic order (RFC 8949 4.2.1: shorter first,
        then bytewise): buf up to the schema, tail from the schema on.
        Returns buf."""
        log = self.log
        out = buf
        st = self.stress
        buf.append(0xA0 | (13 + (1 if st else 0) + (1 if log.parts else 0)))
        enc = cbor.encode_into
        for k, v in (("v", 1), ("fw", self.fw), ("boot", log.boot),
                     ("hist", st.birth_value() if st else None), ("seq0", log.epoch_seq0),
                     ("board", self.board), ("epoch", log.epoch),
                     # slot -> component id, as read at boot (agent/parts.py); only when known
                     ("parts", log.parts), ("config", self.config.version),
                     ("device", self.device_id), ("reason", self.reason), ("schema", None),
                     ("wall_q", self.wall_q), ("ival_ms", self.ival_ms), ("schema_id", self.meter.id)):
            if (k == "hist" and not st) or (k == "parts" and not v):
                continue
            if k == "schema":
                buf = tail
            enc(buf, k)
            if k == "parts":
                buf.extend(v)             # the log's slot table, kept as its CBOR map
                continue
            if k != "schema":
                enc(buf, v)
                continue
            schema = self.meter.schema
            n = len(schema)
            if n < 24:
                buf.append(0x80 | n)
            else:
                buf.append(0x98)
                buf.append(n)              # a schema has fewer than 256 metrics
            for m in schema:
                buf.append(0x84)
                enc(buf, m[0])
                enc(buf, m[1])
                enc(buf, m[2])
                enc(buf, "odometer" if m[3] == "odo" else "gauge:" + m[3])
        return out

    def birth(self):
        """The birth message (new bytes; the uplink itself sends _birth_msg())."""
        return b"".join(self._birth_msg())

    def _birth_msg(self):
        """The birth as sent: sealed in two buffers kept for it (see
        __init__), so a reconnect late in a day needs no new block of the
        birth's size; a tuple of the two, which the transport sends as one
        message (borrowed, like the data messages)."""
        a = self._buf
        a[:] = b""
        m = self._bmsg
        m[:] = b""
        return cose.mac0_in_place(self._birth_map(a, m), m, self.key, self.device_id)

    def death(self):
        return self._seal(cbor.dumps({"v": 1, "boot": self.log.boot, "epoch": self.log.epoch}))

    def kick(self, now):
        """The network is back: try the broker now, the backoff started afresh."""
        self._next_try = now
        self._backoff.reset()

    def _fail(self, now, cause):
        self.failures += 1
        self._count(cause)
        self._next_try = self._backoff.after(now)

    def _publish(self, topic_, payload, now, retain=False):
        if self.t.publish(topic_, payload, retain):
            self._count("bytes_sent", len(payload) if not isinstance(payload, tuple)
                        else len(payload[0]) + len(payload[1]))       # a birth (_birth_msg)
            return True
        self._fail(now, "fail_pub")
        return False

    def unacked_age_ms(self, now):
        """Age of the oldest unacked record; across a reboot, a lower bound
        (the time since this boot began)."""
        old = self.log.oldest()
        if old is None:
            return 0
        if old[1] == self.log.boot:
            return now - old[2] if now > old[2] else 0
        return now

    # -- acks ---------------------------------------------------------------------

    def _ack_of(self, payload):
        """(epoch, first, last) of an ack, or None when it is not one we can
        use: a bad MAC, not CBOR, not [epoch, first, last] of unsigned ints in
        range, first > last, or seqs of our epoch we never logged (our own will
        reflected onto the ack topic verifies, but is a map)."""
        try:
            a = cbor.loads(cose.verify(payload, self.key, self.device_id))
        except (ValueError, TypeError, IndexError, AttributeError):
            return None
        if type(a) is not list or len(a) != 3:
            return None
        epoch, first, last = a
        if (type(epoch) is not int or type(first) is not int or type(last) is not int
                or not 0 <= epoch < U32 or not 0 < first <= last < U64):
            return None
        if epoch == self.log.epoch and last >= self.log.next_seq:
            return None
        return a

    def _on_ack(self, payload):
        a = self._ack_of(payload)
        if a is None:
            self._count("bad_acks")   # forged, damaged or of the wrong shape: never free log space on it
            return
        epoch, first, last = a
        fl = self.inflight
        log = self.log
        for b in fl:
            if b[B_EPOCH] == epoch and first <= b[B_FIRST] and b[B_LAST] <= last:
                b[B_ACKED] = 1
        # An ack that starts at or before the oldest unacked record frees up
        # to its end (it may come from a previous boot's sends).
        old = log.oldest()
        if old and first <= old[0] and log.ack(epoch, last):
            self._count("sync_ok")
        # Acked batches at the front of the window free their records; one
        # acked further back waits until everything before it is acked.
        while fl and (fl[0][B_ACKED] or fl[0][B_LAST] <= log.acked):
            b = fl.pop(0)
            self._spare.append(b[B_PAYLOAD])     # its message buffer, for the next batch
            if b[B_LAST] > log.acked and log.ack(b[B_EPOCH], b[B_LAST]):
                self._count("sync_ok")
        self._acked_hist()

    def _acked_hist(self):
        if self.stress:
            self.stress.acked(self.log)

    def _on_config(self, payload, now):
        status = self.config.offer(payload, self.key, self.device_id)
        if status is None:
            return                    # the one already applied, or one refused, seen again
        changes = status.get("apply")
        if changes is None:
            self._count("bad_configs")
        else:
            if "batch_max" in changes:
                self.batch_max = changes["batch_max"]
            if "max_latency_s" in changes:
                self.max_latency = changes["max_latency_s"] * 1000
            if "window" in changes:
                self.window = changes["window"]
            if "drain_bps" in changes:
                self.drain_bps = changes["drain_bps"]
            if self.on_config:
                self.on_config(changes)
        self._publish(topic(self.device_id, "cfgack"), self._seal(status["ack"]), now, True)

    # -- the step ---------------------------------------------------------------------

    def step(self, now):
        """Advance the uplink; now is uptime in ms. Never raises on I/O trouble."""
        t = self.t
        try:
            for tp, payload in t.poll():
                if tp == self.topic_ack:
                    self._on_ack(payload)
                elif tp == self.topic_config:
                    self._on_config(payload, now)
            if not t.connected():
                if now >= self._next_try:
                    t.will = (topic(self.device_id, "death"), self.death())
                    if t.connect():
                        self._backoff.reset()
                    else:
                        self._fail(now, "fail_conn")
                return
            if now < self._next_try:
                return                # backing off after a failed publish
            s = t.session()
            if s != self._session:
                # new connection: birth first, then resend whatever was in flight
                if not self._publish(topic(self.device_id, "birth"), self._birth_msg(), now, True):
                    return
                self._session = s
                for b in self.inflight:
                    if not b[B_ACKED]:
                        b[B_SENT] = now - self.ack_timeout
            self._refill(now)
            birth_sent = False
            for b in self.inflight:
                if b[B_ACKED] or now - b[B_SENT] < self.ack_timeout:
                    continue
                # No ack: the collector may not know our schema (a lost birth,
                # a collector that lost its state), so every second retry
                # re-sends the birth first.
                b[B_RETRIES] += 1
                if b[B_RETRIES] % 2 == 0 and not birth_sent:
                    if not self._publish(topic(self.device_id, "birth"), self._birth_msg(), now, True):
                        return
                    birth_sent = True
                if not self._send(b[B_PAYLOAD], now):
                    return
                b[B_SENT] = now
                self._count("republished")
            while len(self.inflight) < self.window and self._tokens >= 0:
                if not self._send_next(now):
                    break
        except OSError:
            self._fail(now, "fail_pub")

    def _refill(self, now):
        if not self.drain_bps:
            self._tokens = 0
            return
        if self._t_fill is None:
            self._t_fill = now
        self._tokens += (now - self._t_fill) * self.drain_bps // 1000
        if self._tokens > self.drain_bps:
            self._tokens = self.drain_bps          # at most one second's burst
        self._t_fill = now

    def _send(self, payload, now):
        if not self._publish(self.topic_data, payload, now):
            return False
        self._count("sync_tries")
        if self.drain_bps:
            self._tokens -= len(payload)
        return True

    def _send_next(self, now):
        """Send the next batch after those in flight, if one is due."""
        log = self.log
        fl = self.inflight
        after = fl[-1][B_LAST] if fl else log.acked
        unsent = log.next_seq - 1 - (after if after > log.acked else log.acked)
        if unsent <= 0:
            return False
        if not (self.flush or unsent >= self.batch_max):
            if fl:
                return False          # a part batch waits until the window is empty
            old = log.oldest()
            if old is None or not (now - old[2] >= self.max_latency or old[1] != log.boot):
                return False
        run = wire.take_run(log.pending(self.batch_max, after), self.batch_max)
        if not run:
            return False
        lo, hi = run[0][1], run[-1][0]                  # R_FROM of the first, R_SEQ of the last
        ext = None
        if self.stress:
            h = self.stress.ext(log, run[0][0], hi)
            if h is not None:
                ext = [(1, h)]
        if log.events:
            evs = [e for e in log.events if lo <= e[0] <= hi]   # component events
            if evs:
                ext = (ext or []) + [(2, cbor.dumps(evs))]
            evs = None
        buf = self._buf
        buf[:] = b""                  # emptied, its room kept: no growth from nothing per batch
        wire.encode_into(buf, run, self.meter.schema, ext)
        ext = None
        epoch, first, last, n = run[0][3], run[0][0], run[-1][0], len(run)
        run = None                    # the decoded records, freed before the message is sealed
        payload = self._spare.pop() if self._spare else _room(BUF0)
        payload[:] = b""
        cose.mac0_into(payload, buf, self.key, self.device_id)
        if not self._send(payload, now):
            self._spare.append(payload)
            return False
        fl.append([epoch, first, last, now, payload, 0, 0])
        self.sent_batches += 1
        self.sent_records += n
        return True

    def busy(self):
        """True while a backlog is draining (the loop should step us often)."""
        return bool(self.inflight) or self.log.depth() >= self.batch_max

    def idle(self):
        return not self.inflight and self.log.depth() == 0
