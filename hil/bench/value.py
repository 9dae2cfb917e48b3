"""`tally bench value`: how long a signed monthly statement (JSON, HTML and
PDF) takes for a customer with 100 assets, and a price proposal for a
contract of 1,000 assets (goals: statement_s < 10 s, price_s < 5 s;
issue 17). Medians of `repeat` runs; nothing is asserted.

The ledgers are written straight into SQLite (the collector's own tables,
made by Collector): one month (2026-01) of records per asset with rising
odometers (run_time, cycles, energy, air) and a gauge, each asset its own
epoch, wall times of quality 3 (simulated) so the timeline places them as
they are. The statement ledger has a record every 15 minutes (297,600
records for 100 assets), the price ledger one an hour (744,000 for 1,000).
Every asset has three parts that the shipped life cards rate (a bearing, a
motor core and a capacitor: part_events at its first record) and a daily
cumulative stress snapshot (t_s, load_s), so the price and the statement
take the life models' path (docs/contracts.md). Building them is not timed."""
import os
import statistics
import tempfile
import time

from hil.bench import print_goals

T0 = 1767225600           # 2026-01-01T00:00Z
DAYS = 31
SCHEMA = ('[["run_time","s",0,"odometer"],["cycles","count",0,"odometer"],["energy","Wh",-3,"odometer"],'
          '["air","m3",-3,"odometer"],["vbus_min","V",-3,"gauge:min"]]')

CONTRACT = """
[customers.cust]
name = "Bench customer"
[sites.plant]
customer = "cust"
name = "Plant"
[contracts.K]
customer = "cust"
sites = ["plant"]
start = 2026-01-01
end = 2027-12-31
metric = "air"
unit = "m3"
tiers = [{upto = "100000", price = "0.020"}, {price = "0.015"}]
base_fee = "500.00"
minimum = "100.00"
[contracts.K.service]
availability = "0.99"
availability_credit = "0.05"
bands = [{name = "supply voltage", metric = "vbus_min", min = "23.0", max = "25.0", share = "0.95", credit = "0.01"}]
[contracts.K.pricing]
tariff = "0.25"
capital = "1500"
residual = "300"
lifetime_units = "2000000"
lifetime_years = "10"
lifetime_years_av = "8"
units_per_year_av = "200000"
service_per_unit = "0.002"
margin = "0.12"
[contracts.K.baseline]
kwh_per_unit = "0.13"
grid_kg_per_kwh = "0.35"
best_kwh_per_unit = "0.09"
[[contracts.K.components]]
name = "bearing"
cost = "128"
rated_life = "20000"
life_metric = "run_time"
life_unit = "h"
[[contracts.K.components]]
name = "contactor"
cost = "45"
rated_life = "1000000"
life_metric = "cycles"
"""


