"""Health and the next-use decision (CIRCULAR.md §5, §6), and assess(): the
ledger, the cards and the configuration in, figures with their reasons out.

Health band of a component: Critical (a failure on record not followed by a
repair, or D_P90 >= critical), Poor (D_P90 >= poor), Fair (D_P90 >= fair,
or a condition collar), Good; Unknown where no figure can be made (no card,
or its history is not usable), ranked between Fair and Poor so that it is
never hidden behind a Good. An asset's health is the worst of its parts,
with the reasons of that part.

The next-use table is evaluated top-down, first match wins, and the outcome
of every rule is kept in the trace: fired, not fired, or not known (an
input the configuration does not give: the rule cannot fire on it, and the
trace says which input was missing). Thresholds are configuration (the
[thresholds] table of the life config; defaults below), not literature.
Each decision names the card versions it used and is stored once per
distinct input (ledger.store_decision)."""
import hashlib
import json
import math
import tomllib

from agent.collector.life import cards as cardmod
from agent.collector.life import rul

BANDS = ("Good", "Fair", "Unknown", "Poor", "Critical")
DEFAULTS = {
    "thresholds": {"fair": 0.5, "poor": 0.8, "critical": 1.0, "pm_warning": 0.8, "repair_ec_max": 0.5,
                   "upgrade_tg_min": 0.2, "core_max": 0.5, "wear_min": 0.8, "underuse_max": 0.5,
                   "reman_cost_max": 0.85, "harvest_max": 0.5},
    "usage": {"window_days": 30, "outcome": "auto", "samples": rul.SAMPLES, "seed": rul.SEED,
              "calibrate": False},
    "asset": {},
}
ASSET_KEYS = {"contract_days_left": (int, float), "next_term_days": (int, float), "fx_ok": bool,
              "legal_flag": bool, "tg": (int, float), "payback_days": (int, float), "u_ratio": (int, float),
              "contract_ends": bool, "retired": bool, "reman_cost_ratio": (int, float), "outcome": str}


class ConfigError(ValueError):
    pass


def load_config(path=None):
    """The defaults, overlaid with a TOML file's [thresholds], [usage] and
    [asset."<id>"] tables; ConfigError names an unknown key or a bad value."""
    cfg = json.loads(json.dumps(DEFAULTS))
    if not path:
        return cfg
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: not TOML: %s" % (path, e))
    for sect in doc:
        if sect not in cfg:
            raise ConfigError("%s: unknown table [%s] (thresholds, usage, asset)" % (path, sect))
    for k, v in doc.get("thresholds", {}).items():
        if k not in cfg["thresholds"]:
            raise ConfigError("%s: [thresholds] has no %s (one of %s)" % (path, k, ", ".join(cfg["thresholds"])))
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ConfigError("%s: [thresholds] %s = %r must be a number >= 0" % (path, k, v))
        cfg["thresholds"][k] = v
    for k, v in doc.get("usage", {}).items():
        if k not in cfg["usage"]:
            raise ConfigError("%s: [usage] has no %s" % (path, k))
        cfg["usage"][k] = v
    if not (isinstance(cfg["usage"]["window_days"], (int, float)) and cfg["usage"]["window_days"] > 0):
        raise ConfigError("%s: [usage] window_days must be > 0" % path)
    for aid, t in doc.get("asset", {}).items():
        for k, v in t.items():
            if k not in ASSET_KEYS:
                raise ConfigError("%s: [asset.%s] has no %s (one of %s)" % (path, aid, k, ", ".join(ASSET_KEYS)))
            if not isinstance(v, ASSET_KEYS[k]) or (ASSET_KEYS[k] != bool and isinstance(v, bool)):
                raise ConfigError("%s: [asset.%s] %s = %r has the wrong type" % (path, aid, k, v))
        cfg["asset"][aid] = dict(t)
    return cfg


