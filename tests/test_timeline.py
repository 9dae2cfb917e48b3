"""Time placed by evidence (agent/collector/timeline.py): the real agent,
real signed batches through Collector.handle, a device clock that is unknown
for a week, that jumps to 1970 or 2031, or never comes; the ledger books
every interval on the UTC day it ran, and what only the receive time can
place is a data-quality line in the report."""
import time

from agent.agent import Agent
from agent.clock import VirtualClock, WALL_NONE, WALL_NTP
from agent.collector import billing, export, timeline
from agent.collector.store import Collector
from agent.log import file_log, R_UPTIME, R_IVAL, R_VALUES, R_WALLQ, R_FROM, R_SEQ
from boards.emulated import Emulation
from hil.loopback import Hub

KEY = bytes(range(16))
DEV = "dev-time"
IVAL = 300000                       # 5-minute intervals: a week is 2,016 records
DAY = 86400000


class FieldClock(VirtualClock):
    """A device clock as the field has it: the world's time runs on, but the
    device knows the wall time only from `ntp_at` (ms of world time) on, and
    between jump_from and jump_to its clock reads `jump_s` seconds off."""

    def __init__(self, start_wall_s, ntp_at=None, jump=None):
        VirtualClock.__init__(self, start_wall_s)
        self.ntp_at = ntp_at
        self.jump = jump                  # (from_ms, to_ms, offset_s)
        self.wall_quality = WALL_NONE

    def sleep_ms(self, ms):
        VirtualClock.sleep_ms(self, ms)
        if self.ntp_at is not None and self._ms >= self.ntp_at:
            self.wall_quality = WALL_NTP

    advance_ms = sleep_ms

    def wall_s(self):
        w = VirtualClock.wall_s(self)
        if self.jump and self.jump[0] <= self._ms < self.jump[1]:
            w += self.jump[2]
        return w


