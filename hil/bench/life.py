"""`tally bench life`: re-evaluate every asset's life after a card change.

A fleet of `assets` pump stations (hot and cool sites, heavy and light
duty), each with six rated components (node electronics and a driver
capacitor on the temperature histogram, a humidity sensor on RH x T, a
bearing on the load histogram, a contactor on switching operations and
run time, the motor on run hours and starts), and two years of hourly
histograms per asset: each hour's histogram is 3600 s in the bin of that
hour's temperature, RH x T cell and load (when running) plus its switching
operations, kept as one bin index per hour and histogram (the hourly deltas
exactly, 1 byte each).

Timed (`reevaluate_s`, the median of `runs`): from those hourly histograms
to every component's D P50/P90 and remaining days P10/P50/P90 under a
changed card set (every card's version bumped and its Arrhenius/Peck
parameters moved): the totals and last-30-days windows of every histogram
(numpy bincount over all assets at once), then the Monte Carlo of each card
over all assets at once (agent/life/rul.evaluate_many, the same draws
rul.evaluate makes for one asset). Generating the fleet is not timed.
One core: numpy's BLAS threads are limited to one (OPENBLAS/OMP env) for
the run. Reading the histories out of the SQL ledger is not part of this
figure (docs/life.md says why)."""
import copy
import os
import statistics
import time

HOURS = 2 * 365 * 24
WINDOW_H = 30 * 24


def _fleet(assets, hours, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    h = np.arange(hours)
    day = np.sin(2 * np.pi * (h % 24) / 24.0)
    year = np.sin(2 * np.pi * h / (365 * 24.0))
    site = rng.uniform(5.0, 30.0, (assets, 1))                 # cool to hot sites
    temp = site + 6.0 * day + 8.0 * year + rng.normal(0, 2.0, (assets, hours)) + 10.0   # board above ambient
    t_idx = np.clip(np.floor((temp + 5.0) / 5.0) + 1, 0, 15).astype(np.int8)
    rh = np.clip(60 + rng.uniform(-20, 25, (assets, 1)) - 10 * day + rng.normal(0, 5, (assets, hours)), 5, 100)
    rh_bin = np.searchsorted(np.array([40.0, 60, 70, 80, 90]), rh)
    amb = temp - 10.0
    tb = np.searchsorted(np.array([15.0, 30, 45]), amb)
    rh_idx = (rh_bin * 4 + tb).astype(np.int8)
    duty = rng.uniform(0.2, 0.9, (assets, 1))                  # light to heavy duty
    running = rng.uniform(0, 1, (assets, hours)) < duty
    load = np.clip(rng.normal(rng.uniform(40, 100, (assets, 1)), 15, (assets, hours)), 0, 130)
    l_idx = np.searchsorted(np.array([10.0, 30, 50, 70, 85, 100, 115]), load).astype(np.int8)
    l_idx[~running] = -1
    starts = (running[:, 1:] & ~running[:, :-1]).astype(np.uint8)
    starts = np.concatenate([np.zeros((assets, 1), np.uint8), starts], axis=1)
    sw_idx = np.where(rng.uniform(0, 1, (assets, hours)) < 0.1, 3, 2).astype(np.int8)   # 10 % inching
    return {"t_s": t_idx, "rh_s": rh_idx, "load_s": l_idx, "starts": starts, "sw_class": sw_idx}


def _totals(idx, nbins, weight=None):
    """(A, nbins) sums of `weight` (default 3600 s) per bin over hours; idx -1 = none."""
    import numpy as np
    A = idx.shape[0]
    ok = idx >= 0
    flat = (np.arange(A).reshape(-1, 1) * nbins + idx.astype(np.int64))[ok]
    w = None if weight is None else weight[ok].astype(float)
    out = np.bincount(flat, weights=w, minlength=A * nbins).reshape(A, nbins)
    return out * 3600.0 if weight is None else out


def usage_of(fleet, start=0):
    sl = slice(start, None)
    u = {"t_s": _totals(fleet["t_s"][:, sl], 16), "rh_s": _totals(fleet["rh_s"][:, sl], 24),
         "load_s": _totals(fleet["load_s"][:, sl], 8),
         "sw_ops": _totals(fleet["sw_class"][:, sl], 4, weight=fleet["starts"][:, sl])}
    u["run_h"] = u["load_s"].sum(axis=1) / 3600.0
    u["starts"] = fleet["starts"][:, sl].sum(axis=1).astype(float)
    u["_versions"] = {}
    return u


def changed(cards):
    """The card change the bench re-evaluates after: every version bumped,
    Arrhenius and Peck activation energies and their ranges moved by +0.05 eV."""
    out = {}
    for k, c in cards.items():
        c = copy.deepcopy(c)
        c["version"] += 1
        for m in c["mechanisms"]:
            ea = m["params"].get("Ea")
            if ea:
                ea["value"] += 0.05
                if ea["range"]:
                    ea["range"] = [ea["range"][0] + 0.05, ea["range"][1] + 0.05]
        out[k] = c
    return out


def reevaluate(cards, fleet, hours, samples):
    """Every component of every asset: {card type: figures as (A,) arrays}."""
    from agent.life import rul
    u = usage_of(fleet)
    r = usage_of(fleet, hours - WINDOW_H)
    return {k: rul.evaluate_many(c, u, r, window_days=WINDOW_H / 24.0, samples=samples) for k, c in cards.items()}


def bench_life(assets=1000, hours=HOURS, runs=3, samples=None, seed=7, progress=None):
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, "1")
    import numpy as np
    from agent.life import cards as cardmod
    from agent.life import rul
    samples = samples or rul.SAMPLES
    cards = cardmod.load()
    del cards["led-engine"]                       # pump stations carry no LED engine
    if progress:
        progress("generating %d assets x %d hourly histograms" % (assets, hours))
    fleet = _fleet(assets, hours, seed)
    before = reevaluate(cards, fleet, hours, samples)
    new = changed(cards)
    times = []
    for i in range(runs):
        t = time.perf_counter()
        after = reevaluate(new, fleet, hours, samples)
        times.append(time.perf_counter() - t)
        if progress:
            progress("run %d: %.2f s" % (i + 1, times[-1]))
    moved = {k: int(np.sum(np.abs(after[k]["D_P50"] - before[k]["D_P50"]) > 1e-12)) for k in cards}
    d90 = np.max(np.stack([after[k]["D_P90"] for k in cards]), axis=0)
    return {"assets": assets, "hours": hours, "components_per_asset": len(cards), "samples": samples,
            "bins_per_asset": 16 + 24 + 8 + 4, "runs": runs, "reevaluate_s": statistics.median(times),
            "reevaluate_all_s": times, "goal_s": 60.0, "goal_met": statistics.median(times) < 60.0,
            "cards_after": sorted("%s@%d" % (c["type"], c["version"]) for c in new.values()),
            "assets_whose_figure_changed": moved,
            "fleet_D_P90": {"max": float(d90.max()), "median": float(np.median(d90))},
            "median_D_P90_per_card": {k: float(np.median(after[k]["D_P90"])) for k in sorted(cards)}}


