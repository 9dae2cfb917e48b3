"""`tally price`: a proposed price per outcome unit for a contract, every
term shown, and the maintenance reserve account of each asset, stored in
the ledger (CPython, collector; CIRCULAR.md §7, docs/contracts.md
"Pricing" and "The reserve account").

    p_unit = e*c_e + reserve_P50 + (K - RV)/N_life + c_svc + r + m

e        metered energy per outcome unit over the window (the contract's
         `energy` odometer / its `metric` odometer, summed over its assets);
c_e      the contract's pricing.tariff per kWh;
reserve  sum over components j of C_j x (life used per unit)_j. Life used
         comes from life_used(): the damage D of each part of the asset
         over the window from the life models (agent/collector/life: the
         component ledger's installation segments, the part's card, D P50
         and P90 over the card's parameter uncertainty), or, for a
         contract component no card rates, its usage / the contract's
         rated life (B10; its P50 uses the Weibull median life
         L50 = L10 (ln 2 / -ln 0.9)^(1/beta)). reserve_P50 takes the median
         asset's P50, reserve_P90 the 90th percentile asset's P90;
r        the risk margin: reserve_P90 - reserve_P50 (so reserve + r is the
         P90 reserve of CIRCULAR.md's formula, counted once);
K - RV   pricing.capital less the residual value over pricing.lifetime_units;
         RV is the mean over the assets of the life model's value at the end
         of the term (residual_value(): core damage and the next-use option,
         remanufacture against harvest and scrap) where a card rates a core
         part, else pricing.residual;
c_svc    pricing.service_per_unit;
m        pricing.margin x the sum of the terms above.

The reserve account (table reserve_entries, owned here) accrues
sum C_j x D_j (P50) per asset and billing month when a bill or statement
for the month is made (post()), once: a re-run that finds the same basis
writes nothing, one that finds another (a card changed, late records) adds
a new version holding the difference. Recorded repairs draw it: operator
repair records (`tally event add --kind repair`), part swaps in part_events
(a part removed and another installed in its slot, costed from its card or
the contract) and the contract file's [[repairs]] (table repairs).

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
        self.memo = {}                   # (asset, lo, hi) -> window(): a bill run asks the same window again

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
        k = (asset, lo_day, hi_day)
        if k not in self.memo:
            self.memo[k] = self._window(asset, lo_day, hi_day)
        use, units = self.memo[k]
        return dict(use), dict(units)

    def _window(self, asset, lo_day, hi_day):
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


def life_context(col, cards_dir=None, config=None, day_totals=None):
    """The life models' view of the ledger (agent/collector/life/economics.py),
    read once per price, bill run or statement; a bad card or config is one
    line (BillingError). day_totals: see economics.Context."""
    from agent.collector.life import cards as cardmod
    from agent.collector.life import economics, rules
    try:
        return economics.Context(col, cards_dir, config, day_totals)
    except (cardmod.CardError, rules.ConfigError) as e:
        raise BillingError(str(e))


def _g(x):
    """A model's float for display and the reserve's basis: 12 significant digits."""
    return format(float(x), ".12g")


def _fx(x):
    """A model's float as an exact Fraction of its shortest repr."""
    return Fraction(repr(float(x)))


def _matches(name, part):
    """A contract component `name` rates the ledger part when the part's
    card type or its id is the name or starts with name + "-"."""
    for s in (part.get("type") or "", part["component"]):
        if s == name or s.startswith(name + "-"):
            return True
    return False


def _card_cost(contract, part):
    """(the card's cost.part + cost.labour as a decimal string, None) or
    (None, why it cannot be used under this contract)."""
    cost = part["cost"]
    if cost is None:
        return None, "card %s gives no cost" % part["card"]
    if cost.get("currency") and cost["currency"] != contract["currency"]:
        return None, ("card %s prices the part in %s, contract %s is in %s: not reserved; give its cost in the "
                      "contract ([[contracts.%s.components]] name = '%s')" % (
                          part["card"], cost["currency"], contract["id"], contract["currency"], contract["id"],
                          part["type"]))
    return billing.quantity(Fraction(cost["amount"])), None


