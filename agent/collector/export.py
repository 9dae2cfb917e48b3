"""Exports from the collector's ledger (CPython).

* SenML JSON (RFC 8428): one pack per device; odometers go out as sums
  ("s", the metric's cumulative value within its epoch), gauges as values
  ("v"), at the time the interval ends, scaled to the metric's unit.
* CloudEvents JSON (CloudEvents 1.0, structured mode, a JSON array): one
  event per record; the event id is the record key device/epoch/seq, fixed
  when the record was created, so a retried export or delivery never mints a
  new id (a billing system dedupes on it). `data` carries the usage of the
  interval (odometer deltas, in units) and the odometers.
"""
import json
import time

from agent.collector import timeline

SENML_UNITS = {"By": "B"}     # our UCUM byte to SenML's registered "B"


def _scale(v, scale):
    if scale >= 0:
        return v * 10 ** scale
    return round(v / 10 ** -scale, -scale)


def _end(r):
    return r["end_s"]             # placed by agent/collector/timeline.py


def senml(collector, device=None):
    out = []
    for dev in ([device] if device else collector.devices()):
        first = True
        for epoch, r, deltas, metrics in timeline.placed(collector._walk(dev)):
            t = _end(r)
            for name, unit, scale, kind in metrics:
                e = {"n": name, "u": SENML_UNITS.get(unit, unit)}
                if first:
                    e["bn"] = "urn:dev:tally:%s:" % dev
                    e["bt"] = t
                    base = t
                    first = False
                e["t"] = t - base
                v = _scale(r["values"][name], scale)
                e["s" if kind == "odometer" else "v"] = v
                out.append(e)
    return out


def cloudevents(collector, device=None):
    out = []
    for dev in ([device] if device else collector.devices()):
        for epoch, r, deltas, metrics in timeline.placed(collector._walk(dev)):
            units = {m[0]: (m[1], m[2]) for m in metrics}
            out.append({
                "specversion": "1.0",
                "id": "%s/%d/%d" % (dev, epoch, r["seq"]),
                "source": "tally/%s" % dev,
                "type": "io.tally.usage.interval",
                "subject": dev,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(_end(r))),
                "datacontenttype": "application/json",
                "data": {
                    "epoch": epoch, "seq": r["seq"], "from_seq": r["from_seq"],
                    "coalesced": bool(r["flags"] & 1), "gap": bool(r["flags"] & 2),
                    "interval_s": (r["seq"] - r["from_seq"] + 1) * r["ival_ms"] // 1000,
                    "usage": {k: _scale(d, units[k][1]) for k, d in deltas.items()},
                    "odometers": {k: _scale(r["values"][k], units[k][1]) for k in deltas},
                    "units": {k: units[k][0] for k in deltas},
                },
            })
    return out


def write(items, fh):
    json.dump(items, fh, indent=1)
    fh.write("\n")