def strict(x):
    """x with infinite or NaN floats as None, for strict JSON."""
    if isinstance(x, float) and (x != x or x in (math.inf, -math.inf)):
        return None
    if isinstance(x, dict):
        return {k: strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict(v) for v in x]
    return x


def health(fig, open_failure, th):
    """(band, [reasons]) of one component from its figures."""
    if open_failure is not None:
        return "Critical", ["failure on record %s (mode %s) with no repair after it"
                            % (open_failure["at_s"], open_failure["mode"])]
    if fig is None or fig.get("D_P90") is None:
        why = (fig or {}).get("uncertain") or ["no figure"]
        return "Unknown", list(why)
    d90 = fig["D_P90"]
    reasons = ["D_P90 %.2f (%s)" % (d90, fig["card"])] + list(fig.get("condition", []))
    if d90 >= th["critical"]:
        return "Critical", reasons
    if d90 >= th["poor"]:
        return "Poor", reasons
    if d90 >= th["fair"] or fig.get("condition"):
        return "Fair", reasons
    return "Good", reasons


def worst(bands):
    return max(bands, key=BANDS.index) if bands else "Unknown"


def _rule(rid, decision, fired, because):
    return {"rule": rid, "decision": decision, "fired": fired, "because": because}


def _ge(x, y):
    return None if x is None or y is None else x >= y


def next_use(inp, th):
    """The ordered rule table over one asset's inputs: (decision, trace)."""
    h, d90, rul10, due = inp["health"], inp["D_P90"], inp["rul_P10_days"], inp["contract_days_left"]
    fx_ok = inp["fx_ok"]
    trace = []
    # R0 withdraw
    c = [inp["legal_flag"] is True, h == "Critical", d90 is not None and d90 >= th["critical"]]
    trace.append(_rule("R0", "withdraw", any(c),
                       "legal/safety flag %s, health %s, D_P90 %s vs %s" % (inp["legal_flag"], h, _f(d90),
                                                                          th["critical"])))
    # R1 maintain / continue
    covers = True if due is None else _ge(rul10, due)
    fired = h in ("Good", "Fair") and covers is True and fx_ok is not False
    pm = d90 is not None and d90 >= th["pm_warning"]
    trace.append(_rule("R1", "continue" + (" (plan preventive maintenance)" if pm else ""),
                       fired if covers is not None else None,
                       "health %s; RUL_P10 %s d vs contract %s d%s; Fx %s" % (
                           h, _f(rul10), _f(due), " (term not configured: not checked)" if due is None else "",
                           "ok" if fx_ok is not False else "short")))
    # R2 repair
    parts = inp["bad_replaceable"]
    ec = inp["ec"]
    post = inp["post_repair_rul_P10_days"]
    c2 = bool(parts) and ec is not None and ec < th["repair_ec_max"] and (due is None or _ge(post, due) is True)
    why = inp.get("bad_reasons")             # each bad part's health reasons (collars named)
    trace.append(_rule("R2", "repair: replace %s" % ", ".join(parts) if parts else "repair", c2,
                       "failed/poor replaceable parts %s%s; Ec %s < %s; post-repair RUL_P10 %s d vs term %s d"
                       % (", ".join(parts) or "none", " (%s)" % "; ".join(why) if why else "", _f(ec),
                          th["repair_ec_max"], _f(post), _f(due))))
    # R3 upgrade
    tg, pay, core = inp["tg"], inp["payback_days"], inp["core_D_P90"]
    if tg is None or pay is None or due is None:
        trace.append(_rule("R3", "upgrade", None, "Tg, payback or contract term not configured"))
    else:
        trace.append(_rule("R3", "upgrade", tg >= th["upgrade_tg_min"] and pay < due and core is not None
                           and core < th["core_max"],
                           "Tg %s >= %s, payback %s d < term %s d, core D_P90 %s < %s"
                           % (_f(tg), th["upgrade_tg_min"], _f(pay), _f(due), _f(core), th["core_max"])))
    # R4 redeploy
    ur, ends, nxt = inp["u_ratio"], inp["contract_ends"], inp["next_term_days"]
    why_move = fx_ok is False or (ur is not None and ur < th["underuse_max"]) or ends is True
    ok_move = h in ("Good", "Fair") and (nxt is None or _ge(rul10, nxt) is True)
    trace.append(_rule("R4", "redeploy", why_move and ok_move,
                       "Fx %s, U/U_av %s < %s, contract ends %s; health %s; RUL_P10 %s d vs next term %s d "
                       "(at this site's duty: the target site's histogram is not known here)"
                       % ("short" if fx_ok is False else "ok", _f(ur), th["underuse_max"], _f(ends), h, _f(rul10),
                          _f(nxt))))
    # R5 remanufacture
    wear, rc = inp["wear_D_P50"], inp["reman_cost_ratio"]
    c5 = core is not None and core < th["core_max"] and ((wear is not None and wear >= th["wear_min"])
                                                        or h == "Poor")
    trace.append(_rule("R5", "remanufacture", (c5 and rc <= th["reman_cost_max"]) if rc is not None else
                       (None if c5 else False),
                       "core D_P90 %s < %s; wear parts D_P50 %s >= %s or health Poor (%s); reman cost %s of new "
                       "<= %s" % (_f(core), th["core_max"], _f(wear), th["wear_min"], h, _f(rc),
                                  th["reman_cost_max"])))
    # R6 harvest
    retired = inp["retired"] is True or trace[0]["fired"]
    spares = inp["harvestable"]
    trace.append(_rule("R6", "harvest parts: %s" % ", ".join(spares) if spares else "harvest parts",
                       bool(retired and spares),
                       "retired or withdrawn %s; parts with D_P90 < %s: %s (bench test before reuse)"
                       % (retired, th["harvest_max"], ", ".join(spares) or "none")))
    trace.append(_rule("R7", "recycle", True, "otherwise: dismantling and material data out (DPP)"))
    first = next(t for t in trace if t["fired"] is True)
    decision = first["decision"]
    if first["rule"] == "R0":
        then = next(t for t in trace[5:] if t["fired"] is True)
        decision = "withdraw, then %s" % then["decision"]
    return decision, trace


