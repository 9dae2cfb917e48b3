"""Customers, sites, contracts and asset assignments in the ledger, and the
bills per contract and per customer that price them (CPython, collector).

A contract file (TOML, docs/contracts.md) names customers, sites,
contracts (term, base fee, per-unit price or graduated tiers, monthly
minimum, currency, service levels with their credits, and the pricing
inputs `tally price` uses) and assignments of assets to a customer's site
under a contract for a range of days. `load()` checks the whole file
against itself and against what the ledger already holds, then writes it in
ONE transaction: on any error nothing changes. History is kept: a contract
id is never redefined with other terms, an assignment is only ever added or
given an end, so an asset that moves mid-month bills each contract for the
days it spent under it.

`bills()` prices a period per contract from the same record walk the rate
card uses (Collector._walk through timeline.placed: a record's usage is
booked on the UTC day its interval ends). Every usage line lists the
records it rests on as (asset, epoch, seq range, records, quantity). Money
is exact: Fraction quantities, each line rounded once to the currency's
minor unit (billing._round), totals are sums of lines.

Tables (CREATE TABLE IF NOT EXISTS, SQLite and PostgreSQL): customers,
sites, contracts (terms as canonical JSON), assignments, repairs (the
contract file's [[repairs]]: operator input that draws the reserve). A
month's bills post each asset's reserve entries (pricing.post_bills; table
reserve_entries, owned by pricing.py) and carry its account as "reserve".
"""
import datetime
import json
import math
import tomllib
from fractions import Fraction

from agent.collector import billing, timeline
from agent.collector.billing import BillingError

CONTRACT_VERSION = "tally.contract-bill.v1"
MAX_BYTES = 4 << 20
LOAD_LOCK = 0x7A11C          # PostgreSQL advisory lock: loads check and write as one

_SQL = """
CREATE TABLE IF NOT EXISTS customers (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sites (id TEXT PRIMARY KEY, customer TEXT NOT NULL, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contracts (
    id TEXT PRIMARY KEY, customer TEXT NOT NULL, start_day TEXT NOT NULL, end_day TEXT NOT NULL,
    terms TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    asset TEXT NOT NULL, contract TEXT NOT NULL, site TEXT NOT NULL, from_day TEXT NOT NULL,
    to_day TEXT NOT NULL, PRIMARY KEY (asset, contract, from_day));
CREATE TABLE IF NOT EXISTS repairs (
    asset TEXT NOT NULL, day TEXT NOT NULL, component TEXT NOT NULL, cost TEXT NOT NULL,
    code TEXT NOT NULL, note TEXT NOT NULL, PRIMARY KEY (asset, day, component));
"""

_TOP = ("currency", "customers", "sites", "contracts", "assignments", "repairs")
_CONTRACT = ("customer", "sites", "start", "end", "currency", "rounding", "metric", "unit", "price", "tiers",
             "base_fee", "minimum", "service", "energy", "pricing", "components", "baseline")
_SERVICE = ("availability", "availability_credit", "bands")
_BAND = ("name", "metric", "min", "max", "share", "credit")
_PRICING = ("tariff", "capital", "residual", "lifetime_units", "service_per_unit", "margin",
            "lifetime_years", "lifetime_years_av", "units_per_year_av")
_COMPONENT = ("name", "cost", "rated_life", "life_metric", "life_unit", "beta")
_BASELINE = ("kwh_per_unit", "grid_kg_per_kwh", "best_kwh_per_unit")


def ensure_tables(col):
    """Create the contract tables (idempotent) on the collector's database."""
    for ddl in _SQL.split(";"):
        if ddl.strip():
            col._b.execute(ddl)


# -- the contract file -----------------------------------------------------------------

def factor(unit, metric_unit, key, name, where, asset):
    """billing._factor with its held-line case (a unit of another family)
    as the one-line error a contract's bill, price or statement gives."""
    try:
        return billing._factor(unit, metric_unit, key, name, where, asset)
    except billing._Held as e:
        raise BillingError(where + str(e))


def _day(v, key, where):
    if isinstance(v, datetime.date) and not isinstance(v, datetime.datetime):
        return v.isoformat()
    if isinstance(v, str):
        try:
            return datetime.date.fromisoformat(v).isoformat()
        except ValueError:
            pass
    raise BillingError(where + "key '%s' must be a day YYYY-MM-DD (got %s)" % (key, billing._show(v)))


def _text(v, key, where):
    if not isinstance(v, str) or not v or len(v) > 200:
        raise BillingError(where + "key '%s' must be a non-empty text (got %s)" % (key, billing._show(v)))
    return v


def _table(v, key, where):
    if not isinstance(v, dict):
        raise BillingError(where + "key '%s' must be a table" % key)
    return v


def _num(v, key, where):
    return str(billing._price(v, key, where))


