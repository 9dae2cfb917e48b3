"""Equivalent age -> remaining life (CIRCULAR.md §2.0), with the card's
parameter uncertainty propagated by Monte Carlo (a fixed seed, so the same
history and card give the same figures).

For each of S samples: every parameter with a range is drawn uniformly
from it; each mechanism's damage D_s = sum_b usage_b / L_b(params_s); the
condition collar/cap clamps it; the equivalent age a = D * L_ref; the
Weibull of the rating (beta from the card, eta from L_ref at the rated
quantile q: eta = L_ref / (-ln(1-q))^(1/beta)) gives the conditional
remaining life at a uniform draw u: R(x|a) = exp(-((a+x)/eta)^b + (a/eta)^b),
x_u = eta * ((a/eta)^b - ln(1-u))^(1/b) - a. P10/P50/P90 are the quantiles
of x over the samples: pessimistic, median, optimistic, with both the
scatter of lives and the card's uncertainty in them.

Calendar days: x / L_ref is the damage still to go; divided by the damage
rate of the recent window (usage of the last `window_days`, the stated
assumption) it is days. A component's remaining life is the first of its
mechanisms to end, taken per sample in days. In outcome units: days times
the outcome units delivered per day over the same window.

Hand-written rather than reliability.Distributions.Weibull_Distribution:
the conditional quantile is one closed form vectorised over thousands of
samples, where the library's object takes one (alpha, beta) pair at a time;
tests/test_life_models.py checks the unconditional case against it."""
import math

import numpy as np

from agent.collector.life import bins, models
from agent.collector.life.cards import value

SAMPLES = 2000
SEED = 20261205


def _draw(p, S, rng):
    """A parameter's S samples: uniform over its range, else its value."""
    if p is None:
        return None
    v = p["value"]
    if isinstance(v, list):
        return np.tile(np.asarray(v, float), (S, 1))
    if p.get("range"):
        lo, hi = p["range"]
        return rng.uniform(lo, hi, S)
    return np.full(S, float(v))


def weibull_eta(L_ref, beta, q):
    return L_ref / (-np.log1p(-q)) ** (1.0 / beta)


def conditional_rul(a, eta, beta, u):
    """Remaining life x with P(life <= a + x | survived a) = u."""
    return eta * ((a / eta) ** beta - np.log1p(-u)) ** (1.0 / beta) - a


def col_life(life_h, n):
    """(S, n): the same life in every bin."""
    return np.repeat(np.asarray(life_h, float).reshape(-1, 1), n, axis=1)


def _life_per_bin(m, P, layout_values):
    """(S, B) life per bin and (S,) L_ref, in the mechanism's reference unit."""
    model = m["model"]
    if model == "powered":
        return col_life(P["life_h"], len(layout_values)), P["life_h"]
    if model == "arrhenius10":
        Lb = models.arrhenius_10k(layout_values, P["L0"], P["T0"], P["halving_K"])
        return Lb, P["L0"]
    if model == "arrhenius_ea":
        return models.arrhenius_ea(layout_values, P["L0"], P["T0"], P["Ea"]), P["L0"]
    if model == "peck":
        return models.peck_life(layout_values, P["L0"], P["RH0"], P["T0"], P["n"], P["Ea"]), P["L0"]
    if model == "iso281":
        Lb = models.iso281_life_h(layout_values, P["C"], P["P_static"], P["k_load"], P["rpm"], P["p"])
        Lref = models.iso281_life_h([100.0], P["C"], P["P_static"], P["k_load"], P["rpm"], P["p"])[:, 0]
        return Lb, Lref
    if model == "contactor":
        N = P["N"]
        return N, N[:, 2]
    raise ValueError(model)


def _tm21_ref(P):
    """Reported Lp per sample: the projection capped by the 6x/5.5x rule."""
    lp = np.log(100.0 * P["B"] / P["p"]) / P["alpha"]
    cap = models.tm21_limit(float(P["test_h"][0]), float(P["samples"][0]))
    return np.minimum(lp, cap)