def _f(x):
    if x is None:
        return "unknown"
    if isinstance(x, float):
        return "inf" if math.isinf(x) else "%.3g" % x
    return str(x)


ERRORS = ("err_nack", "err_crc", "err_timeout", "err_range", "log_errors")


# [usage] outcome = "auto" (the default): an asset's outcome odometer is the
# first of these its newest schema carries: the compressor's air (m3), the
# pump's water (m3), the luminaire's light exposure (lx.h), a generic count
OUTCOMES = ("air", "water", "light_exposure", "units")


def outcome_of(col, device, want="auto"):
    """(metric, unit, scale) of the device's outcome odometer: `want`, or
    with "auto" the first of OUTCOMES in its newest schema; the unit and
    scale from that schema ("", 0 when it does not list the metric)."""
    row = col._b.execute("SELECT schema_id FROM records WHERE device_id = ? ORDER BY epoch DESC, seq DESC "
                         "LIMIT 1", (device,)).fetchone()
    odo = {m[0]: (m[1], m[2]) for m in (col.schema(device, row[0]) or []) if m[3] == "odometer"} if row else {}
    if want == "auto":
        want = next((m for m in OUTCOMES if m in odo), OUTCOMES[-1])
    unit, scale = odo.get(want, ("", 0))
    return want, unit, scale


def device_usage(col, device, name, window_days):
    """(outcome units per day, error rise) of a device from the billing
    ledger's day totals over the last window_days: the outcome odometer's
    mean per day (None if it never moved), and the errors of the window
    against the window before it (None without errors in either)."""
    days = col.ledger(device).get(device, {})
    if not days:
        return None, None
    keys = sorted(days)
    w = max(1, int(window_days))
    last, prev = keys[-w:], keys[-2 * w:-w]
    tot = sum(days[k].get(name, 0) for k in last)
    errs = [sum(days[k].get(e, 0) for k in ks for e in ERRORS) for ks in (last, prev)]
    rise = None if not any(errs) else errs[0] / max(errs[1], 1)
    return (tot / len(last) if tot else None), rise


