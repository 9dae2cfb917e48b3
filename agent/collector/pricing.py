"""`tally price`: a proposed price per outcome unit for a contract, every
term shown, and the maintenance reserve account of each asset (CPython,
collector; CIRCULAR.md §7, docs/contracts.md "Pricing").

    p_unit = e*c_e + reserve_P50 + (K - RV)/N_life + c_svc + r + m

e        metered energy per outcome unit over the window (the contract's
         `energy` odometer / its `metric` odometer, summed over its assets);
c_e      the contract's pricing.tariff per kWh;
reserve  sum over components j of cost_j x life used per unit_j, where life
         used per unit is (the component's life metric per outcome unit) /
         its rated life. The rated life is read as B10 (L10); the P50
         reserve uses the median asset and the Weibull median life
         L50 = L10 (ln 2 / -ln 0.9)^(1/beta); the P90 reserve the 90th
         percentile asset at L10;
r        the risk margin: reserve_P90 - reserve_P50 (so reserve + r is the
         P90 reserve of CIRCULAR.md's formula, counted once);
K - RV   pricing.capital less pricing.residual, over pricing.lifetime_units;
c_svc    pricing.service_per_unit;
m        pricing.margin x the sum of the terms above.

Life used comes from ONE function, life_used(); today it reads
the rated life of the components listed in the contract. agent/collector/life (the
component ledger and its damage models) plugs in there: it returns the
same shape with source "life model".

Usage over a window is read from the odometers by wall time (the last record
that starts before the window's end, less the last before its start, per
epoch): fast enough for a thousand assets; the bills use the exact
day-placed record walk instead.
"""
import calendar
import datetime
import json
import math
from fractions import Fraction

from agent.collector import billing, contracts
from agent.collector.billing import BillingError

PRICE_VERSION = "tally.price.v1"
PLACES = 6              # terms are shown to this many decimals (exact fractions behind them)
_L50_OVER_L10 = None


def _t(day):
    return calendar.timegm(datetime.date.fromisoformat(day).timetuple())


class Usage:
    """Window usage of assets, in each odometer's own unit (scale applied),
    from the ledger's records by wall time."""

    def __init__(self, col):
        self.col = col
        self.schemas = {}

    def _schema(self, asset, sid):
        k = (asset, sid)
        if k not in self.schemas:
            row = self.col._b.execute("SELECT metrics FROM schemas WHERE device_id=? AND schema_id=?",
                                      (asset, sid)).fetchone()
            self.schemas[k] = json.loads(row[0]) if row else []
        return self.schemas[k]

    def _ends(self, asset, t):
        x = self.col._b.execute
        out = {}
        for epoch, seq in x("SELECT epoch, MAX(seq) FROM records WHERE device_id=? AND wall_s < ? GROUP BY epoch",
                            (asset, t)).fetchall():
            sid, vals = x("SELECT schema_id, vals FROM records WHERE device_id=? AND epoch=? AND seq=?",
                          (asset, epoch, seq)).fetchone()
            out[epoch] = {m[0]: Fraction(v) * Fraction(10) ** m[2]
                          for m, v in zip(self._schema(asset, sid), json.loads(vals)) if m[3] == "odometer"}
        return out

    def window(self, asset, lo_day, hi_day):
        """{odometer: usage} from the start of lo_day to the end of hi_day, and
        {odometer: unit}."""
        end = self._ends(asset, _t(hi_day) + 86400)
        start = self._ends(asset, _t(lo_day))
        use, units = {}, {}
        for epoch, vals in end.items():
            base = start.get(epoch, {})
            for k, v in vals.items():
                use[k] = use.get(k, 0) + max(v - base.get(k, 0), 0)
        for sid, in self.col._b.execute("SELECT DISTINCT schema_id FROM records WHERE device_id=?", (asset,)):
            for m in self._schema(asset, sid):
                units[m[0]] = m[1]
        return use, units


def _pct(xs, q):
    """The q-quantile (0..1) of a list of Fractions, nearest rank."""
    xs = sorted(xs)
    if not xs:
        return Fraction(0)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def l50_over_l10(beta):
    """Weibull: median life over B10 life for slope beta (a float ratio as an
    exact Fraction to 9 places; it multiplies a reserve, not the ledger)."""
    r = (math.log(2) / -math.log(0.9)) ** (1 / float(beta))
    return Fraction(round(r * 10 ** 9), 10 ** 9)


