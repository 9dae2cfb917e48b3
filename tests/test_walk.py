"""The ledger walk's fast path (Collector._walk, timeline.placed and day)
against the plain per-record walk it replaced, kept here as the reference:
on ledgers written straight into the collector's tables (SQLite and
PostgreSQL) with several epochs, reboots, odometers that rewind, records
without a clock, wall clocks that jump (to 2031, to 1970, an hour off, past
2200), uptimes no boot reaches, boots nothing places in time, coalesced and
dropped intervals, a schema the ledger does not know, and vals not as the
collector writes them (spaces, fewer or more values than metrics, floats
and nulls). Every record, its placing, the ledger, the summary and the
console's asset view must come out the same, key order included."""
import bisect
import json
import random
import time

import pytest

from agent.collector import timeline
from agent.collector.console.ledger import MAX_INTERVALS, Reader
from agent.collector.store import Collector

T0 = 1767225600                  # 2026-01-01T00:00Z
SCHEMAS = {
    1: [["run_s", "s", 0, "odometer"], ["cycles", "count", 0, "odometer"], ["t", "Cel", -2, "gauge:max"],
        ["air", "m3", -3, "odometer"]],
    2: [["air", "m3", -3, "odometer"], ["v", "V", -3, "gauge:min"], ["run_s", "s", 0, "odometer"]],
}
UNKNOWN_SCHEMA = 99


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("postgres")


# -- the reference: the walk, placing and day as they were, one record at a time ---------

def ref_walk(col, device):
    rows = col._b.execute(
        "SELECT epoch, seq, from_seq, flags, schema_id, boot, uptime_ms, wall_s, wall_q, "
        "ival_ms, vals, received_s FROM records WHERE device_id=? ORDER BY epoch, seq", (device,))
    prev_epoch = None
    base = {}
    for (epoch, seq, frm, flags, sid, boot, up, wall, wq, ival, vals, rx) in rows.fetchall():
        if epoch != prev_epoch:
            prev_epoch = epoch
            base = {}
        metrics = col.schema(device, sid) or []
        vals = json.loads(vals)
        deltas = {}
        rewound = ()
        for m, v in zip(metrics, vals):
            if m[3] == "odometer":
                high = base.get(m[0], 0)
                if v >= high:
                    deltas[m[0]] = v - high
                    base[m[0]] = v
                else:
                    deltas[m[0]] = 0
                    rewound += (m[0],)
        rec = {"rewound": rewound, "epoch": epoch, "seq": seq, "from_seq": frm, "flags": flags, "boot": boot,
               "uptime_ms": up, "wall_s": wall, "wall_q": wq, "ival_ms": ival,
               "received_s": rx, "values": dict(zip((m[0] for m in metrics), vals))}
        yield epoch, rec, deltas, metrics


def _span_ms(r):
    return (r["seq"] - r["from_seq"] + 1) * r["ival_ms"]


