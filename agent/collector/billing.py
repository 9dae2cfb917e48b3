"""Billing reports from the collector's ledger and a rate card (CPython).

A rate card (TOML, docs/billing.md) prices odometer metrics per outcome unit
(a cubic metre of air, a kWh), run-hours, and an optional monthly base fee per
device, with optional per-device overrides. `report()` applies it to the
ledger's per-day bookings for a period of whole UTC days; `render()` writes
the result as text, CSV or JSON.

Money is exact: prices are decimal strings, quantities are exact fractions of
the odometers (Fraction, never float), each line's amount is rounded once to
the currency's minor unit (half-even unless the card says half-up) and kept
as an integer of minor units; subtotals and the fleet total are sums of the
rounded lines, so a CSV of the lines always adds up to the total.

Only the Collector's public API is used: ledger() for the bookings, summary()
for each device's odometer units and its data-quality counters.

Over 500 lines on purpose: the rate card's checks, the pricing and the three
renderings are one contract (docs/billing.md: every line and error of a bill),
and each renderer must say exactly what the pricing decided; the rate-card
checks are most of the length and are read with the pricing they guard.

Nothing in a report can be turned against its reader (docs/billing.md,
"Reports are safe to open"): every text that comes from a device or a rate
card (ids, metric names, units, keys) has its control characters escaped in
every format, CSV cells that a spreadsheet would run as a formula are
prefixed with an apostrophe, and every bad period or rate card is one
BillingError line.
"""
import calendar
import csv
import datetime
import io
import json
import math
import os
import re
import sqlite3
import tomllib
from decimal import Decimal
from fractions import Fraction

from agent.collector import labels

REPORT_VERSION = "tally.billing.v1"
QTY_PLACES = 6       # a quantity that is not a terminating decimal is shown rounded to this


class _Held(ValueError):
    """One device's data cannot be billed on one line (its unit or scale
    changed, is out of range, or is of another kind than the price): that
    line is held back and said, and the rest of the fleet is billed."""


class BillingError(ValueError):
    """A problem the user can fix: the message names the key or argument."""