def life_used(contract, asset, use, units, lo, hi, ctx=None):
    """THE plug-in point of the life models (the one place pricing and the
    reserve learn how much life an asset's components used over the days
    lo..hi).

    contract: the stored contract (its "components": name, cost,
    rated_life, life_metric, life_unit, beta); use: {odometer: usage over
    the window, in the odometer's unit}; units: {odometer: unit}; ctx: a
    life_context() (None: no life models, the contract's rated life only).

    Returns [{name, cost, rated_life, life_unit, beta, model, used,
    used_p90, source, parts}] with `used` (P50) and `used_p90` the share of
    one rated life consumed in the window (Fractions):
    - every part the component ledger had in the asset during lo..hi
      (segments split at swaps and moves) that a life card rates: its
      damage D P50/P90 over the window, source "life model <card>@<version>";
      grouped under the contract component whose name matches its card type
      or id (the contract's cost), else under its card type (the card's
      cost.part + cost.labour);
    - every contract component that no rated part matches: life metric
      usage / rated life, source "rated life (contract): no life card rates
      a <name> part", used_p90 = used (the spread comes from the assets)."""
    parts = []
    if ctx is not None and asset:
        from agent.collector.life.economics import day_s
        parts = [p for p in ctx.window_damage(asset, day_s(lo), day_s(hi, True)) if p["D_P50"] is not None]
    out, taken = [], set()

    def model_row(name, cost, ps, why):
        cards = sorted({p["card"] for p in ps})
        return {"name": name, "cost": cost, "rated_life": None, "life_unit": None, "beta": None, "model": True,
                "used": sum((_fx(p["D_P50"]) for p in ps), Fraction(0)),
                "used_p90": sum((_fx(p["D_P90"]) for p in ps), Fraction(0)),
                "source": "life model %s%s" % (", ".join(cards), why),
                "parts": [{"component": p["component"], "card": p["card"], "D_P50": _g(p["D_P50"]),
                           "D_P90": _g(p["D_P90"])} for p in ps]}

    for comp in contract["components"]:
        mine = [p for p in parts if _matches(comp["name"], p)]
        if mine:
            taken.update(p["component"] for p in mine)
            out.append(model_row(comp["name"], comp["cost"], mine, " (cost from the contract)"))
            continue
        lm = comp["life_metric"]
        lu = comp.get("life_unit") or units.get(lm)
        fac = Fraction(1)
        if lm in units and lu and lu != units[lm]:
            fac = contracts.factor(lu, units[lm], "contracts.%s.components.%s.life_unit" % (contract["id"], comp["name"]),
                                  lm, "contract %s: " % contract["id"], asset)
        used = use.get(lm, 0) * fac / Fraction(comp["rated_life"])
        out.append({"name": comp["name"], "cost": comp["cost"], "rated_life": comp["rated_life"], "life_unit": lu,
                    "beta": comp["beta"], "model": False, "used": used, "used_p90": used,
                    "source": "rated life (contract)" + (": no life card rates a %s part" % comp["name"]
                                                         if ctx is not None else ""), "parts": []})
    by_type = {}
    for p in parts:
        if p["component"] not in taken:
            by_type.setdefault(p["type"], []).append(p)
    for typ, ps in sorted(by_type.items()):
        cost, why = _card_cost(contract, ps[0])
        out.append(model_row(typ, cost or "0", ps, " (cost from the card: part + labour)" if cost else
                             " (%s)" % why))
    return out


def life_per_unit(contract, per_asset, units, windows, ctx=None):
    """Per component: {name, cost, rated_life, life_unit, beta, model,
    source, per_asset: {asset: life used per outcome unit, P50},
    per_asset_p90: {...}} from life_used(). per_asset: {asset: {odometer:
    usage}} (the outcome metric already in the contract's unit); windows:
    {asset: (lo, hi)}."""
    out = {}
    for a, use in per_asset.items():
        q = use.get(contract["metric"], 0)
        for comp in life_used(contract, a, use, units, *windows[a], ctx=ctx):
            e = out.get(comp["name"])
            if e is None:
                e = out[comp["name"]] = {k: v for k, v in comp.items() if k not in ("used", "used_p90", "parts",
                                                                                   "source")}
                e.update(per_asset={}, per_asset_p90={}, sources=set())
            e["sources"].add(comp["source"])
            if comp["model"]:
                e["model"] = True
            if q > 0:
                e["per_asset"][a] = comp["used"] / q
                e["per_asset_p90"][a] = comp["used_p90"] / q
    for e in out.values():
        e["source"] = "; ".join(sorted(e.pop("sources")))
    return list(out.values())


def _show(x, places=PLACES):
    return billing.quantity(Fraction(round(x * 10 ** places), 10 ** places)) if x is not None else None


LIFE_PLACES = 12        # life used per unit is a small share of one rated life


def assets_of(data, cid, lo, hi):
    return contracts.segments(data, cid, lo, hi)


def _days_between(a, b):
    return (datetime.date.fromisoformat(b) - datetime.date.fromisoformat(a)).days


# -- residual value and planned maintenance from the life models -----------------------

def rates_of(rows, lo, hi, asof):
    """{component: D_P90 per day} of the parts in life_used() rows over the
    days lo..min(hi, asof) (the days the window had data up to)."""
    end = min(hi, asof) if asof else hi
    days = max(_days_between(lo, end) + 1, 1)
    out = {}
    for r in rows:
        for p in r["parts"]:
            out[p["component"]] = out.get(p["component"], 0) + Fraction(p["D_P90"]) / days
    return out