def report(r):
    from hil.bench import print_goals
    print("Life re-evaluation after a card change: %d assets x %d hourly histograms (%d bins), "
          "%d components each, %d Monte Carlo samples" % (r["assets"], r["hours"], r["bins_per_asset"],
                                                         r["components_per_asset"], r["samples"]))
    print("  reevaluate_s (median of %d): %.2f s   runs: %s" % (r["runs"], r["reevaluate_s"],
                                                              ", ".join("%.2f" % t for t in r["reevaluate_all_s"])))
    print("  cards after the change: %s" % ", ".join(r["cards_after"]))
    print("  assets whose D P50 moved, per card: %s" % ", ".join("%s %d" % kv for kv in
                                                                  sorted(r["assets_whose_figure_changed"].items())))
    print("  fleet worst-part D_P90: median %.3f, max %.3f" % (r["fleet_D_P90"]["median"], r["fleet_D_P90"]["max"]))
    print("  median D_P90 per card after 2 years: %s" % ", ".join(
        "%s %.3f" % kv for kv in sorted(r["median_D_P90_per_card"].items())))
    if r["assets"] < 1000 or r["hours"] < HOURS:
        print("Goals: not measured at %d assets x %d hours (the goal is 1,000 x %d)" % (r["assets"], r["hours"], HOURS))
        return 0
    print_goals("Goals:", {"re-evaluate 1,000 assets x 2 years of hourly histograms in < 60 s on one core":
                           r["goal_met"] and r["assets"] >= 1000 and r["hours"] >= HOURS})
    return 0