def ref_place_boot(recs):
    evid = []
    for r in recs:
        r["flag"] = None
        if not (r["wall_q"] and r["wall_s"]):
            continue
        if r["wall_s"] < timeline.MIN_WALL_S:
            r["flag"] = "before 2020"
        elif r["wall_s"] > timeline.MAX_WALL_S:
            r["flag"] = "after 2200"
        elif (r["wall_q"] != timeline.WALL_SIM and r["received_s"]
              and r["wall_s"] * 1000 + _span_ms(r) > (r["received_s"] + timeline.TOLERANCE_S) * 1000):
            r["flag"] = "after it was received"
        else:
            evid.append(r)
    if len(evid) > 1:
        offs = sorted(r["wall_s"] * 1000 - r["uptime_ms"] for r in evid)
        med = offs[(len(offs) - 1) // 2]
        keep = []
        for r in evid:
            if abs(r["wall_s"] * 1000 - r["uptime_ms"] - med) > timeline.TOLERANCE_S * 1000:
                r["flag"] = "off its boot's clock"
            else:
                keep.append(r)
        evid = keep
    ups = [r["uptime_ms"] for r in evid]
    for r in recs:
        if r["wall_q"] and r["wall_s"] and r["flag"] is None:
            r["end_s"] = (r["wall_s"] * 1000 + _span_ms(r)) // 1000
            r["placed"] = timeline.WALL
            continue
        if evid:
            i = bisect.bisect_left(ups, r["uptime_ms"])
            a = min((evid[j] for j in (i - 1, i) if 0 <= j < len(evid)),
                    key=lambda x: abs(x["uptime_ms"] - r["uptime_ms"]))
            start_ms = a["wall_s"] * 1000 + (r["uptime_ms"] - a["uptime_ms"])
            r["end_s"] = (start_ms + _span_ms(r)) // 1000
            r["placed"] = timeline.FLAGGED if r["flag"] else timeline.ANCHORED
            if timeline.MIN_WALL_S <= r["end_s"] <= timeline.MAX_WALL_S:
                continue
            r["flag"] = "uptime out of its boot's range"
        r["end_s"] = int(r["received_s"])
        r["placed"] = timeline.RECEIVED


def ref_placed(walk):
    group = []
    key = None
    for item in walk:
        k = (item[0], item[1]["boot"])
        if k != key and group:
            ref_place_boot([g[1] for g in group])
            yield from group
            group = []
        key = k
        group.append(item)
    if group:
        ref_place_boot([g[1] for g in group])
        yield from group


def ref_day(end_s):
    return time.strftime("%Y-%m-%d", time.gmtime(min(max(end_s - 1, 0), timeline.MAX_WALL_S)))


def ref_note(groups, epoch, r, deltas):
    if r["placed"] not in (timeline.RECEIVED, timeline.FLAGGED) and not r["flag"]:
        return
    d = ref_day(r["end_s"])
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


def ref_summary(col, device):
    epochs = {}
    tq = []
    for epoch, r, deltas, metrics in ref_placed(ref_walk(col, device)):
        ref_note(tq, epoch, r, deltas)
        e = epochs.get(epoch)
        if e is None:
            row = col._b.execute("SELECT seq0 FROM epochs WHERE device_id=? AND epoch=?",
                                 (device, epoch)).fetchone()
            start = row[0] if row else r["from_seq"]
            e = epochs[epoch] = {"totals": {}, "records": 0, "covered": 0, "coalesced": 0,
                                 "rewinds": 0,
                                 "placed": dict.fromkeys(timeline.KINDS, 0),
                                 "dropped": 0, "gaps": 0, "gap_ranges": [],
                                 "first_seq": start, "last_seq": start - 1,
                                 "units": {m[0]: (m[1], m[2]) for m in metrics
                                           if m[3] == "odometer"}}
        span = r["seq"] - r["from_seq"] + 1
        if r["from_seq"] > e["last_seq"] + 1:
            e["gaps"] += r["from_seq"] - e["last_seq"] - 1
            e["gap_ranges"].append((e["last_seq"] + 1, r["from_seq"] - 1))
        e["last_seq"] = r["seq"]
        e["records"] += 1
        e["placed"][r["placed"]] += 1
        if r["rewound"]:
            e["rewinds"] += 1
        e["covered"] += span
        if r["flags"] & 2:
            e["dropped"] += span - 1
        elif r["flags"] & 1:
            e["coalesced"] += span - 1
        for k, d in deltas.items():
            e["totals"][k] = e["totals"].get(k, 0) + d
    return {"epochs": epochs, "time_quality": tq,
            "duplicates": col.counter(device, "duplicates"),
            "batches": col.counter(device, "batches"),
            "rejected": col.counter(device, "rejected")}


def _deep(x):
    """A value with every dict as its items in order (so == sees key order)."""
    if isinstance(x, dict):
        return [(k, _deep(v)) for k, v in x.items()]
    if isinstance(x, (list, tuple)):
        return type(x)(_deep(v) for v in x)
    return x


# -- a ledger with everything the walk and the placing distinguish ---------------------------

def _text(rng, vals):
    form = rng.random()
    if form < 0.75:
        return json.dumps(vals, separators=(",", ":"))        # as the collector writes them
    if form < 0.85:
        return json.dumps(vals)                               # spaces after the commas
    if form < 0.92:
        return " " + json.dumps(vals, separators=(",", ":"))  # not at the text's start
    return json.dumps(vals, separators=(",", ":")) + " "      # text after the value


def write_ledger(col, dev, seed):
    rng = random.Random(seed)
    x = col._b.execute
    rows = []
    with col._b.transaction(write=True):
        for sid, m in SCHEMAS.items():
            x("INSERT INTO schemas VALUES (?,?,?)", (dev, sid, json.dumps(m)))
        for epoch in (3, 4, 9):
            seq = rng.randint(1, 50)
            if epoch != 4:                                    # (epoch 4: no epochs row)
                x("INSERT INTO epochs VALUES (?,?,?)", (dev, epoch, seq))
            odo = {}
            for boot in range(1, rng.randint(2, 5) + 1):
                p_wall = rng.choice((0.0, 0.0, 0.3, 1.0, 1.0))   # 0: nothing in the boot has a clock
                q = rng.choice((1, 2, 3))
                up = rng.randint(0, 10 ** 7)
                start = T0 + rng.randint(0, 20 * 86400)
                rx_late = rng.choice((60, 3600, 30 * 86400))
                sid = rng.choice((1, 1, 2))
                for _ in range(rng.randint(3, 40)):
                    ival = rng.choice((60000, 300000, 900000))
                    span = rng.choice((1, 1, 1, 1, 3)) if rng.random() < 0.9 else 1
                    flags = 0 if span == 1 else rng.choice((1, 2))
                    seq += rng.choice((0, 0, 0, 0, 2))          # a gap now and then
                    frm, seq = seq + 1, seq + span
                    wall_ms = start * 1000 + up
                    wall, wq = 0, 0
                    if rng.random() < p_wall:
                        wall, wq = wall_ms // 1000, q
                        odd = rng.random()
                        if odd < 0.03:
                            wall += 5 * 365 * 86400                 # to 2031
                        elif odd < 0.06:
                            wall = rng.randint(1, 10 ** 8)          # to 1970
                        elif odd < 0.09:
                            wall += 3600                            # an hour off its boot
                        elif odd < 0.11:
                            wall, wq = 10 ** 12, 3                  # simulated, past 2200
                    rec_up = up if rng.random() > 0.02 else 1 << 62  # an uptime no boot reaches
                    rx = float(start + (up + span * ival) // 1000 + rx_late) + rng.random()
                    names = [m[0] for m in SCHEMAS[sid]]
                    vals = []
                    for m in SCHEMAS[sid]:
                        if m[3] == "odometer":
                            v = odo.get(m[0], 0) + rng.randint(0, 500)
                            if rng.random() < 0.06:
                                v = max(0, v - rng.randint(100, 2000))   # rewound
                            odo[m[0]] = v
                            vals.append(v)
                        else:
                            vals.append(rng.choice((2300, 2417, None, 23.5)))
                    cut = rng.random()
                    if cut < 0.05:
                        vals = vals[:len(names) - 2]                # fewer values than metrics
                    elif cut < 0.08:
                        vals = vals + [7]                           # more
                    use = UNKNOWN_SCHEMA if rng.random() < 0.02 else sid
                    rows.append((dev, epoch, seq, frm, flags, use, boot, rec_up, wall, wq, ival,
                                 _text(rng, vals), rx))
                    up += span * ival + rng.randint(0, 2000)
        col._b.insert_new(rows)
    return rows


def write_ties(col, dev):
    """A record without a clock exactly halfway (by uptime) between two
    records with one that disagree by 100 s: the earlier one anchors it."""
    with col._b.transaction(write=True):
        col._b.execute("INSERT INTO schemas VALUES (?,?,?)", (dev, 1, json.dumps(SCHEMAS[1])))
        col._b.insert_new([(dev, 1, 1, 1, 0, 1, 1, 0, T0, 2, 60000, "[1,1,0,1]", T0 + 999.0),
                           (dev, 1, 2, 2, 0, 1, 1, 60000, 0, 0, 60000, "[2,2,0,2]", T0 + 999.0),
                           (dev, 1, 3, 3, 0, 1, 1, 120000, T0 + 220, 2, 60000, "[3,3,0,3]", T0 + 999.0)])


def _items(walk):
    return [(e, list(r.items()), list(d.items()), m) for e, r, d, m in walk]


def _ref_ledger(items):
    days = {}
    for _, r, deltas, _ in items:
        acc = days.setdefault(ref_day(r["end_s"]), {})
        for k, d in deltas.items():
            acc[k] = acc.get(k, 0) + d
    return days


# -- the tests ---------------------------------------------------------------------------------

def test_the_walk_places_and_books_every_record_as_the_plain_walk_did(db):
    col = Collector(db, keys=lambda d: None)
    devs = {"dev-%d" % s: s for s in (1, 2, 3, 4)}
    for dev, seed in devs.items():
        write_ledger(col, dev, seed)
    devs["dev-tie"] = None
    write_ties(col, "dev-tie")
    seen = {"kinds": set(), "rewinds": 0, "boots": set(), "epochs": set(), "flags": set(),
            "unknown": 0, "odd_text": 0, "gaps": 0}
    ledger = col.ledger()
    for dev in devs:
        # the records as walked, before placing: equal, key order included
        ref = list(ref_walk(col, dev))
        assert _items(col._walk(dev)) == _items(ref)
        light = [(e, [kv for kv in r if kv[0] != "values"], d, m) for e, r, d, m in _items(ref)]
        assert _items(col._walk(dev, values=False)) == light
        # placed
        ref_p = list(ref_placed(ref_walk(col, dev)))
        got_p = list(timeline.placed(col._walk(dev)))
        assert _items(got_p) == _items(ref_p)
        # booked per day: the ledger, and the console's asset view (its own walk, cached)
        want = _ref_ledger(ref_p)
        assert _deep(ledger[dev]) == _deep(want) and _deep(col.ledger(dev)) == _deep({dev: want})
        reader = Reader(db)
        days, summ, ivals = reader.asset_walk(dev)
        assert _deep(days) == _deep(want)
        assert ivals == [(r["end_s"], d) for _, r, d, _ in ref_p][-MAX_INTERVALS:]
        assert reader.asset_walk(dev) == (days, summ, ivals)      # the kept walk gives the same
        reader.close()
        # the summary, all of it, key order included
        s = col.summary(dev)
        assert _deep(s) == _deep(ref_summary(col, dev))
        assert _deep(summ["epochs"]) == _deep(s["epochs"]) and summ["time_quality"] == s["time_quality"]
        for e, r, d, m in ref_p:
            seen["kinds"].add(r["placed"])
            seen["flags"].add(r["flag"])
            seen["rewinds"] += bool(r["rewound"])
            seen["boots"].add((dev, e, r["boot"]))
            seen["epochs"].add(e)
            seen["unknown"] += m == []
            seen["gaps"] += r["flags"] != 0
        seen["odd_text"] += sum(1 for (v,) in col._b.execute("SELECT vals FROM records WHERE device_id=?", (dev,))
                                if v != v.strip())
    # the ledgers had every case in them
    assert seen["kinds"] == set(timeline.KINDS)
    assert {"before 2020", "after 2200", "after it was received", "off its boot's clock",
            "uptime out of its boot's range", None} <= seen["flags"]
    assert seen["rewinds"] > 10 and len(seen["boots"]) > 20 and {3, 4, 9} <= seen["epochs"]
    assert seen["unknown"] > 0 and seen["odd_text"] > 10 and seen["gaps"] > 10
    tie = [r for _, r, _, _ in timeline.placed(col._walk("dev-tie"))]
    assert [r["placed"] for r in tie] == ["wall", "anchored", "wall"] and tie[1]["end_s"] == T0 + 120
    col.close()


def test_vals_that_are_not_json_fail_the_walk_as_they_did(tmp_path):
    col = Collector(str(tmp_path / "l.sqlite"), keys=lambda d: None)
    write_ties(col, "dev")
    col._b.execute("UPDATE records SET vals='[3,3,0,3] x' WHERE seq=3")
    with pytest.raises(json.JSONDecodeError) as ref:
        list(ref_walk(col, "dev"))
    with pytest.raises(json.JSONDecodeError) as got:
        list(col._walk("dev"))
    assert str(got.value) == str(ref.value) == "Extra data: line 1 column 11 (char 10)"
    col.close()


def test_the_day_of_an_end_is_the_day_strftime_gives():
    ends = [-5, 0, 1, 2, 86399, 86400, 86401, T0, T0 + 1, T0 + 86400, T0 + 86401,
            timeline.MAX_WALL_S, timeline.MAX_WALL_S + 2, 10 ** 15,
            0.5, 86400.5, 86401.0, T0 + 0.999, float(T0 + 86400), float(10 ** 15)]
    ends += [T0 + random.Random(7).randint(-10 ** 9, 10 ** 9) for _ in range(2000)]
    for _ in range(2):                                          # the second time from what it kept
        assert [timeline.day(e) for e in ends] == [ref_day(e) for e in ends]
    with pytest.raises(ValueError):
        timeline.day(float("nan"))