def life_used(contract, asset, use, units, lo, hi):
    """THE plug-in point for agent/collector/life (the one place pricing and the
    reserve learn how much life an asset's components used).

    contract: the stored contract (its "components": name, cost, rated_life,
    life_metric, life_unit, beta); asset and the days lo..hi of the window;
    use: {odometer: usage over the window, in the odometer's unit}; units:
    {odometer: unit}. Returns [{name, cost, rated_life, life_unit, beta,
    used, source}] with `used` the share of one rated life consumed in the
    window (a Fraction). Today: life metric usage / rated life, from the
    contract file. agent/collector/life replaces the body with its damage D per
    component of the asset over lo..hi (component ledger, models, P50), with
    source "life model", and falls back to this where it has no model."""
    out = []
    for comp in contract["components"]:
        lm = comp["life_metric"]
        lu = comp.get("life_unit") or units.get(lm)
        fac = Fraction(1)
        if lm in units and lu and lu != units[lm]:
            fac = contracts.factor(lu, units[lm], "contracts.%s.components.%s.life_unit" % (contract["id"], comp["name"]),
                                  lm, "contract %s: " % contract["id"], asset)
        out.append({"name": comp["name"], "cost": comp["cost"], "rated_life": comp["rated_life"], "life_unit": lu,
                    "beta": comp["beta"], "used": use.get(lm, 0) * fac / Fraction(comp["rated_life"]),
                    "source": "rated life (contract)"})
    return out


def life_per_unit(contract, per_asset, units, windows):
    """Per component: {name, cost, rated_life, life_unit, beta, source,
    per_asset: {asset: life used per outcome unit}} from life_used().
    per_asset: {asset: {odometer: usage}} (the outcome metric already in the
    contract's unit); windows: {asset: (lo, hi)}."""
    out = {}
    for a, use in per_asset.items():
        q = use.get(contract["metric"], 0)
        for comp in life_used(contract, a, use, units, *windows[a]):
            e = out.get(comp["name"])
            if e is None:
                e = out[comp["name"]] = {k: v for k, v in comp.items() if k != "used"}
                e["per_asset"] = {}
            if q > 0:
                e["per_asset"][a] = comp["used"] / q
    if not per_asset:
        return [dict({k: v for k, v in c.items() if k != "used"}, per_asset={})
                for c in life_used(contract, None, {}, units, None, None)]
    return list(out.values())


def _show(x, places=PLACES):
    return billing.quantity(Fraction(round(x * 10 ** places), 10 ** places)) if x is not None else None


LIFE_PLACES = 12        # life used per unit is a small share of one rated life


def assets_of(data, cid, lo, hi):
    return contracts.segments(data, cid, lo, hi)