def mechanism_damage(m, usage, P):
    """(D per sample, per-bin share of the nominal damage or None, L_ref,
    what is missing or None). usage: {hist: (bins,) seconds or operations,
    "run_h": hours running, "starts": starts}: D has shape (S,). With
    (A, bins) arrays and (A,) run_h/starts for A assets at once, D has shape
    (A, S) (the same draws for every asset) and no share is given."""
    model = m["model"]
    many = np.ndim(usage.get(m["hist"], usage.get("run_h"))) == (1 if model in ("runtime", "tm21") else 2)
    if model in ("runtime", "tm21"):
        run_h = usage.get("run_h")
        if run_h is None:
            return None, None, None, "no run time (load_s) in the history"
        run_h = np.atleast_1d(np.asarray(run_h, float))
        if model == "tm21":
            Lref = _tm21_ref(P)
            d = np.outer(run_h, 1.0 / Lref)
        else:
            d = np.zeros((run_h.size, len(next(iter(P.values())))))
            if P.get("life_h") is not None:
                d = d + np.outer(run_h, 1.0 / P["life_h"])
            if P.get("cycles") is not None:
                st = usage.get("starts")
                starts = np.atleast_1d(np.asarray(0.0 if st is None else st, float)) * np.ones(run_h.size)
                d = d + np.outer(starts, 1.0 / P["cycles"])
            Lref = P["life_h"] if P.get("life_h") is not None else P["cycles"]
        return (d if many else d[0]), None, Lref, None
    c = usage.get(m["hist"])
    if c is None:
        return None, None, None, "no %s histogram in the history" % m["hist"]
    lay = usage.get("_layouts", {}).get(m["hist"]) or bins.layout(m["hist"], usage.get("_versions", {}).get(
        m["hist"], 1))
    if lay is None:
        return None, None, None, "no bin layout for %s version %s (no birth definitions in the ledger)" % (
            m["hist"], usage["_versions"][m["hist"]])
    c = np.atleast_2d(np.asarray(c, float))
    if m["hist"] != "sw_ops":
        c = c / 3600.0                       # seconds -> hours
    Lb, Lref = _life_per_bin(m, P, lay["values"])
    inv = 1.0 / Lb                            # (S, B)
    d = c @ inv.T                             # (A, S)
    if many:
        return d, None, Lref, None
    per0 = c[0] * inv[0]
    # which bin did the damage (none for powered hours: every bin ages alike)
    share = per0 / per0.sum() if per0.sum() > 0 and m["model"] != "powered" else None
    return d[0], share, Lref, None


def evaluate_many(card, usage, recent, window_days=30.0, samples=SAMPLES, seed=SEED):
    """evaluate() for A assets at once (no condition evidence): usage and
    recent hold (A, bins) arrays and (A,) run_h/starts. The draws are the
    ones evaluate() makes for one asset, so asset i gets the same figures
    as evaluate() on its own rows. Returns {D_P50, D_P90, days_P10,
    days_P50, days_P90}: (A,) arrays (days inf where nothing is used)."""
    rng = np.random.default_rng(seed)
    S = samples
    q = value(card["weibull"]["rated_quantile"])
    d_all, days_all = [], []
    for m in card["mechanisms"]:
        P = {k: _draw(p, S, rng) for k, p in m["params"].items() if p is not None}
        beta = _draw(m["beta"] or card["weibull"]["beta"], S, rng)
        u = rng.uniform(0.0, 1.0, S)
        d, _, Lref, missing = mechanism_damage(m, usage, P)
        if missing:
            continue
        a = d * Lref
        x = conditional_rul(a, weibull_eta(Lref, beta, q), beta, u)
        dr, _, _, _ = mechanism_damage(m, recent, P)
        rate = dr / window_days
        with np.errstate(divide="ignore", invalid="ignore"):
            days_all.append(np.where(rate > 0, (x / Lref) / rate, np.inf))
        d_all.append(d)
    D = np.max(np.stack([np.percentile(d, [50, 90], axis=1) for d in d_all]), axis=0)
    first = np.min(np.stack(days_all), axis=0)
    pd = np.percentile(first, [10, 50, 90], axis=1)
    return {"D_P50": D[0], "D_P90": D[1], "days_P10": pd[0], "days_P50": pd[1], "days_P90": pd[2]}


def _collar(card, evidence):
    """(collar, cap, reasons) from condition evidence and the card's
    thresholds (CNAIM's caps and collars). evidence: vib_zone_h [A,B,C,D]
    hours in the period, error_rise (errors of the window / the one
    before), lumen_ratio (measured lux/W against the first), cap (an
    inspection's upper bound, with its reason)."""
    cond = card["condition"]
    collar, cap, reasons = 0.0, math.inf, []
    ev = evidence or {}
    vz = ev.get("vib_zone_h")
    if vz is not None:
        if cond["vib_d_h"] is not None and vz[3] > value(cond["vib_d_h"]):
            c = value(cond["collar_d"], 0.8)
            collar = max(collar, c)
            reasons.append("vibration zone D %.1f h > %s h: collar D >= %s" % (vz[3], value(cond["vib_d_h"]), c))
        if cond["vib_c_h"] is not None and vz[2] + vz[3] > value(cond["vib_c_h"]):
            c = value(cond["collar_c"], 0.5)
            collar = max(collar, c)
            reasons.append("vibration zone C/D %.1f h > %s h: collar D >= %s"
                           % (vz[2] + vz[3], value(cond["vib_c_h"]), c))
    er = ev.get("error_rise")
    if er is not None and cond["error_rise"] is not None and er > value(cond["error_rise"]):
        c = value(cond["collar_errors"], 0.5)
        collar = max(collar, c)
        reasons.append("error rate x%.1f over the previous window > x%s: collar D >= %s"
                       % (er, value(cond["error_rise"]), c))
    lr = ev.get("lumen_ratio")
    if lr is not None and cond["lumen_ratio"] is not None and lr < value(cond["lumen_ratio"]):
        c = value(cond["collar_lumen"], 0.8)
        collar = max(collar, c)
        reasons.append("lumen ratio %.3f < %s: collar D >= %s" % (lr, value(cond["lumen_ratio"]), c))
    if ev.get("cap") is not None:
        cap, why = ev["cap"]
        reasons.append("cap D <= %s: %s" % (cap, why))
    return collar, cap, reasons