def residual_value(ctx, contract, asset, asof, rates):
    """The asset's value at the end of the contract's term from the life
    models and the next-use option (CIRCULAR.md §6 R5-R7, §7), or None
    where no card rates a core part in it.

    Each part in the asset now: D_P90 at the end of the term = its damage
    so far (all its segments) + its damage rate over the window (rates) x
    the days from `asof` to the end of the term, capped at 1. K =
    pricing.capital, else the core card's cost.new_asset.
    - remanufacture (R5), when the core's D_P90 at the end < the rule
      table's core_max: K x (1 - D_core) less restoring the wear parts,
      sum of their cost x min(D, 1);
    - harvest (R6) and recycle (R7): pricing.residual (scrap and material)
      plus the card part cost of each wear part with D_P90 < harvest_max.
    RV is the better of the two; every input is returned."""
    th = ctx.cfg["thresholds"]
    days_left = max(_days_between(asof, contract["end"]), 0)
    parts = []
    for comp in sorted(ctx.installed(asset)):
        tot = ctx.total(comp)
        if tot["D_P90"] is None:
            continue
        card = ctx.card(comp)
        rate = rates.get(comp, Fraction(0))
        d_now = _fx(tot["D_P90"])
        d_end = min(d_now + rate * days_left, Fraction(1))
        row = {"component": comp, "card": tot["card"], "type": card["type"], "core": bool(card["core"])}
        named = [c for c in contract["components"] if _matches(c["name"], dict(row, component=comp))]
        cc = (card.get("cost") or {})
        cost = Fraction(named[0]["cost"]) if named else Fraction(repr(float(cc.get("part", 0)) +
                                                                      float(cc.get("labour", 0))))
        row.update({"D_P90_now": _g(d_now), "D_P90_per_day": _g(rate), "D_P90_end": _g(d_end),
                    "cost": billing.quantity(cost), "_d": d_end, "_cost": cost,
                    "_part": Fraction(repr(float(cc.get("part", 0)))), "new_asset": cc.get("new_asset")})
        parts.append(row)
    core = [p for p in parts if p["core"]]
    if not core:
        return None
    p = contract["pricing"]
    if "capital" in p:
        K, k_src = Fraction(p["capital"]), "pricing.capital"
    else:
        na = [c["new_asset"] for c in core if c["new_asset"]]
        if not na:
            return None
        K, k_src = Fraction(repr(float(na[0]))), "card %s cost.new_asset" % core[0]["card"]
    d_core = max(c["_d"] for c in core)
    wear = [w for w in parts if not w["core"]]
    restore = sum((w["_cost"] * min(w["_d"], Fraction(1)) for w in wear), Fraction(0))
    scrap = Fraction(p.get("residual", "0"))
    spares = [w for w in wear if w["_d"] < _fx(th["harvest_max"])]
    harvest = scrap + sum((w["_part"] for w in spares), Fraction(0))
    reman = K * (1 - d_core) - restore if d_core < _fx(th["core_max"]) else None
    if reman is not None and reman >= harvest:
        value, option = reman, ("remanufacture (R5): core D_P90 %s at the end of the term < %s; K x (1 - D_core) "
                                "less restoring the wear parts" % (_show(d_core, 3), th["core_max"]))
    else:
        value, option = harvest, ("harvest parts (R6) and recycle (R7): %s" % (
            "core D_P90 %s at the end of the term >= %s" % (_show(d_core, 3), th["core_max"]) if reman is None
            else "worth more than remanufacturing (%s)" % _show(reman, 2)))
    for x in parts:
        for k in ("_d", "_cost", "_part", "new_asset"):
            x.pop(k)
    return {"value": max(value, Fraction(0)), "option": option, "K": _show(K, 2), "K_from": k_src,
            "D_core_P90_end": _show(d_core, 6), "core_max": th["core_max"], "harvest_max": th["harvest_max"],
            "restore_wear_parts": _show(restore, 2), "reman_value": _show(reman, 2) if reman is not None else None,
            "harvest_value": _show(harvest, 2), "scrap": _show(scrap, 2), "spares": [w["component"] for w in spares],
            "as_of": asof, "term_end": contract["end"], "days_left": days_left, "parts": parts,
            "source": "life model %s" % ", ".join(sorted({x["card"] for x in parts}))}


