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
over all assets at once (agent/collector/life/rul.evaluate_many, the same draws
rul.evaluate makes for one asset). Generating the fleet is not timed.
One core: numpy's BLAS threads are limited to one (OPENBLAS/OMP env) for
the run. Reading the histories out of the SQL ledger is not part of this
figure (docs/life.md says why); `ledger_asset_s` times it for one asset:
two years of hourly snapshots in a SQLite ledger, read and evaluated as
`tally life --asset` does."""
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
    from agent.collector.life import rul
    u = usage_of(fleet)
    r = usage_of(fleet, hours - WINDOW_H)
    return {k: rul.evaluate_many(c, u, r, window_days=WINDOW_H / 24.0, samples=samples) for k, c in cards.items()}


def ledger_asset(fleet, hours, tmpdir, runs=3):
    """Seconds (median of runs) for `tally life --asset`'s work on a SQLite
    ledger holding one asset's two years of hourly snapshots (one record and
    four histogram rows per hour, as the stress helper stores them) and six
    parts: Ledger(col, asset) + rules.assess."""
    import json
    import os as _os
    from agent.collector.components import Ledger
    from agent.collector.store import Collector
    from agent.collector.life import cards as cardmod
    from agent.collector.life import rules
    path = _os.path.join(tmpdir, "ledger.sqlite")
    col = Collector(path, keys=lambda d: None)
    b = col._b
    b.execute("CREATE TABLE IF NOT EXISTS stress (device TEXT NOT NULL, epoch INT NOT NULL, seq INT NOT NULL, "
              "hist TEXT NOT NULL, edges_version INT NOT NULL, counts TEXT NOT NULL, "
              "PRIMARY KEY (device, epoch, seq, hist))")
    b.execute("CREATE TABLE IF NOT EXISTS part_events (device TEXT NOT NULL, epoch INT NOT NULL, seq INT NOT NULL, "
              "idx INT NOT NULL, kind TEXT NOT NULL, slot TEXT NOT NULL, component TEXT NOT NULL, "
              "wall_s INT NOT NULL, odometers TEXT NOT NULL, detail TEXT NOT NULL, "
              "PRIMARY KEY (device, epoch, seq, idx))")
    one = {k: v[:1] for k, v in fleet.items()}
    t0 = 1767225600
    cum = {"t_s": [0] * 16, "rh_s": [0] * 24, "load_s": [0] * 8, "sw_ops": [0] * 4}
    recs, rows = [], []
    for h in range(hours):
        cum["t_s"][int(one["t_s"][0, h])] += 3600
        cum["rh_s"][int(one["rh_s"][0, h])] += 3600
        if one["load_s"][0, h] >= 0:
            cum["load_s"][int(one["load_s"][0, h])] += 3600
        cum["sw_ops"][int(one["sw_class"][0, h])] += int(one["starts"][0, h])
        recs.append(("site-0", 1, h, h, 0, 1, 1, h * 3600000, t0 + h * 3600, 3, 3600000, "[]", t0 + h * 3600 + 5))
        rows.extend(("site-0", 1, h, k, 1, json.dumps(v)) for k, v in cum.items())
    with b.transaction(write=True):
        b.conn.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", recs)
        b.conn.executemany("INSERT INTO stress VALUES (?,?,?,?,?,?)", rows)
        for i, c in enumerate(("esp32-00000000aaaa", "ecap-0001", "sht4x-00000001", "bearing-0001",
                               "contactor-0001", "motor-0001")):
            b.execute("INSERT INTO part_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                      ("site-0", 1, 0, i, "installed", "slot%d" % i, c, t0, "{}", "boot"))
    cards = cardmod.load()
    cfg = rules.load_config()
    times, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        r = rules.assess(Ledger(col, asset="site-0"), cards, cfg, asset="site-0", store=False)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    col.close()
    return statistics.median(times), statistics.median(cpu), len(rows), r["assets"]["site-0"]["health"]


def bench_life(assets=1000, hours=HOURS, runs=3, samples=None, seed=7, progress=None):
    for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, "1")
    import numpy as np
    from agent.collector.life import cards as cardmod
    from agent.collector.life import rul
    samples = samples or rul.SAMPLES
    cards = cardmod.load()
    del cards["led-engine"]                       # pump stations carry no LED engine
    if progress:
        progress("generating %d assets x %d hourly histograms" % (assets, hours))
    fleet = _fleet(assets, hours, seed)
    before = reevaluate(cards, fleet, hours, samples)
    new = changed(cards)
    times, cpu = [], []
    for i in range(runs):
        t, c = time.perf_counter(), time.process_time()
        after = reevaluate(new, fleet, hours, samples)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if progress:
            progress("run %d: %.2f s" % (i + 1, times[-1]))
    moved = {k: int(np.sum(np.abs(after[k]["D_P50"] - before[k]["D_P50"]) > 1e-12)) for k in cards}
    import tempfile
    if progress:
        progress("one asset's two years through the SQL ledger")
    with tempfile.TemporaryDirectory() as tmp:
        asset_s, asset_cpu, asset_rows, asset_health = ledger_asset(fleet, hours, tmp, runs)
    d90 = np.max(np.stack([after[k]["D_P90"] for k in cards]), axis=0)
    return {"assets": assets, "hours": hours, "components_per_asset": len(cards), "samples": samples,
            "bins_per_asset": 16 + 24 + 8 + 4, "runs": runs, "reevaluate_s": statistics.median(times),
            "reevaluate_all_s": times, "reevaluate_cpu_s": statistics.median(cpu), "goal_s": 60.0, "goal_met": statistics.median(times) < 60.0,
            "cards_after": sorted("%s@%d" % (c["type"], c["version"]) for c in new.values()),
            "assets_whose_figure_changed": moved,
            "fleet_D_P90": {"max": float(d90.max()), "median": float(np.median(d90))},
            "median_D_P90_per_card": {k: float(np.median(after[k]["D_P90"])) for k in sorted(cards)},
            "ledger_asset_s": asset_s, "ledger_asset_cpu_s": asset_cpu, "ledger_asset_rows": asset_rows, "ledger_asset_health": asset_health}


def report(r):
    from hil.bench import print_goals
    print("Life re-evaluation after a card change: %d assets x %d hourly histograms (%d bins), "
          "%d components each, %d Monte Carlo samples" % (r["assets"], r["hours"], r["bins_per_asset"],
                                                         r["components_per_asset"], r["samples"]))
    print("  reevaluate_s (median of %d): %.2f s wall, %.2f s CPU   runs: %s" % (
        r["runs"], r["reevaluate_s"], r["reevaluate_cpu_s"], ", ".join("%.2f" % t for t in r["reevaluate_all_s"])))
    print("  cards after the change: %s" % ", ".join(r["cards_after"]))
    print("  assets whose D P50 moved, per card: %s" % ", ".join("%s %d" % kv for kv in
                                                                  sorted(r["assets_whose_figure_changed"].items())))
    print("  fleet worst-part D_P90: median %.3f, max %.3f" % (r["fleet_D_P90"]["median"], r["fleet_D_P90"]["max"]))
    print("  one asset through the SQL ledger (tally life --asset: %d stress rows, six parts): %.2f s wall, "
          "%.2f s CPU, health %s" % (r["ledger_asset_rows"], r["ledger_asset_s"], r["ledger_asset_cpu_s"],
                                     r["ledger_asset_health"]))
    print("  median D_P90 per card after 2 years: %s" % ", ".join(
        "%s %.3f" % kv for kv in sorted(r["median_D_P90_per_card"].items())))
    if r["assets"] < 1000 or r["hours"] < HOURS:
        print("Goals: not measured at %d assets x %d hours (the goal is 1,000 x %d)" % (r["assets"], r["hours"], HOURS))
        return 0
    print_goals("Goals:", {"re-evaluate 1,000 assets x 2 years of hourly histograms in < 60 s on one core":
                           r["goal_met"] and r["assets"] >= 1000 and r["hours"] >= HOURS})
    return 0