def _pct(x, q):
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else None


def _dominant(m, share, usage):
    if share is None:
        return None
    lay = usage.get("_layouts", {}).get(m["hist"]) or bins.layout(m["hist"], 1)
    i = int(np.argmax(share))
    return "%.0f%% of the damage from the %s bin %s %s" % (100 * share[i], m["hist"], lay["values"][i], lay["unit"])


def evaluate(card, usage, recent=None, window_days=30.0, evidence=None, outcome_per_day=None,
             outcome_unit="units", samples=SAMPLES, seed=SEED, calibration=None):
    """Life consumed and remaining life of one component. usage: bins used
    since the component was new (all its segments); recent: the same over
    the last window_days (None: no rate, no calendar figures). calibration:
    the fleet's blend for this type (agent/collector/life/fleet.py): D is divided by
    its life_factor and its beta replaces the card's."""
    rng = np.random.default_rng(seed)
    S = samples
    collar, cap, reasons = _collar(card, evidence)
    q = value(card["weibull"]["rated_quantile"])
    out = {"card": "%s@%d" % (card["type"], card["version"]), "mechanisms": [], "uncertain": [],
           "condition": reasons}
    if calibration is not None and calibration["weight"] > 0:
        out["calibrated"] = ("fleet: %d failures, %d running, weight %.2f: life x%.2f of the rating, beta %.2f"
                             % (calibration["failures"], calibration["censored"], calibration["weight"],
                                calibration["life_factor"], calibration["blend"]["beta"]))
    days_all = []
    for m in card["mechanisms"]:
        P = {k: _draw(p, S, rng) for k, p in m["params"].items() if p is not None}
        beta = _draw(m["beta"] or card["weibull"]["beta"], S, rng)
        u = rng.uniform(0.0, 1.0, S)
        if calibration is not None and calibration["weight"] > 0:
            beta = np.full(S, calibration["blend"]["beta"])
        d, share, Lref, missing = mechanism_damage(m, usage, P)
        row = {"name": m["name"], "model": m["model"]}
        if missing:
            row["uncertain"] = missing
            out["uncertain"].append("%s: %s" % (m["name"], missing))
            out["mechanisms"].append(row)
            continue
        if calibration is not None and calibration["weight"] > 0:
            d = d / calibration["life_factor"]
        d_model = d
        d = np.clip(d, collar, cap)
        a = d * Lref
        x = conditional_rul(a, weibull_eta(Lref, beta, q), beta, u)
        row.update({"D_model_P50": _pct(d_model, 50), "D_P50": _pct(d, 50), "D_P90": _pct(d, 90),
                    "age_P50": _pct(a, 50), "ref_life_P50": _pct(Lref, 50),
                    "rul_P10": _pct(x, 10), "rul_P50": _pct(x, 50), "rul_P90": _pct(x, 90),
                    "unit": "ops" if m["hist"] == "sw_ops" or (m["model"] == "runtime" and "life_h" not in P)
                    else "h at rated conditions",
                    "dominant": _dominant(m, share, usage)})
        if recent is not None:
            dr, _, _, miss_r = mechanism_damage(m, recent, P)
            if miss_r is None and calibration is not None and calibration["weight"] > 0:
                dr = dr / calibration["life_factor"]
            if miss_r is None:
                rate = dr / window_days
                with np.errstate(divide="ignore", invalid="ignore"):
                    days = np.where(rate > 0, (x / Lref) / rate, np.inf)
                days_all.append(days)
                row["rate_per_day_P50"] = _pct(rate, 50)
                row["days_P10"], row["days_P50"], row["days_P90"] = (_pct(days, 10), _pct(days, 50), _pct(days, 90))
        out["mechanisms"].append(row)
    done = [r for r in out["mechanisms"] if "D_P90" in r]
    if done:
        out["D_P50"] = max(r["D_P50"] for r in done)
        out["D_P90"] = max(r["D_P90"] for r in done)
    if days_all:
        first = np.min(np.vstack(days_all), axis=0)
        out["days_P10"], out["days_P50"], out["days_P90"] = _pct(first, 10), _pct(first, 50), _pct(first, 90)
        worst = max((r for r in out["mechanisms"] if "rate_per_day_P50" in r), key=lambda r: r["D_P50"])
        out["rate_assumption"] = ("the damage rate of the last %.3g days continues (%s: D +%.2e per day, "
                                  "P50 of the card's range)" % (window_days, worst["name"], worst["rate_per_day_P50"]))
        if outcome_per_day:
            out["outcome_P10"], out["outcome_P50"], out["outcome_P90"] = (
                None if out[k] is None else out[k] * outcome_per_day for k in ("days_P10", "days_P50", "days_P90"))
            out["outcome_unit"] = outcome_unit
            out["outcome_per_day"] = outcome_per_day
    return out