# ISO 4217 active codes and their minor units (exponent); every code not in
# _MINOR_EXCEPT has two decimals.
_ISO4217 = set("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN
BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP
ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK
JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK
MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB
TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD
XCG XOF XPF YER ZAR ZMW ZWG ZWL
""".split())
_MINOR_EXCEPT = {c: 0 for c in "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()}
_MINOR_EXCEPT.update({c: 3 for c in "BHD IQD JOD KWD LYD OMR TND".split()})
_MINOR_EXCEPT.update({"CLF": 4, "UYW": 4})

# Units a rate card may price in, by family, as exact multiples of the
# family's first unit. A metric whose unit is not listed here can be priced
# only in exactly its own unit.
_UNITS = {}
for _fam, _table in (
        ("time", {"s": 1, "min": 60, "h": 3600, "d": 86400}),
        ("energy", {"Wh": 1, "mWh": Fraction(1, 1000), "kWh": 1000, "MWh": 10 ** 6, "GWh": 10 ** 9,
                    "J": Fraction(1, 3600), "kJ": Fraction(1000, 3600), "MJ": Fraction(10 ** 6, 3600)}),
        ("volume", {"m3": 1, "L": Fraction(1, 1000), "l": Fraction(1, 1000), "dm3": Fraction(1, 1000),
                    "hL": Fraction(1, 10), "cm3": Fraction(1, 10 ** 6), "mL": Fraction(1, 10 ** 6)}),
        ("data", {"By": 1, "B": 1, "kB": 1000, "MB": 10 ** 6, "GB": 10 ** 9}),
        ("count", {"count": 1})):
    for _u, _f in _table.items():
        _UNITS[_u] = (_fam, Fraction(_f))

ROUNDING = ("half-even", "half-up")
_TOP_KEYS = ("currency", "rounding", "monthly_fee", "run_hours", "metrics", "devices")
_PLAN_KEYS = ("monthly_fee", "run_hours", "metrics")
_PRICE = re.compile(r"[0-9]{1,15}(\.[0-9]{1,12})?", re.ASCII)
RATES_MAX_BYTES = 1 << 20       # a rate card is a page of TOML, not a megabyte
YEAR_MIN, YEAR_MAX = 1970, 9998  # the ledger's times are Unix times; a day after the last must exist
MAX_DAYS = 3660                  # a --from/--to range: at most ten years of days


# -- text that is safe to show --------------------------------------------------------

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or
# hide text on screen (bidi embeddings, overrides and isolates, zero-width
# characters, line and paragraph separators)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def clean(text):
    """text with every control or reordering character written as a visible
    escape (ESC -> \\x1b, CR -> \\x0d, U+202E -> \\u202e), so it cannot move
    the cursor, clear a terminal, start a new CSV row or reorder a line."""
    return _UNSAFE.sub(lambda m: "\\x%02x" % ord(m.group()) if ord(m.group()) < 0x100
                       else "\\u%04x" % ord(m.group()), text)


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_cell(text):
    """A CSV cell no spreadsheet runs as a formula: control characters escaped
    (clean()), then a cell starting with = + - @ (or one that started with a
    tab, CR or LF) gets a leading apostrophe, except a plain decimal number
    such as -12.50, which stays a number."""
    if _NUMBER.fullmatch(text):
        return text
    if text.startswith(_FORMULA_START):
        return "'" + clean(text)
    return clean(text)


# -- the rate card ---------------------------------------------------------------------

def load_rates(path):
    """Parse and check a rate card on its own (the ledger is checked later).
    Returns {"path", "currency", "minor", "rounding", "fleet", "devices"}."""
    try:
        with open(path, "rb") as f:
            raw = f.read(RATES_MAX_BYTES + 1)
        if len(raw) > RATES_MAX_BYTES:
            raise BillingError("rate card %s is larger than %d bytes" % (path, RATES_MAX_BYTES))
        doc = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise BillingError("rate card %s: no such file" % path)
    except OSError as e:
        raise BillingError("rate card %s: %s" % (path, e.strerror or e))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BillingError("rate card %s is not valid TOML: %s" % (path, e))
    except RecursionError:
        raise BillingError("rate card %s is not valid TOML: nested too deep" % path)
    where = "rate card %s: " % path
    _known(doc, _TOP_KEYS, "", where)
    cur = doc.get("currency")
    if not isinstance(cur, str) or cur not in _ISO4217:
        raise BillingError(where + "key 'currency' must be an ISO 4217 code such as \"EUR\" (got %s)" % _show(cur))
    rounding = doc.get("rounding", "half-even")
    if not isinstance(rounding, str) or rounding not in ROUNDING:
        raise BillingError(where + "key 'rounding' must be one of %s (got %s)" % (", ".join(ROUNDING), _show(rounding)))
    fleet = _plan(doc, "", where)
    _merge(fleet, {}, None, where)               # complete on its own, or say what is missing
    devices = doc.get("devices", {})
    if not isinstance(devices, dict):
        raise BillingError(where + "key 'devices' must be a table of per-device overrides")
    over = {}
    for dev, body in devices.items():
        key = "devices.%s" % dev
        if not isinstance(body, dict):
            raise BillingError(where + "key '%s' must be a table" % key)
        _known(body, _PLAN_KEYS, key + ".", where)
        over[dev] = _plan(body, key + ".", where)
        _merge(fleet, over[dev], dev, where)     # likewise with the fleet's entries beneath
    return {"path": path, "currency": cur, "minor": _MINOR_EXCEPT.get(cur, 2), "rounding": rounding,
            "fleet": fleet, "devices": over}


def _known(table, keys, prefix, where):
    for k in table:
        if k not in keys:
            raise BillingError(where + "unknown key '%s%s' (known here: %s)" % (prefix, k, ", ".join(keys)))


def _price(v, key, where):
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        hint = ""
        if isinstance(v, float) and math.isfinite(v) and v >= 0:
            hint = " (a TOML float is binary and inexact: write \"%s\")" % v
        raise BillingError(where + "key '%s' must be a decimal string such as \"0.80\"%s (got %s)"
                           % (key, hint, _show(v)))
    s = str(v).strip() if isinstance(v, str) or -10 ** 15 < v < 10 ** 15 else "-"
    if not _PRICE.fullmatch(s):
        raise BillingError(where + "key '%s' must be a non-negative decimal such as \"0.80\", at most 15 "
                           "digits before the point and 12 after (got %s)" % (key, _show(v)))
    return Decimal(s)


def _show(v):
    """A short, printable account of a value from a rate card or the command line."""
    if isinstance(v, (dict, list)):
        return "a %s" % ("table" if isinstance(v, dict) else "list")
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _plan(t, prefix, where):
    """The pricing part of a table (top level or one device), partial."""
    p = {"metrics": {}}
    if "monthly_fee" in t:
        p["monthly_fee"] = _price(t["monthly_fee"], prefix + "monthly_fee", where)
    if "run_hours" in t:
        rh = t["run_hours"]
        key = prefix + "run_hours"
        if not isinstance(rh, dict):
            raise BillingError(where + "key '%s' must be a table with price (and metric)" % key)
        _known(rh, ("metric", "price"), key + ".", where)
        p["run_hours"] = {}
        if "price" in rh:
            p["run_hours"]["price"] = _price(rh["price"], key + ".price", where)
        if "metric" in rh:
            if not isinstance(rh["metric"], str) or not rh["metric"]:
                raise BillingError(where + "key '%s.metric' must be a metric name" % key)
            p["run_hours"]["metric"] = rh["metric"]
    metrics = t.get("metrics", {})
    if not isinstance(metrics, dict):
        raise BillingError(where + "key '%smetrics' must be a table of [metrics.<name>] tables" % prefix)
    for name, m in metrics.items():
        key = "%smetrics.%s" % (prefix, name)
        if not isinstance(m, dict):
            raise BillingError(where + "key '%s' must be a table with unit and price" % key)
        _known(m, ("unit", "price"), key + ".", where)
        e = {}
        if "price" in m:
            e["price"] = _price(m["price"], key + ".price", where)
        if "unit" in m:
            if not isinstance(m["unit"], str) or not m["unit"]:
                raise BillingError(where + "key '%s.unit' must be a unit name such as \"m3\"" % key)
            e["unit"] = m["unit"]
        p["metrics"][name] = e
    return p


def _merge(fleet, over, dev, where):
    """One device's complete plan: the fleet's, with its overrides on top
    (`dev` None: the fleet's own)."""
    pre = "devices.%s." % dev if dev is not None else ""
    plan = {"monthly_fee": over.get("monthly_fee", fleet.get("monthly_fee")), "run_hours": None,
            "metrics": {}}
    if "run_hours" in fleet or "run_hours" in over:
        rh = dict(fleet.get("run_hours", {}), **over.get("run_hours", {}))
        if "price" not in rh:
            raise BillingError(where + "key '%srun_hours.price' is required" % pre)
        rh.setdefault("metric", "run_time")
        plan["run_hours"] = rh
    own = over.get("metrics", {})
    for name in list(fleet["metrics"]) + [n for n in own if n not in fleet["metrics"]]:
        e = dict(fleet["metrics"].get(name, {}), **own.get(name, {}))
        for k in ("unit", "price"):
            if k not in e:
                raise BillingError(where + "key '%smetrics.%s.%s' is required" % (pre, name, k))
        plan["metrics"][name] = e
    rh = plan["run_hours"]
    if rh and rh["metric"] in plan["metrics"]:
        raise BillingError(where + "metric '%s' is priced twice: in %srun_hours and in %smetrics.%s"
                           % (rh["metric"], pre, pre, rh["metric"]))
    return plan


def _priced(plan, over, dev):
    """(rate-card key, item, metric, unit, price) of each usage line of a plan;
    the key is the device's own where it overrides the fleet's."""
    out = []
    for name, e in plan["metrics"].items():
        mine = name in over.get("metrics", {})
        out.append(("%smetrics.%s" % ("devices.%s." % dev if mine else "", name), "usage", name,
                    e["unit"], e["price"]))
    rh = plan["run_hours"]
    if rh:
        mine = "metric" in over.get("run_hours", {})
        out.append(("%srun_hours.metric" % ("devices.%s." % dev if mine else ""), "run_hours", rh["metric"],
                    "h", rh["price"]))
    return out


# -- the period ----------------------------------------------------------------------------

def parse_period(period=None, start=None, end=None):
    """(first day, last day, label) of a calendar month YYYY-MM or an inclusive
    range of days YYYY-MM-DD..YYYY-MM-DD, in UTC."""
    if period is not None and (start is not None or end is not None):
        raise BillingError("give either --period or --from/--to, not both")
    if period is not None:
        m = re.fullmatch(r"([0-9]{4})-([0-9]{2})", period, re.ASCII)
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise BillingError("--period %s is not a month YYYY-MM" % _show(period))
        y, mo = int(m.group(1)), int(m.group(2))
        if not YEAR_MIN <= y <= YEAR_MAX:
            raise BillingError("--period %s is outside the years %d to %d" % (_show(period), YEAR_MIN, YEAR_MAX))
        return (datetime.date(y, mo, 1), datetime.date(y, mo, calendar.monthrange(y, mo)[1]), period)
    if start is None or end is None:
        raise BillingError("give --period YYYY-MM, or both --from and --to (YYYY-MM-DD)")
    a, b = _day(start, "--from"), _day(end, "--to")
    if b < a:
        raise BillingError("--to %s is before --from %s" % (end, start))
    if (b - a).days >= MAX_DAYS:
        raise BillingError("--from %s --to %s spans %d days; a report covers at most %d"
                           % (start, end, (b - a).days + 1, MAX_DAYS))
    return a, b, "%s..%s" % (a, b)


def _day(s, opt):
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", s, re.ASCII):
            raise ValueError
        d = datetime.date.fromisoformat(s)
    except ValueError:
        raise BillingError("%s %s is not a day YYYY-MM-DD" % (opt, _show(s)))
    if not YEAR_MIN <= d.year <= YEAR_MAX:
        raise BillingError("%s %s is outside the years %d to %d" % (opt, s, YEAR_MIN, YEAR_MAX))
    return d


def _months(a, b):
    """How many calendar months [a, b] spans, exactly: each month counts the
    share of its days inside the range."""
    n = Fraction(0)
    d = a
    while d <= b:
        last = datetime.date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])
        upto = min(last, b)
        n += Fraction((upto - d).days + 1, last.day)
        d = upto + datetime.timedelta(days=1)
    return n