def _check_contract(cid, c, currency, where):
    k = "contracts.%s" % cid
    _table(c, k, where)
    billing._known(c, _CONTRACT, k + ".", where)
    out = {"id": cid, "customer": _text(c.get("customer"), k + ".customer", where)}
    sites = c.get("sites")
    if not isinstance(sites, list) or not sites or not all(isinstance(s, str) and s for s in sites):
        raise BillingError(where + "key '%s.sites' must be a list of site ids" % k)
    out["sites"] = sorted(set(sites))
    out["start"] = _day(c.get("start"), k + ".start", where)
    out["end"] = _day(c.get("end"), k + ".end", where)
    if out["end"] < out["start"]:
        raise BillingError(where + "contract %s ends (%s) before it starts (%s)" % (cid, out["end"], out["start"]))
    cur = c.get("currency", currency)
    if not isinstance(cur, str) or cur not in billing._ISO4217:
        raise BillingError(where + "key '%s.currency' must be an ISO 4217 code (got %s)" % (k, billing._show(cur)))
    out["currency"] = cur
    rounding = c.get("rounding", "half-even")
    if rounding not in billing.ROUNDING:
        raise BillingError(where + "key '%s.rounding' must be one of %s" % (k, ", ".join(billing.ROUNDING)))
    out["rounding"] = rounding
    out["metric"] = _text(c.get("metric"), k + ".metric", where)
    out["unit"] = _text(c.get("unit"), k + ".unit", where)
    if "price" not in c and "tiers" not in c:
        raise BillingError(where + "contract %s has no prices: give '%s.price' or '%s.tiers'" % (cid, k, k))
    if "price" in c and "tiers" in c:
        raise BillingError(where + "contract %s gives both price and tiers: give one" % cid)
    if "price" in c:
        out["tiers"] = [{"upto": None, "price": _num(c["price"], k + ".price", where)}]
    else:
        tiers = c["tiers"]
        if not isinstance(tiers, list) or not tiers:
            raise BillingError(where + "contract %s has no prices: '%s.tiers' is empty" % (cid, k))
        out["tiers"], last = [], Fraction(-1)
        for i, t in enumerate(tiers):
            tk = "%s.tiers[%d]" % (k, i)
            _table(t, tk, where)
            billing._known(t, ("upto", "price"), tk + ".", where)
            if "price" not in t:
                raise BillingError(where + "key '%s.price' is required" % tk)
            upto = None
            if "upto" in t:
                upto = _num(t["upto"], tk + ".upto", where)
                if Fraction(upto) <= last:
                    raise BillingError(where + "key '%s.upto' must be above the tier before it" % tk)
                last = Fraction(upto)
            elif i != len(tiers) - 1:
                raise BillingError(where + "key '%s.upto' is required on every tier but the last" % tk)
            out["tiers"].append({"upto": upto, "price": _num(t["price"], tk + ".price", where)})
    for key in ("base_fee", "minimum"):
        out[key] = _num(c[key], "%s.%s" % (k, key), where) if key in c else None
    svc = _table(c.get("service", {}), k + ".service", where)
    billing._known(svc, _SERVICE, k + ".service.", where)
    out["service"] = {"availability": None, "availability_credit": "0", "bands": []}
    for key in ("availability", "availability_credit"):
        if key in svc:
            out["service"][key] = _frac(svc[key], "%s.service.%s" % (k, key), where)
    for i, b in enumerate(svc.get("bands", [])):
        bk = "%s.service.bands[%d]" % (k, i)
        _table(b, bk, where)
        billing._known(b, _BAND, bk + ".", where)
        band = {"name": _text(b.get("name"), bk + ".name", where),
                "metric": _text(b.get("metric"), bk + ".metric", where),
                "min": _signed(b["min"], bk + ".min", where) if "min" in b else None,
                "max": _signed(b["max"], bk + ".max", where) if "max" in b else None,
                "share": _frac(b.get("share", "1"), bk + ".share", where),
                "credit": _frac(b.get("credit", "0"), bk + ".credit", where)}
        if band["min"] is None and band["max"] is None:
            raise BillingError(where + "key '%s' needs min or max" % bk)
        out["service"]["bands"].append(band)
    out["energy"] = _text(c.get("energy", "energy"), k + ".energy", where)
    p = _table(c.get("pricing", {}), k + ".pricing", where)
    billing._known(p, _PRICING, k + ".pricing.", where)
    out["pricing"] = {key: _num(v, "%s.pricing.%s" % (k, key), where) for key, v in p.items()}
    bl = _table(c.get("baseline", {}), k + ".baseline", where)
    billing._known(bl, _BASELINE, k + ".baseline.", where)
    out["baseline"] = {key: _num(v, "%s.baseline.%s" % (k, key), where) for key, v in bl.items()}
    out["components"] = []
    for i, comp in enumerate(c.get("components", [])):
        ck = "%s.components[%d]" % (k, i)
        _table(comp, ck, where)
        billing._known(comp, _COMPONENT, ck + ".", where)
        for req in ("name", "cost", "rated_life", "life_metric"):
            if req not in comp:
                raise BillingError(where + "key '%s.%s' is required" % (ck, req))
        rl = _num(comp["rated_life"], ck + ".rated_life", where)
        if Fraction(rl) <= 0:
            raise BillingError(where + "key '%s.rated_life' must be above zero" % ck)
        out["components"].append({"name": _text(comp["name"], ck + ".name", where),
                                  "cost": _num(comp["cost"], ck + ".cost", where), "rated_life": rl,
                                  "life_metric": _text(comp["life_metric"], ck + ".life_metric", where),
                                  "life_unit": _text(comp["life_unit"], ck + ".life_unit", where)
                                  if "life_unit" in comp else None,
                                  "beta": _num(comp.get("beta", "1.5"), ck + ".beta", where)})
    return out