def planned_maintenance(ctx, contract, asset, asof, rates, decision=None):
    """Parts of the asset whose D_P90 reaches the rule table's pm_warning
    (0.8, the card's WarningValue) before the end of the term, with the
    projected day at the current damage rate, and the R1 line of the
    asset's rule trace."""
    warn = _fx(ctx.cfg["thresholds"]["pm_warning"])
    out = []
    r1 = None
    if decision:
        r1 = next((t for t in decision["trace"] if t["rule"] == "R1"), None)
    for comp in sorted(ctx.installed(asset)):
        tot = ctx.total(comp)
        if tot["D_P90"] is None:
            continue
        d = _fx(tot["D_P90"])
        rate = rates.get(comp, Fraction(0))
        if d >= warn:
            day, why = asof, "D_P90 %s already at or above %s" % (_show(d, 3), _show(warn))
        elif rate > 0:
            n = math.ceil((warn - d) / rate)
            day = (datetime.date.fromisoformat(asof) + datetime.timedelta(days=n)).isoformat()
            if day > contract["end"]:
                continue
            why = "D_P90 %s + %s per day reaches %s in %d days" % (_show(d, 3), _show(rate, 6), _show(warn), n)
        else:
            continue
        out.append({"asset": asset, "component": comp, "card": tot["card"], "D_P90": _show(d, 6), "due": day,
                    "action": "replace before %s (preventive maintenance at D_P90 %s)" % (day, _show(warn)),
                    "why": why, "rule": ("%s %s: %s" % (r1["rule"], r1["decision"], r1["because"])) if r1 else None})
    return out


# -- the price --------------------------------------------------------------------------