def _run(tmp_path, clock, days, online_after_ms):
    col = Collector(str(tmp_path / "ledger.sqlite"), keys=lambda d: KEY if d == DEV else None)
    hub = Hub(col)
    hub.down = True                       # offline: everything stays in the log
    log = file_log(str(tmp_path / "dev.log"), DEV, capacity=1024 * 1024)
    ag = Agent(DEV, Emulation(clock, seed=3).channels(), log, clock, transport=hub.transport(DEV),
               interval_ms=IVAL, sample_ms=IVAL, uplink_opts={"key": KEY, "batch_max": 200}).start()
    logged = []                           # every record as logged, for the truth
    for _ in range(int(days * DAY) // IVAL):
        clock.advance_ms(IVAL)
        if clock.world_ms() >= online_after_ms:
            hub.down = False
        n = ag.records
        ag.tick()
        if ag.records != n:
            logged.append(list(log.last))
    ag.close_now()
    logged.append(list(log.last))
    ag.uplink.flush = True
    for _ in range(2000):
        if ag.uplink.idle():
            break
        clock.advance_ms(1000)
        ag.uplink.step(clock.uptime_ms())
    assert ag.uplink.idle() and log.depth() == 0
    ag.logged = logged
    return col, ag


def _truth(ag, start_wall_s):
    """Usage per UTC day as it happened: every interval by the world's time
    (one boot: uptime is world time), from the device's own log."""
    out = {}
    prev = {}
    odos = [i for i in range(ag.meter.n) if ag.meter.is_odometer(i)]
    for r in ag.logged:
        assert r[R_FROM] == r[R_SEQ]          # nothing coalesced: every interval on its own
        end = start_wall_s + (r[R_UPTIME] + r[R_IVAL]) // 1000
        day = time.strftime("%Y-%m-%d", time.gmtime(end - 1))
        acc = out.setdefault(day, {})
        for i in odos:
            name = ag.meter.names[i]
            v = r[R_VALUES][i]
            acc[name] = acc.get(name, 0) + v - prev.get(name, 0)
            prev[name] = v
    return out


def _usage_only(led, names):
    return {d: {k: v for k, v in u.items() if k in names and v} for d, u in led.items()}


def _start():
    # nine days ago, at a UTC midnight: the device's time is all in the past
    # of the collector's receive time (the real clock)
    return (int(time.time()) // 86400 - 9) * 86400


USAGE = ("run_time", "cycles", "energy", "air")


def test_a_week_offline_without_a_clock_lands_on_the_days_it_happened(tmp_path):
    start = _start()
    clock = FieldClock(start, ntp_at=7 * DAY + 3 * 3600000)     # NTP comes after a week, same boot
    col, ag = _run(tmp_path, clock, 8, online_after_ms=7 * DAY + 6 * 3600000)
    names = [n for n in USAGE if n in ag.meter.names]
    walls = [r[R_WALLQ] for r in ag.logged]
    assert walls.count(0) > 2000 and walls.count(WALL_NTP) > 200   # a week without wall time
    led = _usage_only(col.ledger()[DEV], names)
    truth = _usage_only(_truth(ag, start), names)
    assert len(truth) == 8 and led == truth                         # to the interval, every day
    s = col.summary(DEV)
    placed = s["epochs"][ag.log.epoch]["placed"]
    assert placed[timeline.RECEIVED] == 0 and placed[timeline.ANCHORED] > 2000
    assert s["time_quality"] == []
    # exports put each interval's end where the ledger does
    ev = export.cloudevents(col, DEV)
    first = ev[0]["time"]
    assert first.startswith(time.strftime("%Y-%m-%d", time.gmtime(start)))
    col.close()


def test_a_clock_that_jumps_to_2031_or_1970_is_flagged_and_placed_by_its_boot(tmp_path):
    start = _start()
    for jump_s in (5 * 365 * 86400, -(start - 86400)):            # to 2031; to 2 January 1970
        d = tmp_path / str(jump_s > 0)
        d.mkdir()
        clock = FieldClock(start, ntp_at=0, jump=(DAY + 3600000, DAY + 5 * 3600000, jump_s))
        col, ag = _run(d, clock, 3, online_after_ms=0)
        names = [n for n in USAGE if n in ag.meter.names]
        assert _usage_only(col.ledger()[DEV], names) == _usage_only(_truth(ag, start), names)
        s = col.summary(DEV)
        placed = s["epochs"][ag.log.epoch]["placed"]
        assert placed[timeline.FLAGGED] == 4 * 3600000 // IVAL, placed
        assert placed[timeline.RECEIVED] == 0
        (g,) = s["time_quality"]
        assert g["placed"] == timeline.FLAGGED and g["records"] == 48
        assert g["flag"] == ("after it was received" if jump_s > 0 else "before 2020")
        col.close()


def test_records_nothing_anchors_are_booked_by_receive_time_and_reported(tmp_path):
    start = _start()
    clock = FieldClock(start)                                       # no NTP, ever
    col, ag = _run(tmp_path, clock, 0.5, online_after_ms=0)
    s = col.summary(DEV)
    assert s["epochs"][ag.log.epoch]["placed"][timeline.RECEIVED] == s["epochs"][ag.log.epoch]["records"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    groups = s["time_quality"]
    assert groups and all(g["placed"] == timeline.RECEIVED and g["day"] == today for g in groups)
    run_s = sum(g["usage"].get("run_time", 0) for g in groups)
    assert run_s == s["epochs"][ag.log.epoch]["totals"]["run_time"] > 0
    rates = tmp_path / "rates.toml"
    rates.write_text('currency = "EUR"\n[run_hours]\nprice = "2.00"\n')
    text = billing.run(str(tmp_path / "ledger.sqlite"), str(rates), start=today, end=today)
    line = [x for x in text.splitlines() if "booked by receive time" in x]
    assert line and ("run_time %s s" % billing.quantity(run_s)) in line[0], text
    col.close()


def _rec(seq, up, wall=0, q=0, rx=None, boot=1):
    return {"seq": seq, "from_seq": seq, "boot": boot, "uptime_ms": up, "wall_s": wall, "wall_q": q,
            "ival_ms": 60000, "received_s": rx if rx is not None else time.time()}


def test_the_rule_on_hand_made_records_including_values_no_clock_can_have():
    now = int(time.time())
    t0 = now - 86400
    recs = [_rec(1, 0), _rec(2, 60000, t0 + 60, 2), _rec(3, 120000),
            _rec(4, 180000, t0 + 180 + 3600, 2),          # an hour off the boot's other records
            _rec(5, 240000, t0 + 240, 2), _rec(6, 300000, 10 ** 12, 3),   # simulated, past 2200
            _rec(7, 1 << 62)]                             # an uptime no boot reaches
    timeline._place_boot(recs)
    got = [(r["placed"], r["end_s"] - t0, r["flag"]) for r in recs]
    assert got[:6] == [("anchored", 60, None), ("wall", 120, None), ("anchored", 180, None),
                       ("flagged", 240, "off its boot's clock"), ("wall", 300, None),
                       ("flagged", 360, "after 2200")], got
    assert recs[6]["placed"] == "received" and recs[6]["flag"] == "uptime out of its boot's range"
    assert timeline.day(10 ** 15) == "2200-01-01" and timeline.day(-5) == "1970-01-01"
    # one boot with no evidence at all: every record by receive time
    alone = [_rec(1, 0, 86400 * 3, 1, rx=now), _rec(2, 60000, rx=now)]
    timeline._place_boot(alone)
    assert [(r["placed"], r["end_s"]) for r in alone] == [("received", now), ("received", now)]
    assert alone[0]["flag"] == "before 2020"