def component_figure(ledger, cards, comp, cfg, outcome_per_day=None, fleet=None, error_rise=None,
                     outcome="units", outcome_si=""):
    card = cardmod.for_component(cards, comp, ledger.part_numbers.get(comp))
    if card is None:
        return None, {"uncertain": ["no life card rates %s (no card's match prefix fits it, nor lists the part "
                                    "number of its passport)" % comp]}
    use = cfg["usage"]
    usage = ledger.usage(comp)
    recent, days = ledger.recent(comp, use["window_days"])
    fig = rul.evaluate(card, usage, recent, window_days=days or use["window_days"],
                       evidence=_evidence(recent, days, error_rise, usage), outcome_per_day=outcome_per_day,
                       outcome_unit=outcome, samples=use["samples"], seed=use["seed"],
                       calibration=(fleet or {}).get(card["type"]))
    if outcome_per_day is None and recent is not None and ledger.installed_anywhere(comp):
        fig["uncertain"].append("no '%s' odometer moved in the window (the asset's outcome odometer: the first "
                                "of %s in its schema, or [usage] outcome or [asset.ID] outcome): no figures "
                                "in outcome units" % (outcome, ", ".join(OUTCOMES)))
    elif fig.get("outcome_unit"):
        fig["outcome_si"] = outcome_si
    if recent is None:
        fig["uncertain"].append("no dated snapshots in the last %s days: no usage rate, no calendar figures"
                                % use["window_days"])
    fig["uncertain"] = list(ledger.uncertain.get(comp, [])) + fig["uncertain"]
    if days is not None and days < use["window_days"] and fig.get("rate_assumption"):
        fig["rate_assumption"] += " (the part's stay covers only %.1f of the %g days asked)" % (days, use["window_days"])
    return card, fig


def _evidence(recent, days, error_rise=None, usage=None):
    ev = {}
    if recent and "vib_s" in recent:
        ev["vib_zone_h"] = [float(x) / 3600.0 for x in recent["vib_s"]]
    lux = (usage or {}).get("_lux_w")
    if lux:
        ev["lumen_ratio"] = lux[1] / lux[0]
    if error_rise is not None:
        ev["error_rise"] = error_rise
    return ev or None


def assess(ledger, cards, cfg, asset=None, component=None, store=True):
    """{"components": {id: {...}}, "assets": {id: {...}}, "problems": [...]}.
    With store, each asset's decision is kept with its trace."""
    th = cfg["thresholds"]
    comps = [component] if component else ledger.components()
    if asset:
        comps = sorted({c for c, segs in ledger.segs.items() for s in segs if s["device"] == asset})
    out = {"components": {}, "assets": {}, "problems": list(ledger.problems)}
    fl = None
    if cfg["usage"].get("calibrate"):
        from agent.collector.life import fleet
        fl = out["fleet"] = fleet.fleet(ledger, cards)
    rates = {}
    for comp in comps:
        segs = ledger.segs.get(comp, [])
        where = segs[-1]["device"] if segs and segs[-1]["end"] is None else None
        if where and where not in rates:
            name, si, scale = outcome_of(ledger.col, where, cfg["asset"].get(where, {}).get(
                "outcome", cfg["usage"]["outcome"]))
            per_day, rise = device_usage(ledger.col, where, name, cfg["usage"]["window_days"])
            rates[where] = (per_day * 10.0 ** scale if per_day is not None else None, rise, name, si)
        per_day, rise, outcome, si = rates.get(where, (None, None, "units", ""))
        card, fig = component_figure(ledger, cards, comp, cfg, per_day, fl, rise, outcome, si)
        band, reasons = health(fig if card else None, ledger.open_failure(comp), th)
        out["components"][comp] = {
            "component": comp, "card": fig.get("card"), "asset": where, "health": band, "reasons": reasons,
            "life": fig, "history": ledger.history(comp), "records": ledger.records.get(comp, []),
            "replaceable": card["replaceable"] if card else None, "core": card["core"] if card else None,
            "cost": card["cost"] if card else None}
    devs = [asset] if asset else [] if component else sorted({c["asset"] for c in out["components"].values()
                                                              if c["asset"]})
    for dev in devs:
        inside = [out["components"][c] for c in ledger.installed(dev) if c in out["components"]]
        out["assets"][dev] = _asset(dev, inside, cfg, ledger, store)
    return out