def propose(col, cid, period=None, ctx=None):
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
    ctx = ctx or life_context(col)
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
    from agent.collector.life.economics import day_s
    ctx.prefetch([(a, day_s(f), day_s(t, True)) for a, (f, t) in windows.items()])
    comps = life_per_unit(c, per_asset, units, windows, ctx)
    r50 = r90 = Fraction(0)
    detail = []
    for comp in comps:
        k = l50_over_l10(comp["beta"]) if not comp["model"] else Fraction(1)
        u50 = _pct(list(comp["per_asset"].values()), 0.5) / k
        u90 = _pct(list(comp["per_asset_p90"].values()), 0.9)
        r50 += Fraction(comp["cost"]) * u50
        r90 += Fraction(comp["cost"]) * u90
        detail.append({"component": comp["name"], "cost": comp["cost"], "rated_life": comp["rated_life"],
                       "life_unit": comp["life_unit"], "beta": comp["beta"], "source": comp["source"],
                       "assets": len(comp["per_asset"]),
                       "life_used_per_unit_p50": _show(u50, LIFE_PLACES),
                       "life_used_per_unit_p90": _show(u90, LIFE_PLACES),
                       "reserve_per_unit_p50": _show(Fraction(comp["cost"]) * u50),
                       "reserve_per_unit_p90": _show(Fraction(comp["cost"]) * u90)})
    reserve_t = term("maintenance_reserve", "sum of component cost x life used per unit (P50)", r50,
                     "; ".join("%s: %s x %s" % (d["component"], d["cost"], d["life_used_per_unit_p50"])
                               for d in detail) or "no components listed")
    # residual value at the end of the term, per asset, from the life models where a card rates a core part
    rvs, rv_rows = [], []
    if ctx.ledger.segs:
        ctx.prefetch_totals([comp for a in windows for comp in sorted(ctx.installed(a))])
        for a, (f, t) in sorted(windows.items()):
            asof = min(t, ctx.newest_day(a) or t)
            rows = life_used(c, a, per_asset[a], units, f, t, ctx=ctx)
            rv = residual_value(ctx, c, a, asof, rates_of(rows, f, t, asof))
            if rv is not None:
                rvs.append(rv["value"])
                rv_rows.append(dict(rv, asset=a, value=_show(rv["value"], 2)))
    if rvs:
        RV = sum(rvs) / len(rvs)
        n_fb = len(per_asset) - len(rvs)
        RV = (sum(rvs) + Fraction(p.get("residual", "0")) * n_fb) / len(per_asset)
        rv_how = "mean of %d asset(s) valued by the life models%s" % (
            len(rvs), " and %d at pricing.residual %s" % (n_fb, p.get("residual", "0")) if n_fb else "")
    else:
        RV = Fraction(p.get("residual", "0"))
        rv_how = "pricing.residual (no card rates a core part of these assets)"
    cap = term("capital", "capital less residual value over expected lifetime units",
               (Fraction(p["capital"]) - RV) / Fraction(p["lifetime_units"]),
               "(%s - %s) / %s %s; residual value: %s" % (p["capital"], _show(RV, 2), p["lifetime_units"], c["unit"],
                                                          rv_how))
    svc = term("service", "service cost per unit", Fraction(p.get("service_per_unit", "0")),
               "pricing.service_per_unit")
    risk = term("risk", "P90 less P50 maintenance reserve", r90 - r50,
                "%s - %s" % (_show(r90), _show(r50)))
    sub = energy + reserve_t + cap + svc + risk
    margin = term("margin", "margin on the terms above", sub * Fraction(p.get("margin", "0")),
                  "%s x %s" % (p.get("margin", "0"), _show(sub)))
    price = sub + margin
    places = billing._MINOR_EXCEPT.get(c["currency"], 2) + 2
    proposed = Fraction(math.ceil(price * 10 ** places), 10 ** places)
    for t in terms:
        t["per_unit"] = _show(t["per_unit"])
    current = c["tiers"][0]["price"]
    accounts = accounts_summary(col, sorted(per_asset), hi, c["currency"])
    return {"report": PRICE_VERSION, "contract": cid, "customer": c["customer"], "currency": c["currency"],
            "unit": c["unit"], "metric": c["metric"], "window": {"from": lo, "to": hi}, "assets": len(per_asset),
            "units": _show(total_units), "energy_kwh": _show(kwh), "terms": terms, "components": detail,
            "residual_value": {"value": _show(RV, 2), "how": rv_how, "assets": rv_rows},
            "reserve_accounts": accounts,
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
        out += ["", "components (life used per unit is a share of one rated life):"]
        for d in rep["components"]:
            out.append("  %s: cost %s, %s; life/unit P50 %s P90 %s (%d assets)" % (
                d["component"], d["cost"], d["source"] if d["rated_life"] is None else
                "rated life %s %s (beta %s, %s)" % (d["rated_life"], d["life_unit"], d["beta"], d["source"]),
                d["life_used_per_unit_p50"], d["life_used_per_unit_p90"], d["assets"]))
    rv = rep["residual_value"]
    out += ["", "residual value at the end of the term: %s %s (%s)" % (rv["value"], rep["currency"], rv["how"])]
    for a in rv["assets"][:10]:
        out.append("  %s: %s; %s; K %s (%s), core D_P90 at the end %s, wear parts to restore %s, harvest and scrap "
                   "%s" % (a["asset"], a["value"], a["option"], a["K"], a["K_from"], a["D_core_P90_end"],
                           a["restore_wear_parts"], a["harvest_value"]))
    if len(rv["assets"]) > 10:
        out.append("  ... %d more assets (see --format json)" % (len(rv["assets"]) - 10))
    out += _render_accounts(rep["reserve_accounts"])
    return "\n".join(billing.clean(x) for x in out) + "\n"


def _render_accounts(acc):
    out = ["", "reserve accounts (stored; they accrue when a month's bill or statement is made): %d asset(s), "
           "accrued %s, drawn %s, balance %s %s" % (len(acc["assets"]), acc["accrued"], acc["drawn"], acc["balance"],
                                                    acc["currency"])]
    for a in acc["assets"][:10]:
        out.append("  %s: accrued %s, drawn %s, balance %s" % (a["asset"], a["accrued"], a["drawn"], a["balance"]))
        for d in a["draws"][:5]:
            out.append("    drawn %s on %s: %s" % (d["amount"], d["day"], d["ref"]))
    if len(acc["assets"]) > 10:
        out.append("  ... %d more assets (see --format json)" % (len(acc["assets"]) - 10))
    return out


# -- the reserve account, stored ------------------------------------------------------------

_RESERVE_SQL = """CREATE TABLE IF NOT EXISTS reserve_entries (
    asset TEXT NOT NULL, period TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, version BIGINT NOT NULL,
    contract TEXT NOT NULL, currency TEXT NOT NULL, minor BIGINT NOT NULL, amount BIGINT NOT NULL,
    day TEXT NOT NULL, digest TEXT NOT NULL, basis TEXT NOT NULL, made_s BIGINT NOT NULL,
    PRIMARY KEY (asset, period, kind, ref, version))"""


def ensure_reserve(col):
    col._b.execute(_RESERVE_SQL)


def _months_between(lo, hi):
    a = datetime.date.fromisoformat(lo).replace(day=1)
    b = datetime.date.fromisoformat(hi)
    while a <= b:
        last = a.replace(day=calendar.monthrange(a.year, a.month)[1])
        yield a, last
        a = last + datetime.timedelta(days=1)


def _contract_on(data, asset, day):
    for a in data["assignments"]:
        if a["asset"] == asset and a["from"] <= day <= a["to"]:
            return data["contracts"][a["contract"]]
    return None


def _utc_day(wall):
    return datetime.datetime.fromtimestamp(int(wall), datetime.timezone.utc).date().isoformat()


def _part_cost(c, comp, ctx):
    """(cost as a decimal string, where it comes from) of replacing a
    component under contract c, or (None, why)."""
    card = ctx.card(comp)
    row = {"component": comp, "type": card["type"] if card else None}
    named = [x for x in c["components"] if _matches(x["name"], row)]
    if named:
        return named[0]["cost"], "contract %s component %s" % (c["id"], named[0]["name"])
    if card is None:
        return None, "no life card rates %s and the contract names no component for it" % comp
    from agent.collector.life.economics import card_cost
    cc = card_cost(card)
    if cc is None:
        return None, "card %s gives no cost" % card["type"]
    cost, why = _card_cost(c, {"cost": cc, "card": "%s@%d" % (card["type"], card["version"]), "type": card["type"]})
    return cost, why or "card %s@%d cost.part + cost.labour" % (card["type"], card["version"])


def draws(data, asset, lo, hi, ctx):
    """The recorded repairs of an asset on days lo..hi that draw its
    reserve: [{ref, day, component, cost, contract, records: [...], from}]
    and the ones that cannot ([{records, why}]). Sources, one draw per
    repair (same asset, day and part):
    - part swaps (part_events): a part removed and another installed in the
      same slot at the same record; costed from the contract component that
      names the new part, else its card (cost.part + cost.labour);
    - operator repair records (component_records, `tally event add --kind
      repair`) of a part that was in the asset then;
    - the contract file's [[repairs]] (table repairs): its cost wins."""
    lo_s, hi_s = _day_s(lo), _day_s(hi) + 86400
    found, skipped = [], []
    evs = [e for e in ctx.ledger.events if e[0] == asset and e[7] and lo_s <= e[7] < hi_s]
    by_rec = {}
    for e in evs:
        by_rec.setdefault((e[1], e[2], e[5]), []).append(e)
    for (ep, seq, slot), es in sorted(by_rec.items()):
        rem = [e for e in es if e[4] == "removed"]
        ins = [e for e in es if e[4] == "installed"]
        if not (rem and ins):
            continue
        day = _utc_day(ins[0][7])
        c = _contract_on(data, asset, day)
        recs = [{"table": "part_events", "device": e[0], "epoch": e[1], "seq": e[2], "idx": e[3], "kind": e[4],
                 "slot": e[5], "component": e[6], "wall_s": e[7], "detail": e[9]} for e in rem + ins]
        if c is None:
            skipped.append({"records": recs, "why": "no contract covers %s on %s" % (asset, day)})
            continue
        cost, src = _part_cost(c, ins[0][6], ctx)
        if cost is None:
            skipped.append({"records": recs, "why": src})
            continue
        found.append({"ref": "part_events %s epoch %s seq %s slot %s" % (asset, ep, seq, slot), "day": day,
                      "components": {rem[0][6], ins[0][6]}, "component": ins[0][6], "cost": cost, "contract": c,
                      "from": src, "records": recs})
    for comp, recs in sorted(ctx.ledger.records.items()):
        for r in recs:
            if r["kind"] != "repair" or not lo_s <= r["at_s"] < hi_s:
                continue
            inside = any(s["device"] == asset and (s["start"].get("wall") or 0) <= r["at_s"] and
                         (s["end"] is None or (s["end"].get("wall") or r["at_s"]) >= r["at_s"])
                         for s in ctx.ledger.segs.get(comp, []))
            if not inside:
                continue
            day = _utc_day(r["at_s"])
            rec = dict(r, table="component_records")
            same = [d for d in found if d["day"] == day and comp in d["components"]]
            if same:
                same[0]["records"].append(rec)
                continue
            c = _contract_on(data, asset, day)
            if c is None:
                skipped.append({"records": [rec], "why": "no contract covers %s on %s" % (asset, day)})
                continue
            cost, src = _part_cost(c, comp, ctx)
            if cost is None:
                skipped.append({"records": [rec], "why": src})
                continue
            found.append({"ref": "component_records %s repair at %d" % (comp, r["at_s"]), "day": day,
                          "components": {comp}, "component": comp, "cost": cost, "contract": c, "from": src,
                          "records": [rec]})
    for r in data["repairs"]:
        if r["asset"] != asset or not lo <= r["day"] <= hi:
            continue
        rec = dict(r, table="repairs")
        same = [d for d in found if d["day"] == r["day"] and any(
            _matches(r["component"], {"component": x, "type": (ctx.card(x) or {}).get("type")})
            for x in d["components"])]
        if same:
            same[0].update(cost=r["cost"], records=same[0]["records"] + [rec],
                           **{"from": "the contract file's [[repairs]] cost"})
            continue
        c = _contract_on(data, asset, r["day"])
        if c is None:
            skipped.append({"records": [rec], "why": "no contract covers %s on %s" % (asset, r["day"])})
            continue
        found.append({"ref": "repairs %s %s %s" % (asset, r["day"], r["component"]), "day": r["day"],
                      "components": {r["component"]}, "component": r["component"], "cost": r["cost"], "contract": c,
                      "from": "the contract file's [[repairs]] cost", "records": [rec]})
    for d in found:
        d.pop("components")
    return found, skipped


def _day_s(day):
    return calendar.timegm(datetime.date.fromisoformat(day).timetuple())


def entries(col, data, asset, month, ctx, usage=None):
    """What the reserve account of an asset holds for one billing month
    (a (first, last) pair of days), evaluated now: [{kind, ref, contract,
    currency, minor, amount, day, basis}]; accruals positive, draws
    negative, amounts in minor units."""
    usage = usage or Usage(col)
    m0, m1 = month[0].isoformat(), month[1].isoformat()
    out = []
    for a in data["assignments"]:
        if a["asset"] != asset or a["from"] > m1 or a["to"] < m0:
            continue
        c = data["contracts"][a["contract"]]
        rates = {"minor": billing._MINOR_EXCEPT.get(c["currency"], 2), "rounding": c["rounding"]}
        f, t = _accrual_days(data, asset, m0, m1, a)[0]
        use, units = usage.window(asset, f, t)
        life = life_used(c, asset, use, units, f, t, ctx=ctx)
        acc = sum((Fraction(x["cost"]) * x["used"] for x in life), Fraction(0))
        basis = {"from": f, "to": t, "sum": "cost x life used (P50)",
                 "components": [{"name": x["name"], "cost": x["cost"], "life_used": _show(x["used"], LIFE_PLACES),
                                 "life_used_p90": _show(x["used_p90"], LIFE_PLACES), "source": x["source"],
                                 "parts": x["parts"]} for x in life]}
        out.append({"kind": "accrual", "ref": c["id"], "contract": c["id"], "currency": c["currency"],
                    "minor": rates["minor"], "amount": billing._round(acc, rates), "day": t, "basis": basis})
    found, skipped = draws(data, asset, m0, m1, ctx)
    for d in found:
        c = d["contract"]
        rates = {"minor": billing._MINOR_EXCEPT.get(c["currency"], 2), "rounding": c["rounding"]}
        out.append({"kind": "draw", "ref": d["ref"], "contract": c["id"], "currency": c["currency"],
                    "minor": rates["minor"], "amount": -billing._round(Fraction(d["cost"]), rates), "day": d["day"],
                    "basis": {"component": d["component"], "cost": d["cost"], "cost_from": d["from"],
                              "records": d["records"]}})
    return out, skipped


def _accrual_days(data, asset, m0, m1, only=None):
    """[(from, to)] of the asset's assignments inside the month m0..m1."""
    return [(max(m0, a["from"]), min(m1, a["to"])) for a in ([only] if only else data["assignments"])
            if a["asset"] == asset and a["from"] <= m1 and a["to"] >= m0]


def _digest(e):
    import hashlib
    return hashlib.sha256(contracts._canon([e["amount"], e["currency"], e["basis"]]).encode()).hexdigest()[:32]


def post(col, data, asset, period, ctx, usage=None):
    """Store the reserve entries of an asset for each calendar month of a
    billing period (billing.parse_period's tuple; a period of days that is
    not a whole month posts nothing): exactly once per (asset, month, kind,
    ref). An entry already stored with the same basis is left alone; one
    whose basis changed (a card's new version, late records, a cost) gets a
    new version holding the difference, so the versions add up to the
    present evaluation and the history of each re-evaluation is kept.
    Returns the number of rows written and the repairs that could not draw."""
    return post_many(col, data, [asset], period, ctx, usage)


def post_many(col, data, assets, period, ctx, usage=None):
    """post() for several assets: evaluated first, then written in one
    transaction (one commit for a bill run, not one per asset)."""
    first, last, label = period
    if not (first.day == 1 and (last + datetime.timedelta(days=1)).day == 1):
        return 0, []
    ensure_reserve(col)
    skipped, todo = [], []
    from agent.collector.life.economics import day_s
    ctx.prefetch([(asset, day_s(f), day_s(t, True)) for asset in assets
                  for m0, m1 in _months_between(first.isoformat(), last.isoformat())
                  for f, t in _accrual_days(data, asset, m0.isoformat(), m1.isoformat())])
    for asset in assets:
        for m0, m1 in _months_between(first.isoformat(), last.isoformat()):
            ents, sk = entries(col, data, asset, (m0, m1), ctx, usage)
            skipped += sk
            todo.append((asset, m0.strftime("%Y-%m"), ents))
    n = 0
    x = col._b.execute
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    with col._b.transaction(write=True):
        for asset, per, ents in todo:
            have = {}
            for kind, ref, ver, amount, digest in x(
                    "SELECT kind, ref, version, amount, digest FROM reserve_entries WHERE asset=? AND period=? "
                    "ORDER BY version", (asset, per)):
                h = have.setdefault((kind, ref), [0, 0, None])
                h[0], h[1], h[2] = max(h[0], ver), h[1] + amount, digest
            for e in ents:
                dg = _digest(e)
                ver, total, last_dg = have.get((e["kind"], e["ref"]), (0, 0, None))
                if last_dg == dg:
                    continue                    # stored with this basis: exactly once
                basis = dict(e["basis"])
                if ver:
                    basis["adjusts"] = {"versions": ver, "stored": total, "now": e["amount"],
                                        "why": "re-evaluated: the basis changed since version %d" % ver}
                n += x("INSERT INTO reserve_entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                       (asset, per, e["kind"], e["ref"], ver + 1, e["contract"], e["currency"], e["minor"],
                        e["amount"] - total, e["day"], dg, contracts._canon(basis), now)).rowcount
    return n, skipped