def propose(col, cid, period=None):
    """The price proposal of a contract as a dict (every term)."""
    data = contracts.stored(col)
    if cid not in data["contracts"]:
        raise BillingError("no contract %s in the ledger (it has %s)" % (cid, ", ".join(sorted(data["contracts"]))
                                                                         or "none"))
    c = data["contracts"][cid]
    p = c["pricing"]
    for k in ("tariff", "capital", "lifetime_units"):
        if k not in p:
            raise BillingError("contract %s: key 'contracts.%s.pricing.%s' is needed to price it" % (cid, cid, k))
    lo, hi = (period[0].isoformat(), period[1].isoformat()) if period else (c["start"], c["end"])
    if hi < c["start"]:
        raise BillingError("period %s is before contract %s starts (%s)" % (period[2], cid, c["start"]))
    u = Usage(col)
    per_asset, units, windows = {}, {}, {}
    for s in assets_of(data, cid, lo, hi):
        use, un = u.window(s["asset"], s["from_"], s["to_"])
        w = windows.get(s["asset"])
        windows[s["asset"]] = (min(w[0], s["from_"]), max(w[1], s["to_"])) if w else (s["from_"], s["to_"])
        units.update(un)
        acc = per_asset.setdefault(s["asset"], {})
        for k, v in use.items():
            acc[k] = acc.get(k, 0) + v
    if not per_asset:
        raise BillingError("contract %s has no assets assigned in %s..%s" % (cid, lo, hi))
    mu = units.get(c["metric"])
    if mu is None:
        raise BillingError("contract %s prices metric '%s', which none of its assets has" % (cid, c["metric"]))
    to_unit = contracts.factor(c["unit"], mu, "contracts.%s.unit" % cid, c["metric"], "contract %s: " % cid, "")
    for a in per_asset:                    # outcome units in the contract's unit
        per_asset[a] = dict(per_asset[a], **{c["metric"]: per_asset[a].get(c["metric"], 0) * to_unit})
    units = dict(units, **{c["metric"]: c["unit"]})
    total_units = sum(v.get(c["metric"], 0) for v in per_asset.values())
    if total_units <= 0:
        raise BillingError("contract %s: its assets delivered no %s in %s..%s, so no price per unit can be "
                           "derived" % (cid, c["metric"], lo, hi))
    eu = units.get(c["energy"])
    kwh = Fraction(0)
    if eu is not None:
        kwh = sum(v.get(c["energy"], 0) for v in per_asset.values()) * contracts.factor(
            "kWh", eu, "contracts.%s.energy" % cid, c["energy"], "contract %s: " % cid, "")
    e = kwh / total_units
    terms = []

    def term(key, what, value, how):
        terms.append({"term": key, "what": what, "per_unit": value, "how": how})
        return value

    energy = term("energy", "metered energy x tariff", e * Fraction(p["tariff"]),
                  "%s kWh / %s %s = %s kWh per %s, x %s %s/kWh" % (_show(kwh), _show(total_units), c["unit"],
                                                                  _show(e), c["unit"], p["tariff"], c["currency"]))
    comps = life_per_unit(c, per_asset, units, windows)
    r50 = r90 = Fraction(0)
    detail = []
    for comp in comps:
        vals = list(comp["per_asset"].values())
        k = l50_over_l10(comp["beta"])
        u50 = _pct(vals, 0.5) / k
        u90 = _pct(vals, 0.9)
        r50 += Fraction(comp["cost"]) * u50
        r90 += Fraction(comp["cost"]) * u90
        detail.append({"component": comp["name"], "cost": comp["cost"], "rated_life": comp["rated_life"],
                       "life_unit": comp["life_unit"], "beta": comp["beta"], "source": comp["source"],
                       "life_used_per_unit_p50": _show(u50, LIFE_PLACES),
                       "life_used_per_unit_p90": _show(u90, LIFE_PLACES),
                       "reserve_per_unit_p50": _show(Fraction(comp["cost"]) * u50),
                       "reserve_per_unit_p90": _show(Fraction(comp["cost"]) * u90)})
    reserve = term("maintenance_reserve", "sum of component cost x life used per unit (P50)", r50,
                   "; ".join("%s: %s x %s" % (d["component"], d["cost"], d["life_used_per_unit_p50"])
                             for d in detail) or "no components listed")
    cap = term("capital", "capital less residual value over expected lifetime units",
               (Fraction(p["capital"]) - Fraction(p.get("residual", "0"))) / Fraction(p["lifetime_units"]),
               "(%s - %s) / %s %s" % (p["capital"], p.get("residual", "0"), p["lifetime_units"], c["unit"]))
    svc = term("service", "service cost per unit", Fraction(p.get("service_per_unit", "0")),
               "pricing.service_per_unit")
    risk = term("risk", "P90 less P50 maintenance reserve", r90 - r50,
                "%s - %s" % (_show(r90), _show(r50)))
    sub = energy + reserve + cap + svc + risk
    margin = term("margin", "margin on the terms above", sub * Fraction(p.get("margin", "0")),
                  "%s x %s" % (p.get("margin", "0"), _show(sub)))
    price = sub + margin
    places = billing._MINOR_EXCEPT.get(c["currency"], 2) + 2
    proposed = Fraction(math.ceil(price * 10 ** places), 10 ** places)
    for t in terms:
        t["per_unit"] = _show(t["per_unit"])
    current = c["tiers"][0]["price"]
    return {"report": PRICE_VERSION, "contract": cid, "customer": c["customer"], "currency": c["currency"],
            "unit": c["unit"], "metric": c["metric"], "window": {"from": lo, "to": hi}, "assets": len(per_asset),
            "units": _show(total_units), "energy_kwh": _show(kwh), "terms": terms, "components": detail,
            "exact_price_per_unit": _show(price),
            "proposed_price_per_unit": billing.quantity(proposed) if proposed else "0",
            "rounded": "up to %d decimals" % places, "current_price_per_unit": current}


