"""Where a record's interval lies in time, from the evidence the ledger has
(CPython, collector side). docs/architecture.md "Time" states the rule.

Every record carries (boot, uptime_ms) of its interval's start; wall_s (the
wall clock at that start) only when the device's clock was known good, with
its quality wall_q. Within one (epoch, boot) uptime is one monotonic clock,
so wall - uptime is the same for every record of it, up to drift:

1. A record's own wall time is *evidence* unless it is contradicted:
   - it is earlier than MIN_WALL_S (a clock reset to 1970, an unset RTC)
     or later than MAX_WALL_S (2200, whatever its quality);
   - its interval ends more than TOLERANCE_S after the collector received
     it (a clock that jumped into the future, to 2031); simulated time
     (wall_q 3) is not compared with the collector's real clock;
   - it disagrees by more than TOLERANCE_S with the other walled records of
     its boot (wall - uptime is off the boot's median: a jump mid-boot).
   A contradicted wall time is *flagged* and the record placed as in 2.
2. A record without good wall time of its own is re-anchored from the
   nearest record (by uptime, before or after it) of the same (epoch, boot)
   whose wall time is evidence:
       start = anchor.wall_s + (uptime_ms - anchor.uptime_ms) / 1000
3. Only when nothing in its boot anchors it is the collector's receive time
   used (its interval is taken to end then); such records are reported
   (`tally report` data quality, Collector.summary()["time_quality"]).

A record's interval ends at start + span * ival_ms / 1000 (span: the number
of intervals a coalesced record covers); usage is booked on the UTC day of
that end (the day of end - 1 s, so an interval ending at midnight belongs to
the day it ran in).
"""
import bisect
import time

TOLERANCE_S = 600                 # 10 minutes: drift, NTP steps, receive latency
MIN_WALL_S = 1577836800           # 2020-01-01T00:00Z: no Tally record is older
MAX_WALL_S = 7258118400           # 2200-01-01T00:00Z: past it, even simulated time is wrong
WALL_SIM = 3

WALL = "wall"                     # its own wall time
ANCHORED = "anchored"             # no wall time: re-anchored from its boot
FLAGGED = "flagged"               # its wall time contradicted: re-anchored (or received)
RECEIVED = "received"             # nothing anchors it: the collector's receive time
KINDS = (WALL, ANCHORED, FLAGGED, RECEIVED)


def _span_ms(r):
    return (r["seq"] - r["from_seq"] + 1) * r["ival_ms"]


_DAYS = {}                        # day number -> "YYYY-MM-DD", as strftime gave it
_MAX_DAYS = 100000                # (past it, days are formatted each time, not kept)