def reserve(col, data, asset, upto):
    """The stored reserve account of one asset up to the day `upto`: per
    month the accruals (with their versions and adjustments) and draws
    with the records they trace to, and the running balance, in integer
    minor units of the contract's currency."""
    ensure_reserve(col)
    rows = col._b.execute(
        "SELECT period, kind, ref, version, contract, currency, minor, amount, day, basis FROM reserve_entries "
        "WHERE asset=? AND period<=? ORDER BY period, kind, ref, version", (asset, upto[:7])).fetchall()
    months, bal, balances, cur, minor = {}, 0, {}, None, 2
    for per, kind, ref, ver, contract, currency, mn, amount, day, basis in rows:
        m = months.setdefault(per, {"month": per, "accrued": 0, "drawn": 0, "entries": []})
        if kind == "accrual":
            m["accrued"] += amount
        else:
            m["drawn"] -= amount
        balances[currency] = balances.get(currency, 0) + amount
        cur, minor = currency, mn
        m["entries"].append({"kind": kind if ver == 1 else "%s adjustment" % kind, "ref": ref, "version": ver,
                             "contract": contract, "currency": currency, "amount": amount, "day": day,
                             "basis": json.loads(basis)})
    out = []
    for per in sorted(months):
        m = months[per]
        bal += m["accrued"] - m["drawn"]
        m["balance"] = bal
        out.append(m)
    return {"asset": asset, "currency": cur, "minor": minor, "months": out,
            "balance": balances.get(cur, 0) if cur else 0, "balances": balances}