def _frac(v, key, where):
    s = _num(v, key, where)
    if Fraction(s) > 1:
        raise BillingError(where + "key '%s' is a share between 0 and 1 (got %s)" % (key, s))
    return s


def _signed(v, key, where):
    if isinstance(v, str) and v.startswith("-"):
        return "-" + _num(v[1:], key, where)
    if isinstance(v, int) and not isinstance(v, bool) and v < 0:
        return "-" + _num(-v, key, where)
    return _num(v, key, where)


def parse(path):
    """Read and check a contract file on its own. Returns
    {"customers", "sites", "contracts", "assignments", "repairs"}."""
    where = "contract file %s: " % path
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise BillingError(where + "larger than %d bytes" % MAX_BYTES)
        doc = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise BillingError(where + "no such file")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BillingError(where + "not valid TOML: %s" % e)
    billing._known(doc, _TOP, "", where)
    currency = doc.get("currency", "EUR")
    out = {"customers": {}, "sites": {}, "contracts": {}, "assignments": [], "repairs": []}
    for cid, c in _table(doc.get("customers", {}), "customers", where).items():
        _table(c, "customers.%s" % cid, where)
        billing._known(c, ("name",), "customers.%s." % cid, where)
        out["customers"][cid] = _text(c.get("name", cid), "customers.%s.name" % cid, where)
    for sid, s in _table(doc.get("sites", {}), "sites", where).items():
        _table(s, "sites.%s" % sid, where)
        billing._known(s, ("customer", "name"), "sites.%s." % sid, where)
        out["sites"][sid] = {"customer": _text(s.get("customer"), "sites.%s.customer" % sid, where),
                             "name": _text(s.get("name", sid), "sites.%s.name" % sid, where)}
    for cid, c in _table(doc.get("contracts", {}), "contracts", where).items():
        out["contracts"][cid] = _check_contract(cid, c, currency, where)
    for i, a in enumerate(doc.get("assignments", [])):
        ak = "assignments[%d]" % i
        _table(a, ak, where)
        billing._known(a, ("asset", "contract", "site", "from", "to"), ak + ".", where)
        out["assignments"].append({
            "asset": _text(a.get("asset"), ak + ".asset", where),
            "contract": _text(a.get("contract"), ak + ".contract", where),
            "site": _text(a.get("site"), ak + ".site", where),
            "from": _day(a.get("from"), ak + ".from", where),
            "to": _day(a["to"], ak + ".to", where) if "to" in a else None})
    for i, r in enumerate(doc.get("repairs", [])):
        rk = "repairs[%d]" % i
        _table(r, rk, where)
        billing._known(r, ("asset", "day", "component", "cost", "code", "note"), rk + ".", where)
        out["repairs"].append({"asset": _text(r.get("asset"), rk + ".asset", where),
                               "day": _day(r.get("day"), rk + ".day", where),
                               "component": _text(r.get("component"), rk + ".component", where),
                               "cost": _num(r.get("cost"), rk + ".cost", where),
                               "code": str(r.get("code", "")), "note": str(r.get("note", ""))})
    return out


# -- the ledger's contract tables --------------------------------------------------------

def _canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def stored(col):
    """Everything the ledger holds: the same shape as parse()."""
    ensure_tables(col)
    x = col._b.execute
    out = {"customers": {r[0]: r[1] for r in x("SELECT id, name FROM customers")},
           "sites": {r[0]: {"customer": r[1], "name": r[2]} for r in x("SELECT id, customer, name FROM sites")},
           "contracts": {r[0]: json.loads(r[1]) for r in x("SELECT id, terms FROM contracts")},
           "assignments": [{"asset": r[0], "contract": r[1], "site": r[2], "from": r[3], "to": r[4]}
                           for r in x("SELECT asset, contract, site, from_day, to_day FROM assignments "
                                      "ORDER BY asset, from_day, contract")],
           "repairs": [{"asset": r[0], "day": r[1], "component": r[2], "cost": r[3], "code": r[4], "note": r[5]}
                       for r in x("SELECT asset, day, component, cost, code, note FROM repairs "
                                  "ORDER BY asset, day, component")]}
    return out


