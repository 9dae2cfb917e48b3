"""Exports from the collector's ledger (CPython).

* SenML JSON (RFC 8428): one pack per device, every value in a primary unit
  of the SenML units registry (RFC 8428 section 12.1, RFC 8798 section 2),
  so no secondary unit and no RFC 9100 feature bit is needed. Odometers are
  readings of cumulative quantities: a value `v` at the time the interval
  ends (run time in s, energy in J, air in m3, counts in count), restarting
  at zero with each epoch. Light exposure (lux-hours) has no registered unit,
  but it is the time integral of illuminance, which is what RFC 8428 section
  4.2 defines the sum `s` to be (the unit times seconds): it goes out as `s`
  in `lx`. Gauges are values `v`. See docs/wire.md, "Exports".
* CloudEvents JSON (CloudEvents 1.0, structured mode, a JSON array): one
  event per record; the event id is the record key device/epoch/seq, fixed
  when the record was created, so a retried export or delivery never mints a
  new id (a billing system dedupes on it). `data` carries the usage of the
  interval (odometer deltas, in units) and the odometers.

Device ids and metric names are the device's own text: in SenML names they
are escaped to the characters RFC 8428 section 4.5.1 allows, and everything
is written as JSON with every non-ASCII and control character escaped, so no
terminal sequence comes out raw.
"""
import json
import math
import time
from fractions import Fraction
from urllib.parse import quote

from agent.collector import timeline

# The SenML units registry (IANA "SenML Units"), primary units only, with the
# document and section each comes from. Units marked NOT RECOMMENDED there
# (kept for compatibility, not to be produced) are in SENML_NOT_RECOMMENDED.
SENML_UNITS = {}
for _u in ("m kg g s A K cd mol Hz rad sr N Pa J W C V F Ohm S Wb T H Cel lm lx Bq Gy Sv kat m2 m3 l "
           "m/s m/s2 m3/s l/s W/m2 cd/m2 bit bit/s lat lon pH dB dBW Bspl count / % %RH %EL EL 1/s 1/min "
           "beat/min beats S/m").split():
    SENML_UNITS[_u] = "RFC 8428 section 12.1"
for _u in "B VA VAs var vars J/m kg/m3 deg".split():
    SENML_UNITS[_u] = "RFC 8798 section 2"
SENML_NOT_RECOMMENDED = set("g l l/s Bspl % 1/min beat/min beats".split())

# A schema unit -> (SenML primary unit, exact factor, field). The value sent is
# odometer or gauge x 10**scale x factor. "s" (sum) only where the quantity is
# a time integral of a registered unit.
TO_SENML = {
    "s": ("s", 1, "v"), "ms": ("s", Fraction(1, 1000), "v"), "min": ("s", 60, "v"), "h": ("s", 3600, "v"),
    "count": ("count", 1, "v"),
    "J": ("J", 1, "v"), "Wh": ("J", 3600, "v"), "mWh": ("J", Fraction(36, 10), "v"),
    "kWh": ("J", 3600000, "v"),
    "m3": ("m3", 1, "v"), "L": ("m3", Fraction(1, 1000), "v"), "l": ("m3", Fraction(1, 1000), "v"),
    "V": ("V", 1, "v"), "mV": ("V", Fraction(1, 1000), "v"), "A": ("A", 1, "v"),
    "mA": ("A", Fraction(1, 1000), "v"), "W": ("W", 1, "v"), "kW": ("W", 1000, "v"),
    "Cel": ("Cel", 1, "v"), "%RH": ("%RH", 1, "v"),
    "lx": ("lx", 1, "v"), "lx.h": ("lx", 3600, "s"),
    "m/s2": ("m/s2", 1, "v"),
    # Tally's "mg" (before metric units were fixed) was always milli-g of
    # acceleration, never milligrams: 1 g is 9.80665 m/s2 by definition
    "mg": ("m/s2", Fraction(980665, 100000000), "v"),
    "ug/m3": ("kg/m3", Fraction(1, 10 ** 9), "v"), "kg/m3": ("kg/m3", 1, "v"),
    "By": ("B", 1, "v"), "B": ("B", 1, "v"),
}
BASE_NAME = "urn:dev:tally:"
_NAME_OK = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._")


def senml_name(text):
    """Text as a SenML name part, in the characters RFC 8428 section 4.5.1
    allows: letters, digits, '-', '.' and '_' stay; every other UTF-8 byte
    (':' and '/' included) becomes /XX in upper-case hex. A device id cannot
    hold '/' (it is a topic level), and a '/' in a metric name is escaped too,
    so two different texts never get the same name."""
    out = []
    for ch in text:
        if ch in _NAME_OK:
            out.append(ch)
        else:
            out.extend("/%02X" % b for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _scale(v, scale):
    if scale >= 0:
        return v * 10 ** scale
    return round(v / 10 ** -scale, -scale)


def _number(x):
    """An exact Fraction as a JSON number: an integer when it is one."""
    if x.denominator == 1:
        return int(x)
    f = float(x)
    if not math.isfinite(f):
        raise ValueError("not a finite number")
    return f


def _usable(unit, scale):
    """A unit and scale an export can use: text, and an integer power of ten
    within 10**-18..10**18 (a ledger written before births were checked may
    hold others: 10**9 as a scale would take forever to apply)."""
    return isinstance(unit, str) and type(scale) is int and -18 <= scale <= 18


def _end(r):
    return r["end_s"]             # placed by agent/collector/timeline.py


def senml(collector, device=None, skipped=None):
    """The SenML pack (a list of records). Metrics whose unit has no SenML
    equivalent, or whose scale is unusable, are left out and named in
    `skipped` (a set of (device, metric, repr of the unit)) when one is given."""
    out = []
    for dev in ([device] if device else collector.devices()):
        first = True
        for epoch, r, deltas, metrics in timeline.placed(collector._walk(dev)):
            t = _end(r)
            for name, unit, scale, kind in metrics:
                conv = TO_SENML.get(unit) if isinstance(unit, str) else None
                v = r["values"].get(name)
                if conv is None or type(v) is not int or not _usable(unit, scale):
                    if skipped is not None:
                        skipped.add((dev, str(name), repr(unit)[:40]))
                    continue
                e = {}
                if first:
                    e["bn"] = BASE_NAME + senml_name(dev) + ":"
                    e["bt"] = t
                    base = t
                    first = False
                su, factor, field = conv
                e["n"] = senml_name(str(name))
                e["u"] = su
                e["t"] = t - base
                e[field] = _number(v * Fraction(10) ** scale * factor)
                out.append(e)
    return out


def cloudevents(collector, device=None, skipped=None):
    """One CloudEvent per record. Odometers whose unit or scale no export can
    use are left out and named in `skipped` when one is given."""
    out = []
    for dev in ([device] if device else collector.devices()):
        for epoch, r, deltas, metrics in timeline.placed(collector._walk(dev)):
            units = {m[0]: (m[1], m[2]) for m in metrics}
            for k in [k for k in deltas if not _usable(*units[k])]:
                del deltas[k]
                if skipped is not None:
                    skipped.add((dev, str(k), repr(units[k][0])[:40]))
            out.append({
                "specversion": "1.0",
                "id": "%s/%d/%d" % (dev, epoch, r["seq"]),
                # a URI-reference: the id percent-encoded (RFC 3986)
                "source": "tally/%s" % quote(dev, safe="-._~"),
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
    # ensure_ascii: control characters and everything non-ASCII as \uXXXX, so
    # an id holding an escape sequence cannot drive the reader's terminal
    json.dump(items, fh, indent=1, ensure_ascii=True, allow_nan=False)
    fh.write("\n")