def account_json(res, month=None, contract=None):
    """An asset's reserve account as decimal strings: the entries of one
    month (all months when None) under one contract (all when None), and
    the asset's balance over all of them."""
    mn = res["minor"]
    es = [e for m in res["months"] if month is None or m["month"] == month for e in m["entries"]
          if contract is None or e["contract"] == contract]
    return {"asset": res["asset"], "currency": res["currency"],
            "accrued": billing.money(sum(e["amount"] for e in es if e["kind"].startswith("accrual")), mn),
            "drawn": billing.money(-sum(e["amount"] for e in es if e["kind"].startswith("draw")), mn),
            "balance": billing.money(res["balance"], mn),
            "entries": [dict(e, amount=billing.money(e["amount"], mn)) for e in es]}


def accounts_summary(col, assets, upto, currency):
    """The stored reserve accounts of assets up to a day, for `tally price`."""
    ensure_reserve(col)
    tot = {"accrued": 0, "drawn": 0}
    per = {}
    minor = billing._MINOR_EXCEPT.get(currency, 2)
    for a, kind, ref, day, amount in col._b.execute(
            "SELECT asset, kind, ref, day, amount FROM reserve_entries WHERE currency=? AND period<=? "
            "ORDER BY asset, period, kind, ref, version", (currency, upto[:7])):
        if a not in assets:
            continue
        r = per.setdefault(a, {"asset": a, "accrued": 0, "drawn": 0, "draws": []})
        if kind == "accrual":
            r["accrued"] += amount
        else:
            r["drawn"] -= amount
            r["draws"].append({"ref": ref, "day": day, "amount": billing.money(-amount, minor)})
    rows = []
    for a in sorted(per):
        r = per[a]
        tot["accrued"] += r["accrued"]
        tot["drawn"] += r["drawn"]
        rows.append(dict(r, balance=billing.money(r["accrued"] - r["drawn"], minor),
                         accrued=billing.money(r["accrued"], minor), drawn=billing.money(r["drawn"], minor)))
    return {"currency": currency, "accrued": billing.money(tot["accrued"], minor),
            "drawn": billing.money(tot["drawn"], minor),
            "balance": billing.money(tot["accrued"] - tot["drawn"], minor), "assets": rows}


def post_bills(col, data, bills, period, ctx=None, usage=None):
    """Post the month's reserve entries of every asset of the bills and
    attach each asset's account to its bill as "reserve" (the month's
    entries, the balance): the same in `tally report --by` and in the
    statement."""
    ctx = ctx or life_context(col)
    usage = usage or Usage(col)
    lo, hi = period[0].isoformat(), period[1].isoformat()
    assets = []
    for b in bills:
        for s in contracts.segments(data, b["contract"], lo, hi):
            if s["asset"] not in assets:
                assets.append(s["asset"])
    post_many(col, data, assets, period, ctx, usage)
    accounts = {a: reserve(col, data, a, hi) for a in assets}
    for b in bills:
        b["reserve"] = []
        for s in contracts.segments(data, b["contract"], lo, hi):
            a = s["asset"]
            if not any(r["asset"] == a for r in b["reserve"]):
                b["reserve"].append(account_json(accounts[a], period[2] if len(period[2]) == 7 else None,
                                                 b["contract"]))
    return accounts