def _merged(old, new, path):
    """The ledger's contract data with the file's on top, checked as a whole;
    raises BillingError naming the first thing wrong."""
    where = "contract file %s: " % path
    m = {"customers": dict(old["customers"]), "sites": dict(old["sites"]), "contracts": dict(old["contracts"])}
    for kind in ("customers", "sites", "contracts"):
        for k, v in new[kind].items():
            if k in old[kind] and old[kind][k] != v:
                raise BillingError(where + "%s %s is already in the ledger with other terms; the ledger keeps "
                                   "history, so give the new one its own id" % (kind[:-1], k))
            m[kind][k] = v
    for sid, s in m["sites"].items():
        if s["customer"] not in m["customers"]:
            raise BillingError(where + "site %s names customer %s, which is not defined" % (sid, s["customer"]))
    for cid, c in m["contracts"].items():
        if c["customer"] not in m["customers"]:
            raise BillingError(where + "contract %s names customer %s, which is not defined" % (cid, c["customer"]))
        for s in c["sites"]:
            if s not in m["sites"]:
                raise BillingError(where + "contract %s names site %s, which is not defined" % (cid, s))
            if m["sites"][s]["customer"] != c["customer"]:
                raise BillingError(where + "contract %s: site %s belongs to customer %s, not %s"
                                   % (cid, s, m["sites"][s]["customer"], c["customer"]))
    cs = sorted(m["contracts"].values(), key=lambda c: c["id"])
    for i, a in enumerate(cs):
        for b in cs[i + 1:]:
            shared = set(a["sites"]) & set(b["sites"])
            if shared and a["start"] <= b["end"] and b["start"] <= a["end"]:
                raise BillingError(where + "overlapping contracts: %s (%s..%s) and %s (%s..%s) both cover site %s"
                                   % (a["id"], a["start"], a["end"], b["id"], b["start"], b["end"],
                                      sorted(shared)[0]))
    asg = {(a["asset"], a["contract"], a["from"]): dict(a) for a in old["assignments"]}
    for a in new["assignments"]:
        c = m["contracts"].get(a["contract"])
        if c is None:
            raise BillingError(where + "assignment of %s names contract %s, which is not defined"
                               % (a["asset"], a["contract"]))
        if a["site"] not in c["sites"]:
            raise BillingError(where + "assignment of %s: site %s is not one of contract %s's sites (%s)"
                               % (a["asset"], a["site"], c["id"], ", ".join(c["sites"])))
        a = dict(a, to=a["to"] or c["end"])
        if a["from"] < c["start"] or a["to"] > c["end"] or a["to"] < a["from"]:
            raise BillingError(where + "assignment of %s to %s from %s to %s is outside the contract's term "
                               "%s..%s" % (a["asset"], c["id"], a["from"], a["to"], c["start"], c["end"]))
        key = (a["asset"], a["contract"], a["from"])
        have = asg.get(key)
        if have and have != a and not (have["site"] == a["site"] and a["to"] < have["to"]):
            raise BillingError(where + "assignment of %s to %s from %s is already in the ledger with other "
                               "terms (an assignment can only be given an earlier end)" % key)
        asg[key] = a
    by_asset = {}
    for a in sorted(asg.values(), key=lambda a: (a["asset"], a["from"])):
        prev = by_asset.get(a["asset"])
        if prev and a["from"] <= prev["to"]:
            raise BillingError(where + "asset %s is in two contracts at once: %s from %s to %s and %s from %s to %s"
                               % (a["asset"], prev["contract"], prev["from"], prev["to"], a["contract"],
                                  a["from"], a["to"]))
        by_asset[a["asset"]] = a
    return m, asg


