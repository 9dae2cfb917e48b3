# The agent loop: sample the channels, meter, close an interval into the log,
# sync. Portable; the same object runs on a virtual clock (simulation, tests)
# and on a real one (tally run, firmware).

from agent import port
from agent.channels import ERROR_METRICS
from agent.log import R_EPOCH, R_SCHEMA, R_VALUES
from agent.meter import Meter

SYSTEM_METRICS = [
    ("sync_ok", "count", 0, "odo"),          # batches acked
    ("sync_tries", "count", 0, "odo"),       # data publishes, first sends and republishes
    ("fail_conn", "count", 0, "odo"),        # failures by cause: connect refused or failed,
    ("fail_pub", "count", 0, "odo"),         # a publish the link would not take,
    ("republished", "count", 0, "odo"),      # no ack within the timeout,
    ("bad_acks", "count", 0, "odo"),         # an ack not verified or of the wrong shape
    ("bad_configs", "count", 0, "odo"),      # a remote config refused (MAC, shape, rules, older)
    ("bytes_sent", "By", 0, "odo"),
    ("unacked_s", "s", 0, "max"),            # age of the oldest unacked record
    ("config", "count", 0, "last"),          # remote config version in force
    ("overruns", "count", 0, "odo"),
    ("log_errors", "count", 0, "odo"),
    ("coalesced", "count", 0, "odo"),
    ("dropped", "count", 0, "odo"),
    ("depth", "count", 0, "last"),
    ("mem_free", "By", 0, "min"),
]


def build_schema(channels):
    schema = []
    seen = set()
    for group in [ch.metrics for ch in channels] + [ERROR_METRICS, SYSTEM_METRICS]:
        for m in group:
            if m[0] in seen:
                raise ValueError("schema: metric %r declared twice" % m[0])
            seen.add(m[0])
            schema.append(m)
    return schema


