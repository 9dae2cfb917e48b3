"""Fleet calibration (CIRCULAR.md §2.0): per component type, a Weibull on
the usage time scale from the fleet's own parts, failed ones as failures
and running ones right-censored, fitted with `reliability`'s
Fit_Weibull_2P (maximum likelihood with right censoring; not hand-written)
and blended with the card's rated prior.

The time scale is the life fraction D (nominal card values, the component's
worst mechanism): a part's age is the share of its rated life its stress
history has used, so parts of one type from hot and cool sites, heavy and
light duty, sit on one scale. The prior is the rating itself: on that scale
eta_prior = 1 / (-ln(1 - q))^(1/beta) (L_ref at the rated quantile q is D = 1).

Blend: below `min_failures` (5) failures the prior stands and the fit is
only shown (from 2 failures on); from 5, log(eta) and beta are the weighted
means w * fit + (1 - w) * prior with w = n / (n + n0), n0 = 5 pseudo-failures
for the prior. life_factor = eta_blend / eta_prior: above 1 the parts of
this type outlive their rating in this fleet, below 1 they die sooner.
With `[usage] calibrate = true` in the life config, the figures use the
blend: D is divided by life_factor and the Weibull slope is the blended one.
A component whose history is uncertain is left out and counted (one whose
only doubt is its recent usage rate, after a gap in its snapshots, is not:
its life fraction is a difference of cumulative counts either way)."""
import math

import numpy as np

from agent.collector.life import cards as cardmod
from agent.collector.life import rul

MIN_FAILURES = 5
PRIOR_WEIGHT = 5.0


def nominal_fraction(card, usage):
    """The life fraction used at the card's nominal values (worst mechanism), or None."""
    worst = None
    for m in card["mechanisms"]:
        P = {k: (np.asarray([p["value"]], float) if not isinstance(p["value"], list)
                 else np.asarray([p["value"]], float)) for k, p in m["params"].items() if p is not None}
        d, _, _, missing = rul.mechanism_damage(m, usage, P)
        if missing is None:
            v = float(np.ravel(d)[0])
            worst = v if worst is None else max(worst, v)
    return worst


def calibrate(failures, censored, beta_prior, q):
    """The prior, the fit (>= 2 failures) and the blend for one type."""
    eta_prior = 1.0 / (-math.log1p(-q)) ** (1.0 / beta_prior)
    out = {"failures": len(failures), "censored": len(censored),
           "prior": {"eta": eta_prior, "beta": beta_prior}, "fit": None, "weight": 0.0,
           "blend": {"eta": eta_prior, "beta": beta_prior}, "life_factor": 1.0}
    if len(failures) < 2:
        out["note"] = "fewer than 2 failures: no fit; the rating stands"
        return out
    from reliability.Fitters import Fit_Weibull_2P
    # CI=0.9: the bounds are the two-sided 90 % ones their names say (the
    # library's default is 95 %, which these keys carried before)
    f = Fit_Weibull_2P(failures=list(failures), right_censored=list(censored) or None, CI=0.9,
                       show_probability_plot=False, print_results=False)
    out["fit"] = {"eta": float(f.alpha), "beta": float(f.beta), "eta_90ci": [float(f.alpha_lower),
                  float(f.alpha_upper)], "beta_90ci": [float(f.beta_lower), float(f.beta_upper)]}
    if len(failures) < MIN_FAILURES:
        out["note"] = "fewer than %d failures: the fit is shown, the rating stands" % MIN_FAILURES
        return out
    w = len(failures) / (len(failures) + PRIOR_WEIGHT)
    eta = math.exp(w * math.log(f.alpha) + (1 - w) * math.log(eta_prior))
    beta = float(w * f.beta + (1 - w) * beta_prior)
    out.update({"weight": w, "blend": {"eta": eta, "beta": beta}, "life_factor": eta / eta_prior})
    return out


def fleet(ledger, cards):
    """{card ref: calibration + the components behind it}."""
    by_type = {}
    for comp in ledger.components():
        card = cardmod.for_component(cards, comp, ledger.part_numbers.get(comp))
        if card is None:
            continue
        e = by_type.setdefault(cardmod.ref(card), {"card": card, "failed": [], "running": [], "left_out": []})
        notes = getattr(ledger, "rate_notes", {}).get(comp, [])
        if any(r not in notes for r in ledger.uncertain.get(comp, [])):
            e["left_out"].append(comp)            # its history is uncertain (a gap in the recent rate is not)
            continue
        d = nominal_fraction(card, ledger.usage(comp))
        if d is None or d <= 0:
            e["left_out"].append(comp)
            continue
        failed = any(r["kind"] == "failure" for r in ledger.records.get(comp, []))
        (e["failed"] if failed else e["running"]).append((comp, d))
    out = {}
    for ref, e in sorted(by_type.items()):
        card = e["card"]
        beta = cardmod.value(card["weibull"]["beta"])
        q = cardmod.value(card["weibull"]["rated_quantile"])
        c = calibrate([d for _, d in e["failed"]], [d for _, d in e["running"]], beta, q)
        c.update({"card": ref, "failed_parts": [x for x, _ in e["failed"]], "left_out": e["left_out"]})
        out[card["type"]] = c
    return out
