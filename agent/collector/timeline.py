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


def day(end_s):
    """The UTC day a record ending at end_s is booked on."""
    return time.strftime("%Y-%m-%d", time.gmtime(min(max(end_s - 1, 0), MAX_WALL_S)))


def _place_boot(recs):
    """Place the records of one (epoch, boot): sets "end_s" (int, unix
    seconds), "placed" (one of KINDS) and "flag" (why its wall time was
    contradicted, or None) on each."""
    evid = []
    for r in recs:
        r["flag"] = None
        if not (r["wall_q"] and r["wall_s"]):
            continue
        if r["wall_s"] < MIN_WALL_S:
            r["flag"] = "before 2020"
        elif r["wall_s"] > MAX_WALL_S:
            r["flag"] = "after 2200"
        elif (r["wall_q"] != WALL_SIM and r["received_s"]
              and r["wall_s"] * 1000 + _span_ms(r) > (r["received_s"] + TOLERANCE_S) * 1000):
            r["flag"] = "after it was received"
        else:
            evid.append(r)
    if len(evid) > 1:
        offs = sorted(r["wall_s"] * 1000 - r["uptime_ms"] for r in evid)
        med = offs[(len(offs) - 1) // 2]
        keep = []
        for r in evid:
            if abs(r["wall_s"] * 1000 - r["uptime_ms"] - med) > TOLERANCE_S * 1000:
                r["flag"] = "off its boot's clock"
            else:
                keep.append(r)
        evid = keep
    ups = [r["uptime_ms"] for r in evid]      # in seq order, so in uptime order
    for r in recs:
        if r["wall_q"] and r["wall_s"] and r["flag"] is None:
            r["end_s"] = (r["wall_s"] * 1000 + _span_ms(r)) // 1000
            r["placed"] = WALL
            continue
        if evid:
            i = bisect.bisect_left(ups, r["uptime_ms"])
            a = min((evid[j] for j in (i - 1, i) if 0 <= j < len(evid)),
                    key=lambda x: abs(x["uptime_ms"] - r["uptime_ms"]))
            start_ms = a["wall_s"] * 1000 + (r["uptime_ms"] - a["uptime_ms"])
            r["end_s"] = (start_ms + _span_ms(r)) // 1000
            r["placed"] = FLAGGED if r["flag"] else ANCHORED
            if MIN_WALL_S <= r["end_s"] <= MAX_WALL_S:
                continue
            r["flag"] = "uptime out of its boot's range"   # a record's uptime cannot be right
        r["end_s"] = int(r["received_s"])
        r["placed"] = RECEIVED


def placed(walk):
    """Wrap Collector._walk(device) (records in (epoch, seq) order): yields
    the same tuples with each record placed ("end_s", "placed", "flag").
    One boot's records are held at a time (a boot's records are contiguous
    in seq order within an epoch)."""
    group = []
    key = None
    for item in walk:
        r = item[1]
        k = (item[0], r["boot"])
        if k != key and group:
            _place_boot([g[1] for g in group])
            yield from group
            group = []
        key = k
        group.append(item)
    if group:
        _place_boot([g[1] for g in group])
        yield from group


def note(groups, epoch, r, deltas):
    """Collect the records worth a data-quality line: those placed by
    receive time and those whose wall time was contradicted. Consecutive
    ones of the same epoch, boot, kind and day make one group:
    {"placed", "flag", "epoch", "boot", "from_seq", "to_seq", "records",
    "day", "usage": {odometer: raw delta}}."""
    if r["placed"] not in (RECEIVED, FLAGGED) and not r["flag"]:
        return
    d = day(r["end_s"])
    g = groups[-1] if groups else None
    if (g is None or g["epoch"] != epoch or g["boot"] != r["boot"] or g["placed"] != r["placed"]
            or g["flag"] != r["flag"] or g["day"] != d or g["to_seq"] + 1 != r["from_seq"]):
        g = {"placed": r["placed"], "flag": r["flag"], "epoch": epoch, "boot": r["boot"],
             "from_seq": r["from_seq"], "to_seq": r["seq"], "records": 0, "day": d, "usage": {}}
        groups.append(g)
    g["to_seq"] = r["seq"]
    g["records"] += 1
    for k, v in deltas.items():
        g["usage"][k] = g["usage"].get(k, 0) + v