def render(rep, fmt):
    if fmt == "json":
        return json.dumps(rep, indent=1, sort_keys=True, ensure_ascii=True) + "\n"
    out = ["Price proposal for contract %s (customer %s), %s per %s of %s" % (
        rep["contract"], rep["customer"], rep["currency"], rep["unit"], rep["metric"]),
        "window %s..%s, %d assets, %s %s delivered, %s kWh metered" % (
            rep["window"]["from"], rep["window"]["to"], rep["assets"], rep["units"], rep["unit"], rep["energy_kwh"]),
        ""]
    for t in rep["terms"]:
        out.append("  %-20s %14s  %s" % (t["term"], t["per_unit"], t["what"]))
        out.append("  %-20s %14s  = %s" % ("", "", t["how"]))
    out.append("  %-20s %14s  (exact)" % ("price per unit", rep["exact_price_per_unit"]))
    out.append("  %-20s %14s  (rounded %s; current price %s)" % (
        "proposed", rep["proposed_price_per_unit"], rep["rounded"], rep["current_price_per_unit"]))
    if rep["components"]:
        out += ["", "components (life used per unit is a fraction of one rated life):"]
        for d in rep["components"]:
            out.append("  %s: cost %s, rated life %s %s (beta %s, %s); life/unit P50 %s P90 %s" % (
                d["component"], d["cost"], d["rated_life"], d["life_unit"], d["beta"], d["source"],
                d["life_used_per_unit_p50"], d["life_used_per_unit_p90"]))
    return "\n".join(billing.clean(x) for x in out) + "\n"


def _months_between(lo, hi):
    a = datetime.date.fromisoformat(lo).replace(day=1)
    b = datetime.date.fromisoformat(hi)
    while a <= b:
        last = a.replace(day=calendar.monthrange(a.year, a.month)[1])
        yield a, last
        a = last + datetime.timedelta(days=1)


def reserve(col, data, asset, upto, usage=None):
    """The maintenance reserve account of one asset up to the day `upto`:
    one accrual per billing month (sum of component cost x life used that
    month under the contract it was in) and a draw per recorded repair.
    Amounts in integer minor units of the contract's currency."""
    usage = usage or Usage(col)
    rows, bal = [], 0
    cur = None
    for a in data["assignments"]:
        if a["asset"] != asset or a["from"] > upto:
            continue
        c = data["contracts"][a["contract"]]
        cur = c["currency"]
        rates = {"minor": billing._MINOR_EXCEPT.get(cur, 2), "rounding": c["rounding"]}
        for m0, m1 in _months_between(a["from"], min(a["to"], upto)):
            f, t = max(m0.isoformat(), a["from"]), min(m1.isoformat(), a["to"], upto)
            use, units = usage.window(asset, f, t)
            life = life_used(c, asset, use, units, f, t)
            acc = sum((Fraction(x["cost"]) * x["used"] for x in life), Fraction(0))
            life = [{"component": x["name"], "life_used": _show(x["used"], LIFE_PLACES)} for x in life]
            amt = billing._round(acc, rates)
            draws = [r for r in data["repairs"] if r["asset"] == asset and f <= r["day"] <= t]
            drawn = sum(billing._round(Fraction(r["cost"]), rates) for r in draws)
            bal += amt - drawn
            rows.append({"month": m0.strftime("%Y-%m"), "contract": c["id"], "from": f, "to": t,
                         "life_used": life, "accrued": amt, "drawn": drawn,
                         "repairs": draws, "balance": bal, "minor": rates["minor"]})
    return {"asset": asset, "currency": cur, "months": rows, "balance": bal}