def load(col, path):
    """Check a contract file against the ledger and write it in one
    transaction. Returns counts of what was new."""
    new = parse(path)
    ensure_tables(col)
    x = col._b.execute
    with col._b.transaction(write=True):
        if col._b.TYPES["int"] == "BIGINT":          # PostgreSQL: one load at a time (SQLite: BEGIN IMMEDIATE)
            x("SELECT pg_advisory_xact_lock(?)", (LOAD_LOCK,))
        old = stored(col)
        m, asg = _merged(old, new, path)
        n = {"customers": 0, "sites": 0, "contracts": 0, "assignments": 0, "repairs": 0}
        for cid, name in new["customers"].items():
            if cid not in old["customers"]:
                x("INSERT INTO customers VALUES (?,?)", (cid, name))
                n["customers"] += 1
        for sid, s in new["sites"].items():
            if sid not in old["sites"]:
                x("INSERT INTO sites VALUES (?,?,?)", (sid, s["customer"], s["name"]))
                n["sites"] += 1
        for cid, c in new["contracts"].items():
            if cid not in old["contracts"]:
                x("INSERT INTO contracts VALUES (?,?,?,?,?)", (cid, c["customer"], c["start"], c["end"], _canon(c)))
                n["contracts"] += 1
        oldk = {(a["asset"], a["contract"], a["from"]): a for a in old["assignments"]}
        for key, a in asg.items():
            if key not in oldk:
                x("INSERT INTO assignments VALUES (?,?,?,?,?)", (a["asset"], a["contract"], a["site"], a["from"],
                                                                 a["to"]))
                n["assignments"] += 1
            elif oldk[key]["to"] != a["to"]:
                x("UPDATE assignments SET to_day=? WHERE asset=? AND contract=? AND from_day=?",
                  (a["to"],) + key)
                n["assignments"] += 1
        oldr = {(r["asset"], r["day"], r["component"]): r for r in old["repairs"]}
        for r in new["repairs"]:
            key = (r["asset"], r["day"], r["component"])
            if key in oldr:
                if oldr[key] != r:
                    raise BillingError("contract file %s: repair of %s on %s (%s) is already recorded with "
                                       "other details" % ((path,) + key))
                continue
            x("INSERT INTO repairs VALUES (?,?,?,?,?,?)", key + (r["cost"], r["code"], r["note"]))
            oldr[key] = r
            n["repairs"] += 1
    return n


# -- usage per asset and day from the record walk -------------------------------------

def walk(col, asset):
    """Per record of an asset, placed in time: (day, epoch, seq, from_seq,
    flags, deltas, values). The plug-in point of the store's record walk."""
    out = []
    days = {}                  # UTC day number -> its date, as timeline.day() gives it
    for epoch, r, deltas, _ in timeline.placed(col._walk(asset)):
        k = (int(r["end_s"]) - 1) // 86400
        d = days.get(k)
        if d is None:
            d = days[k] = timeline.day(r["end_s"])
        out.append((d, epoch, r["seq"], r["from_seq"], r["flags"], deltas, r["values"],
                    r.get("ival_ms", 0)))
    return out


def segments(data, contract, lo, hi):
    """The assignments of one contract that overlap days lo..hi, clipped."""
    c = data["contracts"][contract]
    out = []
    for a in data["assignments"]:
        if a["contract"] != contract:
            continue
        f, t = max(a["from"], lo, c["start"]), min(a["to"], hi, c["end"])
        if f <= t:
            out.append(dict(a, from_=f, to_=t))
    return out


def _units_of(col, asset):
    """{odometer: (unit, scale)} of an asset from its schemas (a metric whose
    unit or scale differs between schemas maps to None, as in billing), and
    ("_gauge", name) -> scale for its gauges."""
    out = {}
    for row in col._b.execute("SELECT metrics FROM schemas WHERE device_id=?", (asset,)):
        for m in json.loads(row[0]):
            if not isinstance(m, list) or len(m) < 4:
                continue
            if m[3] == "odometer":
                us = (m[1], m[2]) if isinstance(m[2], int) and -18 <= m[2] <= 18 else ("?", None)
                out[m[0]] = us if out.get(m[0], us) == us else None
            elif isinstance(m[2], int):
                out[("_gauge", m[0])] = m[2]
    return out


def sources(recs, metric, f, t):
    """Seq ranges of the records booked on days f..t, with the metric's raw
    usage: [{epoch, from_seq, to_seq, records, raw}] and the days covered."""
    out, days = [], set()
    cur = None
    for day, epoch, seq, frm, flags, deltas, vals, ival in recs:
        if not f <= day <= t:
            cur = None
            continue
        days.add(day)
        if cur is None or cur["epoch"] != epoch or frm != cur["to_seq"] + 1:
            cur = {"epoch": epoch, "from_seq": frm, "to_seq": seq, "records": 0, "raw": 0}
            out.append(cur)
        cur["to_seq"] = seq
        cur["records"] += 1
        cur["raw"] += deltas.get(metric, 0)
    return out, days