# -- the report ------------------------------------------------------------------------------

def open_ledger(db):
    """The collector's store, read through its public API; `db` is its SQLite
    file (or a database URL, where the collector takes one)."""
    from agent.collector import store
    if "://" not in db and not os.path.exists(db):
        raise BillingError("no ledger at %s" % db)
    try:
        return store.Collector(db, keys=lambda dev: None)
    except _db_errors() as e:
        raise BillingError("%s is not a Tally ledger (%s)" % (db, e))


def _db_errors():
    from agent.collector import store
    return getattr(store, "DB_ERRORS", (sqlite3.Error,))


def report(collector, rates, period, devices=None):
    """The billing report as a plain dict (amounts in integer minor units);
    render() turns it into text, CSV or JSON. `period` comes from
    parse_period(); `devices` limits the report to these ids."""
    first, last, label = period
    lo, hi = first.isoformat(), last.isoformat()
    try:
        led, chosen = _select(collector, devices, lo, hi)
        summaries = {d: collector.summary(d) for d in chosen}
    except _db_errors() as e:
        raise BillingError("the ledger cannot be read: %s" % e)
    units = {d: _units(s) for d, s in summaries.items()}
    where = "rate card %s: " % rates["path"]
    if units:
        everywhere = set().union(*units.values())
        for key, _, name, _, _ in _priced(_merge(rates["fleet"], {}, None, where), {}, None):
            if name not in everywhere:
                raise BillingError(where + "key '%s': no device in this report has an odometer named '%s' "
                                   "(odometers: %s)" % (key, name, ", ".join(sorted(everywhere))))
    months = _months(first, last)
    days = [(first + datetime.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    rows = []
    notes = []
    stuck, billed = {}, set()       # rate-card key -> first held reason; keys billed somewhere
    for dev in chosen:
        booked = {day: use for day, use in led[dev].items() if lo <= day <= hi}
        over = rates["devices"].get(dev, {})
        plan = _merge(rates["fleet"], over, dev if over else None, where)
        lines, held = [], []
        for p in _priced(plan, over, dev):
            try:
                lines.append(_usage(dev, p, units[dev], booked, rates, where))
            except _Held as e:
                # one device's data: this line is held back and said, the fleet is billed
                held.append({"item": p[1], "metric": p[2], "reason": str(e)})
                notes.append("not billed: %s" % e)
                stuck.setdefault(p[0], str(e))
            else:
                if lines[-1]:
                    billed.add(p[0])
        lines = [x for x in lines if x]
        if plan["monthly_fee"] is not None:
            lines.append({"item": "base_fee", "metric": None, "quantity": months, "unit": "month",
                          "unit_price": plan["monthly_fee"], "odometer": None,
                          "amount": _round(months * Fraction(plan["monthly_fee"]), rates)})
        rows.append({"device": dev, "lines": lines, "subtotal": sum(x["amount"] for x in lines),
                     "units": units[dev], "held": held,
                     "quality": _quality(days, booked, summaries[dev])})
    for key, reason in stuck.items():
        if key not in billed:       # no device could be billed on it: the rate card is what is wrong
            raise BillingError(where + reason)
    unused = sorted(set(rates["devices"]) - set(chosen))
    if unused and not devices:
        notes.append("rate card overrides for devices not in this report: %s" % ", ".join(unused))
    if not chosen:
        notes.append("no device has bookings in the period")
    return {"period": {"from": lo, "to": hi, "label": label, "days": len(days)},
            "currency": rates["currency"], "minor": rates["minor"], "rounding": rates["rounding"],
            "rate_card": rates["path"], "devices": rows, "total": sum(r["subtotal"] for r in rows),
            "notes": notes}


def _select(collector, devices, lo, hi):
    """The ledger's bookings, and the devices in the report: those named, or
    else those whose bookings span any part of the period (so a device dark
    all period is still reported, and one not yet installed is not)."""
    if not devices:
        led = collector.ledger()
        return led, [d for d in sorted(led) if led[d] and min(led[d]) <= hi and max(led[d]) >= lo]
    known = collector.devices()
    missing = [d for d in devices if d not in known]
    if missing:
        raise BillingError("no device %s in the ledger (it has %s)"
                           % (", ".join(missing), ", ".join(known[:10]) or "none"))
    led = {}
    for d in dict.fromkeys(devices):
        led.update(collector.ledger(d))
    return led, sorted(led)


def _usage(dev, priced, units, booked, rates, where):
    """One usage line (a metric or run-hours) of a device, or None where a
    fleet-wide price names a metric this device does not have."""
    key, item, name, unit, price = priced
    if name not in units:
        if key.startswith("devices."):
            raise BillingError(where + "key '%s': device %s has no odometer named '%s' (its odometers: %s)"
                               % (key, dev, name, ", ".join(sorted(units))))
        return None
    if units[name] is None:
        raise _Held("key '%s': device %s changed the unit or scale of '%s' between epochs, so its "
                    "ledger total cannot be billed" % (key, dev, name))
    if units[name][1] is None:
        raise _Held("key '%s': device %s declares '%s' with a unit or scale out of range, so its "
                    "ledger total cannot be billed" % (key, dev, name))
    munit, scale = units[name]
    raw = sum(use.get(name, 0) for use in booked.values())
    qty = raw * Fraction(10) ** scale * _factor(unit, munit, key, name, where, dev)
    return {"item": item, "metric": name, "quantity": qty, "unit": unit, "unit_price": price,
            "odometer": {"total": raw, "unit": munit, "scale": scale},
            "amount": _round(qty * Fraction(price), rates)}


def _units(summary):
    """{odometer: (unit, scale)} of a device over all its epochs; a metric whose
    unit or scale changed between epochs maps to None (the ledger adds its raw
    values across epochs, so it cannot be billed)."""
    out = {}
    for e in summary["epochs"].values():
        for name, us in e["units"].items():
            us = tuple(us) if isinstance(us, (list, tuple)) else ()
            if (len(us) != 2 or not isinstance(us[0], str) or type(us[1]) is not int
                    or not -18 <= us[1] <= 18):
                us = ("?", None)     # a unit or scale no bill can use (a ledger from before births were checked)
            out[name] = us if out.get(name, us) == us else None
    return out


def _factor(unit, metric_unit, key, name, where, dev):
    """How many rate-card units one metric unit is, exactly; or a clear error."""
    if unit == metric_unit:
        return Fraction(1)
    a, b = _UNITS.get(unit), _UNITS.get(metric_unit)
    if a is None:
        raise BillingError(where + "key '%s': unknown unit '%s' (known: %s)"
                           % (key, unit, ", ".join(_UNITS)))
    if b is None or a[0] != b[0]:
        raise _Held("key '%s': unit '%s' is %s, but %s is measured in %s%s on device %s"
                    % (key, unit, a[0], name, metric_unit, " (%s)" % b[0] if b else "", dev))
    return b[1] / a[1]


def _round(x, rates):
    """Exact amount -> integer minor units, half-even (or half-up) at the minor unit."""
    q = x * 10 ** rates["minor"]
    if rates["rounding"] == "half-up":
        return math.floor(q + Fraction(1, 2))      # amounts are never negative
    return round(q)                                # Fraction rounds half to even


def _quality(days, booked, summary):
    missing = [d for d in days if d not in booked]
    hist = {"epochs": len(summary["epochs"]), "records": 0, "intervals_covered": 0,
            "coalesced_intervals": 0, "dropped_intervals": 0, "unexplained_missing_intervals": 0,
            "gap_ranges": [], "duplicates_ignored": summary["duplicates"],
            "rejected_messages": summary["rejected"], "odometer_rewinds": 0}
    for epoch, e in sorted(summary["epochs"].items()):
        hist["records"] += e["records"]
        hist["intervals_covered"] += e["covered"]
        hist["coalesced_intervals"] += e["coalesced"]
        hist["dropped_intervals"] += e["dropped"]
        hist["unexplained_missing_intervals"] += e["gaps"]
        hist["odometer_rewinds"] += e.get("rewinds", 0)
        hist["gap_ranges"] += [{"epoch": epoch, "from_seq": a, "to_seq": b} for a, b in e["gap_ranges"]]
    # records placed by receive time, or whose wall clock was contradicted (timeline.py), in the period
    tq = [g for g in summary.get("time_quality", ()) if days[0] <= g["day"] <= days[-1]]
    return {"days_with_data": len(days) - len(missing), "days_without_data": missing, "history": hist,
            "time_quality": tq}


# -- rendering -------------------------------------------------------------------------------

HISTORY_SCOPE = ("whole ledger history, all epochs: the ledger gives gaps and coalesced "
                 "intervals by seq, not by day, so they are not limited to the period")


def money(n, minor):
    """Integer minor units -> exact decimal string ("12.30")."""
    sign = "-" if n < 0 else ""
    whole, frac = divmod(abs(n), 10 ** minor)
    return "%s%d.%0*d" % (sign, whole, minor, frac) if minor else "%s%d" % (sign, whole)


def quantity(x):
    """An exact fraction as a decimal string: exact when it terminates within
    12 places, else rounded half-even to QTY_PLACES."""
    for k in range(13):
        n = x * 10 ** k
        if n.denominator == 1:
            break
    else:
        k, n = QTY_PLACES, Fraction(round(x * 10 ** QTY_PLACES))
    s = money(int(n), k)
    return s.rstrip("0").rstrip(".") if "." in s else s


def render(rep, fmt):
    if fmt == "json":
        # ensure_ascii: control and non-ASCII characters as \uXXXX escapes
        return json.dumps(to_json(rep), indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    if fmt == "csv":
        return to_csv(rep)
    if fmt == "text":
        return to_text(rep)
    raise BillingError("unknown format %r (text, csv, json)" % fmt)


def _line_json(x, minor):
    return {"item": x["item"], "metric": x["metric"], "quantity": quantity(x["quantity"]),
            "unit": x["unit"], "unit_price": str(x["unit_price"]), "amount": money(x["amount"], minor),
            "odometer": x["odometer"]}


def to_json(rep):
    m = rep["minor"]
    devs = []
    for r in rep["devices"]:
        q = r["quality"]
        devs.append({"device": r["device"], "lines": [_line_json(x, m) for x in r["lines"]],
                     "subtotal": money(r["subtotal"], m),
                     "data_quality": {"days_with_data": q["days_with_data"],
                                      "days_without_data": q["days_without_data"],
                                      "time_quality": q["time_quality"],
                                      "history": dict(q["history"], scope=HISTORY_SCOPE)}})
    return {"report": REPORT_VERSION, "period": rep["period"], "currency": rep["currency"],
            "minor_unit": m, "rounding": "%s per line at the currency's minor unit" % rep["rounding"],
            "rate_card": rep["rate_card"], "devices": devs, "total": money(rep["total"], m),
            "notes": rep["notes"]}


CSV_FIELDS = ("period_from", "period_to", "device", "item", "metric", "quantity", "unit", "unit_price",
              "amount", "currency")


def to_csv(rep):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    p = rep["period"]
    for r in rep["devices"]:
        for x in r["lines"]:
            j = _line_json(x, rep["minor"])
            w.writerow([csv_cell(c) for c in (p["from"], p["to"], r["device"], j["item"], j["metric"] or "",
                                              j["quantity"], j["unit"], j["unit_price"], j["amount"],
                                              rep["currency"])])
    return buf.getvalue()


def _spans(days):
    """['2026-11-03', '2026-11-04', '2026-11-07'] -> '2026-11-03..2026-11-04, 2026-11-07'."""
    out = []
    for d in days:
        t = datetime.date.fromisoformat(d)
        if out and (t - out[-1][1]).days == 1:
            out[-1][1] = t
        else:
            out.append([t, t])
    return ", ".join(str(a) if a == b else "%s..%s" % (a, b) for a, b in out)


def _time_line(g, units, priced):
    """One data-quality line for records placed by receive time or whose wall
    clock was contradicted (agent/collector/timeline.py), with the usage of
    the priced metrics they carry."""
    use = ", ".join("%s %s %s" % (k, quantity(v * Fraction(10) ** units[k][1]), units[k][0])
                    for k, v in sorted(g["usage"].items()) if v and units.get(k) and k in priced)
    how = ("booked by receive time (no clock evidence in its boot)" if g["placed"] == "received"
           else "wall clock contradicted (%s), re-anchored from its boot" % g["flag"])
    return "%s: epoch %08x boot %d seq %d..%d (%d records) on %s, usage %s" % (
        how, g["epoch"], g["boot"], g["from_seq"], g["to_seq"], g["records"], g["day"], use or "none")


def to_text(rep):
    m, cur, p = rep["minor"], rep["currency"], rep["period"]
    out = ["Tally billing report",
           "period     %s .. %s (%s, %d UTC days)" % (p["from"], p["to"], p["label"], p["days"]),
           "rate card  %s" % rep["rate_card"],
           "currency   %s; every line rounded %s to %s; subtotals and total are sums of lines"
           % (cur, rep["rounding"], money(1, m)),
           ""]
    head = ("device", "item", "metric", "quantity", "unit", "unit price", "amount")
    rows = []
    for r in rep["devices"]:
        for x in r["lines"]:
            j = _line_json(x, m)
            rows.append(tuple(clean(c) for c in (r["device"], j["item"], j["metric"] or "", j["quantity"],
                                                 j["unit"], j["unit_price"], j["amount"])))
        rows.append((clean(r["device"]), "subtotal", "", "", "", "", money(r["subtotal"], m)))
    rows.append(("fleet", "total", "", "", "", cur, money(rep["total"], m)))
    w = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
    right = (False, False, False, True, False, True, True)
    for n, row in enumerate([head] + rows):
        if n == len(rows):
            out.append("  ".join("-" * x for x in w))
        out.append("  ".join(c.rjust(w[i]) if right[i] else c.ljust(w[i]) for i, c in enumerate(row)).rstrip())
    if rep["devices"]:
        out += ["", "Data quality"]
    for r in rep["devices"]:
        q, h = r["quality"], r["quality"]["history"]
        miss = q["days_without_data"]
        dev = clean(r["device"])
        out.append("%s  data on %d of %d days%s" % (dev, q["days_with_data"], p["days"],
                                                     "; none on " + _spans(miss) if miss else ""))
        pad = " " * len(dev)
        gaps = "".join(" (epoch %08x seq %d..%d)" % (g["epoch"], g["from_seq"], g["to_seq"])
                       for g in h["gap_ranges"][:5])
        out.append("%s  whole history*: %d epoch(s), %d records covering %d intervals, duplicates ignored %d, "
                   "messages rejected %d" % (pad, h["epochs"], h["records"], h["intervals_covered"],
                                             h["duplicates_ignored"], h["rejected_messages"]))
        out.append("%s  whole history*: coalesced %d, dropped %d, unexplained missing %d%s"
                   % (pad, h["coalesced_intervals"], h["dropped_intervals"],
                      h["unexplained_missing_intervals"], gaps))
        if h["odometer_rewinds"]:
            out.append("%s  whole history*: %d record(s) with an odometer below its earlier value "
                       "(flash damage on the device): no usage booked until it climbs past it"
                       % (pad, h["odometer_rewinds"]))
        priced = {x["metric"] for x in r["lines"] if x["metric"]}
        out += ["%s  %s" % (pad, _time_line(g, r["units"], priced)) for g in q["time_quality"]]
    if rep["devices"]:
        out.append("* " + HISTORY_SCOPE)
    out += [""] if rep["notes"] else []
    for n in rep["notes"]:
        out.append("note: " + n)
    # the metric names in the words of the people who pay (agent/collector/labels.py, the console's glossary)
    legend = labels.legend(x["metric"] for r in rep["devices"] for x in r["lines"] if x["metric"])
    if legend:
        out += ["", "What the metric names mean"] + ["  " + x for x in legend]
    return "\n".join(clean(x) for x in out) + "\n"


def run(db, rates_path, period=None, start=None, end=None, devices=None, fmt="text"):
    """What `tally report` does: check the arguments, read, render."""
    per = parse_period(period, start, end)
    rates = load_rates(rates_path)
    col = open_ledger(db)
    try:
        return render(report(col, rates, per, devices), fmt)
    finally:
        col.close()