def day(end_s):
    """The UTC day a record ending at end_s is booked on."""
    t = min(max(end_s - 1, 0), MAX_WALL_S)
    if type(t) is int:            # (gmtime floors: one day number, one date)
        d = _DAYS.get(t // 86400)
        if d is not None:
            return d
    d = time.strftime("%Y-%m-%d", time.gmtime(t))
    if type(t) is int and len(_DAYS) < _MAX_DAYS:
        _DAYS[t // 86400] = d
    return d


def _place_boot(recs):
    """Place the records of one (epoch, boot): sets "end_s" (int, unix
    seconds), "placed" (one of KINDS) and "flag" (why its wall time was
    contradicted, or None) on each.

    One pass sorts the records into those whose wall time is evidence
    (kept with their end, wall - uptime and uptime, each worked out once)
    and the rest; the rest are placed from the evidence afterwards, each
    on its own (a record's place depends only on its boot's evidence)."""
    evid, ends, offs, ups = [], [], [], []
    rest = []
    for r in recs:
        r["flag"] = None
        ws = r["wall_s"]
        wq = r["wall_q"]
        if not (wq and ws):
            rest.append(r)
            continue
        if ws < MIN_WALL_S:
            r["flag"] = "before 2020"
        elif ws > MAX_WALL_S:
            r["flag"] = "after 2200"
        else:
            end_ms = ws * 1000 + (r["seq"] - r["from_seq"] + 1) * r["ival_ms"]
            rx = r["received_s"]
            if wq != WALL_SIM and rx and end_ms > (rx + TOLERANCE_S) * 1000:
                r["flag"] = "after it was received"
            else:
                up = r["uptime_ms"]
                evid.append(r)
                ends.append(end_ms)
                offs.append(ws * 1000 - up)
                ups.append(up)
                continue
        rest.append(r)
    if len(evid) > 1:
        med = sorted(offs)[(len(offs) - 1) // 2]
        tol = TOLERANCE_S * 1000
        if min(offs) < med - tol or max(offs) > med + tol:
            keep = [j for j, o in enumerate(offs) if abs(o - med) <= tol]
            for j, o in enumerate(offs):
                if abs(o - med) > tol:
                    evid[j]["flag"] = "off its boot's clock"
                    rest.append(evid[j])
            evid = [evid[j] for j in keep]
            ends = [ends[j] for j in keep]
            ups = [ups[j] for j in keep]
    for r, end_ms in zip(evid, ends):         # (ups: in seq order, so in uptime order)
        r["end_s"] = end_ms // 1000
        r["placed"] = WALL
    n = len(evid)
    for r in rest:
        if n:
            u = r["uptime_ms"]
            i = bisect.bisect_left(ups, u)
            # the nearer of the evidence either side by uptime (the earlier on a tie)
            if i == 0:
                j = 0
            elif i == n:
                j = n - 1
            else:
                j = i - 1 if abs(ups[i - 1] - u) <= abs(ups[i] - u) else i
            a = evid[j]
            start_ms = a["wall_s"] * 1000 + (u - ups[j])
            r["end_s"] = (start_ms + _span_ms(r)) // 1000
            r["placed"] = FLAGGED if r["flag"] else ANCHORED
            if MIN_WALL_S <= r["end_s"] <= MAX_WALL_S:
                continue
            r["flag"] = "uptime out of its boot's range"   # a record's uptime cannot be right
        r["end_s"] = int(r["received_s"])
        r["placed"] = RECEIVED


def book(days, r, deltas):
    """Add a placed record's usage to {day: {odometer: total}} on the UTC
    day its interval ends (the ledger's rule: Collector.ledger, the
    console's asset view)."""
    on = day(r["end_s"])
    acc = days.get(on)
    if acc is None:
        acc = days[on] = {}
    for k, d in deltas.items():
        acc[k] = acc.get(k, 0) + d


def placed(walk):
    """Wrap Collector._walk(device) (records in (epoch, seq) order): yields
    the same tuples with each record placed ("end_s", "placed", "flag").
    One boot's records are held at a time (a boot's records are contiguous
    in seq order within an epoch)."""
    group = []
    recs = []
    epoch = boot = None
    for item in walk:
        r = item[1]
        if (item[0] != epoch or r["boot"] != boot) and group:
            _place_boot(recs)
            yield from group
            group = []
            recs = []
        epoch, boot = item[0], r["boot"]
        group.append(item)
        recs.append(r)
    if group:
        _place_boot(recs)
        yield from group


def note(groups, epoch, r, deltas):
    """Collect the records worth a data-quality line: those placed by
    receive time and those whose wall time was contradicted. Consecutive
    ones of the same epoch, boot, kind and day make one group:
    {"placed", "flag", "epoch", "boot", "from_seq", "to_seq", "records",
    "day", "usage": {odometer: raw delta}}."""
    kind, flag = r["placed"], r["flag"]
    if kind not in (RECEIVED, FLAGGED) and not flag:
        return
    d = day(r["end_s"])
    g = groups[-1] if groups else None
    if (g is None or g["epoch"] != epoch or g["boot"] != r["boot"] or g["placed"] != kind
            or g["flag"] != flag or g["day"] != d or g["to_seq"] + 1 != r["from_seq"]):
        g = {"placed": kind, "flag": flag, "epoch": epoch, "boot": r["boot"],
             "from_seq": r["from_seq"], "to_seq": r["seq"], "records": 0, "day": d, "usage": {}}
        groups.append(g)
    g["to_seq"] = r["seq"]
    g["records"] += 1
    usage = g["usage"]
    for k, v in deltas.items():
        usage[k] = usage.get(k, 0) + v