def build(path, assets, ival_s):
    """A ledger of `assets` assets with a record every ival_s for January 2026,
    and the contract file that assigns them all to contract K."""
    from agent.collector.store import Collector
    Collector(path, keys=lambda d: None).close()
    import sqlite3
    c = sqlite3.connect(path)
    n = DAYS * 86400 // ival_s
    with c:
        for i in range(assets):
            dev = "bench-%04d" % i
            epoch = 1000 + i
            c.execute("INSERT INTO schemas VALUES (?,?,?)", (dev, 1, SCHEMA))
            c.execute("INSERT INTO epochs VALUES (?,?,?)", (dev, epoch, 1))
            rows = []
            run = cyc = wh = air = 0
            for k in range(n):
                on = ival_s * (6 + (i + k) % 4) // 10           # 60..90 % duty
                run += on
                cyc += 1 + (k % 3 == 0)
                wh += on * (5000 + 37 * (i % 11))               # mWh: ~18 kW while running
                air += on * (40 + i % 7)                         # litres: 2.4..2.8 m3/min
                rows.append((dev, epoch, k + 1, k + 1, 0, 1, 1, k * ival_s * 1000, T0 + k * ival_s, 3,
                             ival_s * 1000, "[%d,%d,%d,%d,%d]" % (run, cyc, wh, air, 23800 + (k % 50)),
                             float(T0 + (k + 1) * ival_s)))
            c.executemany("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            _parts(c, dev, epoch, i, ival_s)
    c.close()
    toml = path + ".toml"
    with open(toml, "w") as f:
        f.write(CONTRACT)
        for i in range(assets):
            f.write('[[assignments]]\nasset = "bench-%04d"\ncontract = "K"\nsite = "plant"\nfrom = 2026-01-01\n' % i)
    return toml, assets * n


STRESS = ("CREATE TABLE IF NOT EXISTS stress (device TEXT NOT NULL, epoch INT NOT NULL, seq INT NOT NULL, "
          "hist TEXT NOT NULL, edges_version INT NOT NULL, counts TEXT NOT NULL, PRIMARY KEY(device, epoch, seq, hist))")
PARTS = ("CREATE TABLE IF NOT EXISTS part_events (device TEXT NOT NULL, epoch INT NOT NULL, seq INT NOT NULL, "
         "idx INT NOT NULL, kind TEXT NOT NULL, slot TEXT NOT NULL, component TEXT NOT NULL, wall_s INT NOT NULL, "
         "odometers TEXT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY(device, epoch, seq, idx))")


def _parts(c, dev, epoch, i, ival_s):
    """Three rated parts installed at the first record, and a cumulative
    t_s and load_s snapshot at the last record of each day (the shapes of
    the stress and identity helpers' tables)."""
    c.execute(STRESS)
    c.execute(PARTS)
    for idx, (slot, comp) in enumerate((("de", "bearing-%04d" % i), ("motor", "motor-%04d" % i),
                                        ("psu", "ecap-%04d" % i))):
        c.execute("INSERT INTO part_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                  (dev, epoch, 1, idx, "installed", slot, comp, T0, "{}", "boot"))
    t, load = [0] * 16, [0] * 8
    per_day = 86400 // ival_s
    rows = []
    for d in range(DAYS + 1):
        if d:
            t[7 + i % 7] += 18 * 3600                 # 18 h a day at 30..60 degC
            load[5] += (10 + i % 9) * 3600            # 10..18 h a day at 85..100 % load
        seq = 1 if d == 0 else d * per_day
        rows += [(dev, epoch, seq, "t_s", 1, "[%s]" % ",".join(map(str, t))),
                 (dev, epoch, seq, "load_s", 1, "[%s]" % ",".join(map(str, load)))]
    c.executemany("INSERT INTO stress VALUES (?,?,?,?,?,?)", rows)


def _median(fn, repeat):
    """(median wall s, the wall times, median CPU s of this process): the CPU
    time says what the run costs on a machine shared with other work."""
    ts, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(ts), ts, statistics.median(cpu)


def _walk_figures(col, recs, repeat):
    """The store's record walk on the statement ledger, every asset: placed
    in time (Collector._walk through timeline.placed, what the bills and
    the statement read), and Collector.ledger() and summary() of each."""
    from agent.collector import timeline
    devs = col.devices()

    def walk():
        for dev in devs:
            for _ in timeline.placed(col._walk(dev)):
                pass
    out = {}
    out["walk_s"], _, out["walk_cpu_s"] = _median(walk, repeat)
    out["walk_records_per_s"] = round(recs / out["walk_s"])
    out["ledger_s"], _, out["ledger_cpu_s"] = _median(col.ledger, repeat)
    out["summary_s"], _, out["summary_cpu_s"] = _median(lambda: [col.summary(dev) for dev in devs], repeat)
    return out


def bench_value(repeat=3, progress=None, statement_assets=100, price_assets=1000):
    from agent.collector import billing, contracts, pricing, statement
    say = progress or (lambda s: None)
    out = {"repeat": repeat}
    with tempfile.TemporaryDirectory() as d:
        statement.keygen(os.path.join(d, "prov"))
        per = billing.parse_period("2026-01")
        say("building the statement ledger: %d assets, a record every 15 min for 31 days" % statement_assets)
        db = os.path.join(d, "s.sqlite")
        toml, recs = build(db, statement_assets, 900)
        col = billing.open_ledger(db)
        contracts.load(col, toml)

        def one_statement():
            st = statement.build(col, "cust", per)
            statement.write(st, os.path.join(d, "prov.key"), os.path.join(d, "st"))
        say("statement: %d runs" % repeat)
        out["statement_s"], out["statement_runs_s"], out["statement_cpu_s"] = _median(one_statement, repeat)
        out["statement_assets"], out["statement_records"] = statement_assets, recs
        out["statement_pdf_bytes"] = os.path.getsize(os.path.join(d, "st.pdf"))
        out["statement_html_bytes"] = os.path.getsize(os.path.join(d, "st.html"))
        say("the record walk on that ledger: %d runs" % repeat)
        out.update(_walk_figures(col, recs, repeat))
        col.close()
        say("building the price ledger: %d assets, a record an hour for 31 days" % price_assets)
        db = os.path.join(d, "p.sqlite")
        toml, recs = build(db, price_assets, 3600)
        col = billing.open_ledger(db)
        contracts.load(col, toml)
        say("price: %d runs" % repeat)
        res = {}
        out["price_s"], out["price_runs_s"], out["price_cpu_s"] = _median(
            lambda: res.update(pricing.propose(col, "K", per)), repeat)
        out["price_assets"], out["price_records"] = price_assets, recs
        out["proposed_price_per_unit"] = res["proposed_price_per_unit"]
        col.close()
    out["goals"] = {"statement_s < 10": out["statement_s"] < 10, "price_s < 5": out["price_s"] < 5}
    return out


def report(r):
    print("tally bench value: medians of %d runs" % r["repeat"])
    print("  statement, %d assets, %d records (JSON+HTML+PDF, signed): %.2f s (CPU %.2f s)  (%d B PDF, %d B HTML)"
          % (r["statement_assets"], r["statement_records"], r["statement_s"], r["statement_cpu_s"],
             r["statement_pdf_bytes"], r["statement_html_bytes"]))
    if "walk_s" in r:
        print("  record walk, placed, %d records: %.2f s (CPU %.2f s), %d records/s; ledger() %.2f s "
              "(CPU %.2f s); summary() of every asset %.2f s (CPU %.2f s)"
              % (r["statement_records"], r["walk_s"], r["walk_cpu_s"], r["walk_records_per_s"], r["ledger_s"],
                 r["ledger_cpu_s"], r["summary_s"], r["summary_cpu_s"]))
    print("  price proposal, %d assets, %d records: %.2f s (CPU %.2f s)  (proposed %s per m3)"
          % (r["price_assets"], r["price_records"], r["price_s"], r["price_cpu_s"], r["proposed_price_per_unit"]))
    print_goals("goals", r["goals"])
    return 0