class Agent:
    def __init__(self, device_id, channels, log, clock, transport=None, board="emulated",
                 interval_ms=60000, sample_ms=5000, reason=None, uplink_opts=None, stress=None):
        if sample_ms <= 0 or interval_ms < sample_ms:
            raise ValueError("agent: need 0 < sample_ms <= interval_ms")
        self.device_id = device_id
        self.channels = channels
        self.log = log
        self.clock = clock
        self.interval = interval_ms
        self.sample = sample_ms
        self.reason = reason or port.reset_cause()
        self.meter = Meter(build_schema(channels))
        for ch in channels:
            ch.bind(self.meter)
        m = self.meter
        self._i_depth = m.index("depth")
        self._i_mem = m.index("mem_free")
        self._i_over = m.index("overruns")
        self._i_logerr = m.index("log_errors")
        self._i_coal = m.index("coalesced")
        self._i_drop = m.index("dropped")
        log.merge = m.merge
        # stress histograms (agent/stress.py): stress=False keeps none, a dict
        # gives their settings; which ones follows from the channels
        self.stress = None
        if stress is not False:
            from agent.stress import make
            o = dict(stress or {})
            o.setdefault("interval_ms", interval_ms)
            self.stress = make(channels, o)
        self.uplink = None
        if transport is not None:
            from agent.sync import Uplink   # a logging-only device never loads it
            self.uplink = Uplink(device_id, transport, log, m, board=board, stress=self.stress,
                                 **(uplink_opts or {}))
            self.uplink.ival_ms = interval_ms
            self.uplink.wall_q = clock.wall_quality
            self.uplink.on_config = self._apply_config
        self._i_age = m.index("unacked_s")
        self._i_cfg = m.index("config")
        self.records = 0
        self._ival_next = 0
        self._coal_seen = 0
        self._drop_seen = 0

    def start(self):
        log = self.log
        log.open()
        self.boot = log.start_boot(self.reason)
        last = log.last
        if last is not None and last[R_EPOCH] == log.epoch:
            if last[R_SCHEMA] == self.meter.id:
                self.meter.restore(last[R_VALUES])
            else:
                # A different metric set: the old odometers cannot carry on,
                # so they close with their epoch and ours start at zero.
                log.new_epoch()
        for ch in self.channels:
            ch.restore(self.meter)
        if self.stress:
            self.stress.restore(log.hist)
        for ch in self.channels:
            hook = getattr(ch, "boot", None)        # agent/parts.py: identities at boot
            if hook is not None:
                hook(self)
        if self.uplink:
            self.uplink.reason = self.reason
            # the highest remote config version ever applied: an older one is
            # refused after a reboot too; the retained one is re-applied
            cfg = self.uplink.config
            cfg.floor = log.config_version
            cfg.persist = log.note_config
        now = self.clock.uptime_ms()
        self._t0 = now
        self._start = now
        self._next_close = now + self.interval
        self._last_tick = now
        for ch in self.channels:
            if ch.per_interval:
                ch.sample(self.meter, now, 0)
        return self

    def tick(self):
        """One sample step at the clock's current time; closes the interval
        when it is due and steps the uplink. Returns the uptime used."""
        now = self.clock.uptime_ms()
        dt = now - self._last_tick
        self._last_tick = now
        m = self.meter
        for ch in self.channels:
            if not ch.per_interval:
                ch.sample(m, now, dt)
        if now >= self._next_close:
            for ch in self.channels:
                if ch.per_interval:
                    ch.sample(m, now, dt)
            if self.stress:
                self.stress.sample(now, dt)
            self._close(now)
        elif self.stress:
            self.stress.sample(now, dt)
        if self.uplink:
            self.uplink.step(now)
        return now

    def _close(self, now):
        m = self.meter
        log = self.log
        late = (now - self._next_close) // self.interval
        if late > 0:
            m.add(self._i_over, late)
        m.add(self._i_coal, log.coalesced - self._coal_seen)
        self._coal_seen = log.coalesced
        m.add(self._i_drop, log.dropped - self._drop_seen)
        self._drop_seen = log.dropped
        m.observe(self._i_depth, log.depth())
        m.observe(self._i_mem, port.mem_free())
        if self.uplink:
            self.uplink.wall_q = self.clock.wall_quality
            m.observe(self._i_age, self.uplink.unacked_age_ms(now) // 1000)
            m.observe(self._i_cfg, self.uplink.config.version)
        values = m.close()
        start = self._start
        q = self.clock.wall_quality
        wall = self.clock.wall_s() - (now - start) // 1000 if q else 0
        try:
            seq = log.append(m.id, self.boot, start, wall, q, self.interval, values)
            self.records += 1
            if self.stress:
                self.stress.closed(log, seq)
        except OSError:
            # Not durable: this interval's resolution is lost, not its usage;
            # the odometers carry on into the next record.
            m.add(self._i_logerr, 1)
        self._start = now
        if self._ival_next:
            # a remote config changed the interval: the one just logged kept
            # the old length, the next one starts now with the new length
            self.interval = self._ival_next
            self._ival_next = 0
            if self.uplink:
                self.uplink.ival_ms = self.interval
            self._next_close = now + self.interval
        else:
            self._next_close += (late + 1) * self.interval

    def _apply_config(self, changes):
        """A remote config the uplink verified and validated: the interval
        changes from the next boundary on, the sample period at once."""
        if "interval_s" in changes:
            self._ival_next = changes["interval_s"] * 1000
        if "sample_ms" in changes:
            self.sample = changes["sample_ms"]
        if self.sample > max(self.interval, self._ival_next):
            self.sample = max(self.interval, self._ival_next)

    def close_now(self):
        """Log the interval in progress now (a clean shutdown does this, so
        usage metered since the last boundary is not lost)."""
        now = self.clock.uptime_ms()
        if now > self._start:
            for ch in self.channels:
                if ch.per_interval:
                    ch.sample(self.meter, now, now - self._last_tick)
            self._next_close = now
            self._close(now)

    def shutdown(self, within_ms=3000, poll_ms=5):
        """A clean stop: log the interval in progress, then give the uplink up
        to within_ms (device time) to get every record acked, stepping it
        every poll_ms."""
        self.close_now()
        up = self.uplink
        if up is None:
            return
        up.flush = True
        clock = self.clock
        end = clock.uptime_ms() + within_ms
        while not up.idle() and clock.uptime_ms() < end:
            up.step(clock.uptime_ms())
            clock.sleep_ms(poll_ms)

    def next_due(self):
        """Uptime at which the next tick is due (for real-time loops): the
        next point of the sample grid from the start, so a late wake-up does
        not shift every later sample and interval ends stay on their
        boundaries to the millisecond (the batch's dt column is then mostly
        zero: docs/wire.md)."""
        nxt = self._last_tick + self.sample
        return nxt - (nxt - self._t0) % self.sample

    def stop(self):
        self.log.close()