def _asset(dev, parts, cfg, ledger, store):
    th = cfg["thresholds"]
    a = cfg["asset"].get(dev, {})
    band = worst([p["health"] for p in parts])
    worst_parts = [p for p in parts if p["health"] == band]
    reasons = ["%s: %s" % (p["component"], "; ".join(p["reasons"])) for p in worst_parts]
    d90s = [p["life"].get("D_P90") for p in parts if p["life"].get("D_P90") is not None]
    rul10 = [p["life"].get("days_P10") for p in parts if p["life"].get("days_P10") is not None]
    bad = [p for p in parts if p["health"] in ("Poor", "Critical") and p["replaceable"]]
    others = [p["life"].get("days_P10") for p in parts if p not in bad and p["life"].get("days_P10") is not None]
    ec = None
    if bad:
        ecs = [(p["cost"].get("part", 0) + p["cost"].get("labour", 0)) / p["cost"]["new_asset"]
               for p in bad if p["cost"].get("new_asset")]
        ec = sum(ecs) if ecs else None
    core = [p["life"].get("D_P90") for p in parts if p["core"] and p["life"].get("D_P90") is not None]
    wear = [p["life"].get("D_P50") for p in parts if not p["core"] and p["life"].get("D_P50") is not None]
    inp = {"health": band, "D_P90": max(d90s) if d90s else None, "rul_P10_days": min(rul10) if rul10 else None,
           "contract_days_left": a.get("contract_days_left"), "fx_ok": a.get("fx_ok"),
           "legal_flag": a.get("legal_flag", False), "bad_replaceable": [p["component"] for p in bad],
           "bad_reasons": ["%s: %s" % (p["component"], "; ".join(p["reasons"])) for p in bad],
           "ec": ec, "post_repair_rul_P10_days": min(others) if others else (math.inf if bad else None),
           "tg": a.get("tg"), "payback_days": a.get("payback_days"),
           "core_D_P90": max(core) if core else (max(d90s) if d90s else None),
           "wear_D_P50": max(wear) if wear else None, "u_ratio": a.get("u_ratio"),
           "contract_ends": a.get("contract_ends"), "next_term_days": a.get("next_term_days"),
           "reman_cost_ratio": a.get("reman_cost_ratio"), "retired": a.get("retired"),
           "harvestable": [p["component"] for p in parts if p["life"].get("D_P90") is not None
                           and p["life"]["D_P90"] < th["harvest_max"] and p["health"] != "Critical"]}
    decision, trace = next_use(inp, th)
    used = sorted({p["card"] for p in parts if p["card"]})
    res = {"asset": dev, "health": band, "reasons": reasons, "parts": [p["component"] for p in parts],
           "decision": decision, "inputs": inp, "trace": trace, "cards": used, "thresholds": th}
    if store:
        digest = hashlib.sha256(json.dumps([inp, used, th], sort_keys=True, default=str).encode()).hexdigest()[:32]
        ledger.store_decision(dev, digest, decision, band, used, {"inputs": inp, "rules": trace,
                                                                   "thresholds": th})
        res["decision_id"] = digest
    return res