def _days(f, t):
    a, b = datetime.date.fromisoformat(f), datetime.date.fromisoformat(t)
    return [(a + datetime.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def _tiered(qty, tiers):
    """[(quantity in tier, price, label)] of a graduated price."""
    out, lo = [], Fraction(0)
    for i, t in enumerate(tiers):
        hi = Fraction(t["upto"]) if t["upto"] is not None else None
        part = (min(qty, hi) if hi is not None else qty) - lo
        if part > 0 or (i == 0 and qty == 0):
            label = "usage" if len(tiers) == 1 else "usage tier %d (%s..%s)" % (
                i + 1, billing.quantity(lo), t["upto"] or "")
            out.append((max(part, Fraction(0)), t["price"], label))
        if hi is None or qty <= hi:
            break
        lo = hi
    return out


def bill(col, data, cid, period, cache=None):
    """One contract's bill for a period (billing.parse_period's tuple)."""
    first, last, label = period
    lo, hi = first.isoformat(), last.isoformat()
    c = data["contracts"][cid]
    if hi < c["start"]:
        raise BillingError("period %s is before contract %s starts (%s)" % (label, cid, c["start"]))
    if lo > c["end"]:
        raise BillingError("period %s is after contract %s ended (%s)" % (label, cid, c["end"]))
    rates = {"minor": billing._MINOR_EXCEPT.get(c["currency"], 2), "rounding": c["rounding"]}
    cache = {} if cache is None else cache
    cf, ct = max(lo, c["start"]), min(hi, c["end"])
    srcs, quality, service = [], [], []
    qty_total = Fraction(0)
    avail_num = avail_den = 0
    band_hits = [[0, 0] for _ in c["service"]["bands"]]
    for s in segments(data, cid, lo, hi):
        a = s["asset"]
        if a not in cache:
            cache[a] = (walk(col, a), _units_of(col, a))
        recs, units = cache[a]
        u = units.get(c["metric"])
        if c["metric"] not in units:
            if recs:
                raise BillingError("contract %s prices metric '%s', but asset %s has no odometer by that name "
                                   "(its odometers: %s)" % (cid, c["metric"], a, ", ".join(sorted(units))))
            scale_f = Fraction(0)
        elif u is None or u[1] is None:
            raise BillingError("contract %s: asset %s changed the unit or scale of '%s', so it cannot be billed"
                               % (cid, a, c["metric"]))
        else:
            scale_f = Fraction(10) ** u[1] * factor(c["unit"], u[0], "contracts.%s.unit" % cid,
                                                            c["metric"], "contract %s: " % cid, a)
        rngs, days = sources(recs, c["metric"], s["from_"], s["to_"])
        q = sum(r["raw"] for r in rngs) * scale_f
        qty_total += q
        srcs += [{"asset": a, "site": s["site"], "epoch": r["epoch"], "from_seq": r["from_seq"],
                  "to_seq": r["to_seq"], "records": r["records"], "quantity": billing.quantity(r["raw"] * scale_f)}
                 for r in rngs]
        seg_days = _days(s["from_"], s["to_"])
        covered = 0
        # band limits in each gauge's raw integers: v*10^scale >= min  <=>  v >= ceil(min/10^scale)
        limits = []
        for b in c["service"]["bands"]:
            sc = units.get(("_gauge", b["metric"]), 0)
            limits.append((b["metric"],
                           math.ceil(Fraction(b["min"]) / Fraction(10) ** sc) if b["min"] is not None else None,
                           math.floor(Fraction(b["max"]) / Fraction(10) ** sc) if b["max"] is not None else None))
        f_, t_ = s["from_"], s["to_"]
        for day, epoch, seq, frm, flags, deltas, vals, ival in recs:
            if f_ <= day <= t_:
                covered += (seq - frm + 1) * (ival or 60000)
                for i, (metric, lo_, hi_) in enumerate(limits):
                    v = vals.get(metric)
                    if type(v) is not int:
                        continue
                    band_hits[i][0] += (lo_ is None or v >= lo_) and (hi_ is None or v <= hi_)
                    band_hits[i][1] += 1
        avail_num += min(covered, len(seg_days) * 86400000)
        avail_den += len(seg_days) * 86400000
        gaps = []
        prev = None
        for r in rngs:
            if prev and prev["epoch"] == r["epoch"] and r["from_seq"] > prev["to_seq"] + 1:
                gaps.append({"epoch": r["epoch"], "from_seq": prev["to_seq"] + 1, "to_seq": r["from_seq"] - 1})
            prev = r
        quality.append({"asset": a, "site": s["site"], "from": s["from_"], "to": s["to_"],
                        "days_with_data": len(days), "days_without_data": [d for d in seg_days if d not in days],
                        "records": sum(r["records"] for r in rngs), "gaps": gaps})
    lines = []
    for part, price, lab in _tiered(qty_total, c["tiers"]):
        lines.append({"item": lab, "quantity": billing.quantity(part), "unit": c["unit"], "unit_price": price,
                      "amount": billing._round(part * Fraction(price), rates),
                      "sources": srcs if lab.startswith("usage") and len(lines) == 0 else "the records of the first usage line"})
    months = billing._months(datetime.date.fromisoformat(cf), datetime.date.fromisoformat(ct))
    if c["base_fee"] is not None:
        lines.append({"item": "base fee", "quantity": billing.quantity(months), "unit": "month",
                      "unit_price": c["base_fee"], "amount": billing._round(months * Fraction(c["base_fee"]), rates),
                      "sources": "contract %s term %s..%s" % (cid, c["start"], c["end"])})
    if c["minimum"] is not None:
        floor = billing._round(months * Fraction(c["minimum"]), rates)
        used = sum(x["amount"] for x in lines if x["item"].startswith("usage"))
        if used < floor:
            lines.append({"item": "minimum top-up", "quantity": billing.quantity(months), "unit": "month",
                          "unit_price": c["minimum"], "amount": floor - used,
                          "sources": "usage %s below the minimum %s" % (billing.money(used, rates["minor"]),
                                                                         billing.money(floor, rates["minor"]))})
    gross = sum(x["amount"] for x in lines)
    sv = c["service"]
    if sv["availability"] is not None:
        measured = Fraction(avail_num, avail_den) if avail_den else Fraction(0)
        service.append(_level("availability", sv["availability"], measured, sv["availability_credit"]))
    for b, (hit, n) in zip(sv["bands"], band_hits):
        measured = Fraction(hit, n) if n else None
        service.append(_level(b["name"], b["share"], measured, b["credit"], b))
    for lv in service:
        if not lv["met"] and Fraction(lv["credit"]) > 0:
            amt = billing._round(gross * Fraction(lv["credit"]), {"minor": 0, "rounding": c["rounding"]})
            lines.append({"item": "service credit: %s" % lv["name"], "quantity": "1", "unit": "credit",
                          "unit_price": "-" + lv["credit"], "amount": -amt,
                          "sources": "measured %s against target %s" % (lv["measured"], lv["target"])})
    return {"contract": cid, "customer": c["customer"], "currency": c["currency"], "minor": rates["minor"],
            "rounding": c["rounding"], "period": {"from": lo, "to": hi, "label": label, "billed_from": cf,
                                                  "billed_to": ct},
            "metric": c["metric"], "unit": c["unit"], "quantity": billing.quantity(qty_total),
            "lines": lines, "service_levels": service, "data_quality": quality,
            "total": sum(x["amount"] for x in lines)}


def _level(name, target, measured, credit, band=None):
    met = measured is not None and measured >= Fraction(target)
    out = {"name": name, "target": target, "measured": billing.quantity(measured) if measured is not None
           else "not measured", "met": met, "credit": credit if not met else "0"}
    if band:
        out["band"] = {"metric": band["metric"], "min": band["min"], "max": band["max"]}
    return out


def bills(col, period, by="contract", only=None):
    """Bills for a period, grouped per contract or per customer."""
    data = stored(col)
    first, last, label = period
    lo, hi = first.isoformat(), last.isoformat()
    if not data["contracts"]:
        raise BillingError("the ledger has no contracts: load some with tally contract load FILE")
    if by == "contract":
        ids = [only] if only else sorted(data["contracts"])
        if only and only not in data["contracts"]:
            raise BillingError("no contract %s in the ledger (it has %s)" % (only, ", ".join(sorted(data["contracts"]))))
    else:
        if only and only not in data["customers"]:
            raise BillingError("no customer %s in the ledger (it has %s)" % (only, ", ".join(sorted(data["customers"]))))
        ids = sorted(c for c, v in data["contracts"].items() if only is None or v["customer"] == only)
    live = [c for c in ids if data["contracts"][c]["start"] <= hi and data["contracts"][c]["end"] >= lo]
    if not live:
        first_start = min((data["contracts"][c]["start"] for c in ids), default=None)
        if first_start and hi < first_start:
            raise BillingError("period %s is before contract %s starts (%s)" % (
                label, min(ids, key=lambda c: data["contracts"][c]["start"]), first_start))
        raise BillingError("no contract%s runs in period %s" % (" of customer %s" % only if only else "", label))
    cache = {}
    out = [bill(col, data, c, period, cache) for c in live]
    from agent.collector import pricing          # the reserve accounts accrue when a month is billed
    pricing.post_bills(col, data, out, period)
    groups = {}
    for b in out:
        key = b["contract"] if by == "contract" else b["customer"]
        groups.setdefault(key, []).append(b)
    result = []
    for key, bs in sorted(groups.items()):
        totals = {}
        for b in bs:
            totals[b["currency"]] = totals.get(b["currency"], 0) + b["total"]
        result.append({"by": by, "id": key, "customer": bs[0]["customer"],
                       "name": data["customers"].get(bs[0]["customer"], ""), "bills": bs,
                       "totals": {cur: billing.money(v, billing._MINOR_EXCEPT.get(cur, 2))
                                  for cur, v in sorted(totals.items())}})
    return {"report": CONTRACT_VERSION, "period": {"from": lo, "to": hi, "label": label}, "by": by,
            "groups": result}


def bill_json(b):
    m = b["minor"]
    return dict(b, lines=[dict(x, amount=billing.money(x["amount"], m)) for x in b["lines"]],
                total=billing.money(b["total"], m))


def to_json(rep):
    return dict(rep, groups=[dict(g, bills=[bill_json(b) for b in g["bills"]]) for g in rep["groups"]])


CSV_FIELDS = ("period_from", "period_to", "customer", "contract", "item", "quantity", "unit", "unit_price",
              "amount", "currency", "sources")


def _src_text(s):
    if isinstance(s, str):
        return s
    return "; ".join("%s e%08x seq %d..%d (%d rec, %s)" % (x["asset"], x["epoch"], x["from_seq"], x["to_seq"],
                                                           x["records"], x["quantity"]) for x in s)


def render(rep, fmt):
    import csv
    import io
    if fmt == "json":
        return json.dumps(to_json(rep), indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_FIELDS)
        for g in rep["groups"]:
            for b in g["bills"]:
                for x in b["lines"]:
                    w.writerow([billing.csv_cell(str(v)) for v in (
                        rep["period"]["from"], rep["period"]["to"], b["customer"], b["contract"], x["item"],
                        x["quantity"], x["unit"], x["unit_price"], billing.money(x["amount"], b["minor"]),
                        b["currency"], _src_text(x["sources"]))])
        return buf.getvalue()
    out = ["Tally bills by %s, period %s .. %s" % (rep["by"], rep["period"]["from"], rep["period"]["to"]), ""]
    for g in rep["groups"]:
        out.append("%s %s (%s)" % (rep["by"], g["id"], g["name"]))
        for b in g["bills"]:
            m = b["minor"]
            out.append("  contract %s, customer %s, billed %s..%s, %s" % (
                b["contract"], b["customer"], b["period"]["billed_from"], b["period"]["billed_to"], b["currency"]))
            for x in b["lines"]:
                out.append("    %-40s %14s %-6s x %-10s = %12s" % (x["item"], x["quantity"], x["unit"],
                                                                 x["unit_price"], billing.money(x["amount"], m)))
                src = x["sources"]
                if isinstance(src, list):
                    for s in src[:20]:
                        out.append("        from %s epoch %08x seq %d..%d (%d records) %s"
                                   % (s["asset"], s["epoch"], s["from_seq"], s["to_seq"], s["records"], s["quantity"]))
                    if len(src) > 20:
                        out.append("        ... %d more record ranges (see --format json)" % (len(src) - 20))
            out.append("    %-40s %55s" % ("total", billing.money(b["total"], m)))
            for lv in b["service_levels"]:
                out.append("    service level %s: target %s, measured %s: %s" % (
                    lv["name"], lv["target"], lv["measured"], "met" if lv["met"] else "MISSED, credit %s" % lv["credit"]))
            for r in b.get("reserve", []):
                out.append("    reserve %s: accrued %s, drawn %s, balance %s %s" % (
                    r["asset"], r["accrued"], r["drawn"], r["balance"], r["currency"] or ""))
                for e in r["entries"]:
                    if e["kind"].startswith("draw"):
                        out.append("        drawn %s on %s: %s (%s)" % (e["amount"].lstrip("-"), e["day"], e["ref"],
                                                                       e["basis"]["cost_from"]))
                    elif e["version"] > 1:
                        out.append("        adjustment v%d %s: %s" % (e["version"], e["amount"],
                                                                   e["basis"]["adjusts"]["why"]))
            for q in b["data_quality"]:
                miss = q["days_without_data"]
                out.append("    data: %s at %s %s..%s: %d records, data on %d day(s)%s%s" % (
                    q["asset"], q["site"], q["from"], q["to"], q["records"], q["days_with_data"],
                    "; none on " + billing._spans(miss) if miss else "",
                    "; gaps " + ", ".join("seq %d..%d" % (x["from_seq"], x["to_seq"]) for x in q["gaps"][:5])
                    if q["gaps"] else ""))
        out.append("  totals: " + ", ".join("%s %s" % (v, k) for k, v in g["totals"].items()))
        out.append("")
    return "\n".join(billing.clean(x) for x in out) + "\n"


def listing(col):
    d = stored(col)
    out = []
    for cid, c in sorted(d["contracts"].items()):
        price = ", ".join("%s%s" % (t["price"], " up to %s" % t["upto"] if t["upto"] else "") for t in c["tiers"])
        out.append("contract %s  customer %s  %s..%s  %s per %s of %s (%s)%s" % (
            cid, c["customer"], c["start"], c["end"], c["currency"], c["unit"], c["metric"], price,
            "  base fee %s/month" % c["base_fee"] if c["base_fee"] else ""))
        for a in d["assignments"]:
            if a["contract"] == cid:
                out.append("  asset %s at site %s from %s to %s" % (a["asset"], a["site"], a["from"], a["to"]))
    if not out:
        out.append("no contracts in the ledger")
    return "\n".join(billing.clean(x) for x in out) + "\n"
