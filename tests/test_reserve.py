"""Prices, reserves, residual value and planned maintenance from the life
models (agent/collector/pricing.py over agent/collector/life), on recorded
histories in a real SQLite ledger (and the reserve table on PostgreSQL):
rows of exactly the shapes the stress and identity helpers write (`stress`,
`part_events`, the contract in the common brief), daily records, and a
contract file loaded through the CLI."""
import json
import sqlite3
from fractions import Fraction

import pytest

from agent import cli
from agent.collector import billing, contracts, pricing, statement
from agent.collector.store import Collector

DAY = 86400
T0 = 1_767_225_600          # 2026-01-01T00:00:00Z
STRESS = """CREATE TABLE IF NOT EXISTS stress (device TEXT NOT NULL, epoch BIGINT NOT NULL, seq BIGINT NOT NULL,
    hist TEXT NOT NULL, edges_version BIGINT NOT NULL, counts TEXT NOT NULL, PRIMARY KEY(device, epoch, seq, hist))"""
PARTS = """CREATE TABLE IF NOT EXISTS part_events (device TEXT NOT NULL, epoch BIGINT NOT NULL, seq BIGINT NOT NULL,
    idx BIGINT NOT NULL, kind TEXT NOT NULL, slot TEXT NOT NULL, component TEXT NOT NULL, wall_s BIGINT NOT NULL,
    odometers TEXT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY(device, epoch, seq, idx))"""

CONTRACT = """
[customers.acme]
name = "ACME"
[sites.plant]
customer = "acme"
name = "Plant"
[contracts.K]
customer = "acme"
sites = ["plant"]
start = 2026-01-01
end = %(end)s
metric = "units"
unit = "count"
price = "0.10"
[contracts.K.pricing]
tariff = "0.25"
capital = "1500"
residual = "100"
lifetime_units = "100000"
[[contracts.K.components]]
name = "ecap"                       # rated by the ecap card: its damage, the contract's cost
cost = "40"
rated_life = "1"
life_metric = "units"
[[contracts.K.components]]
name = "fan"                        # no card rates a fan: the contract's rated life
cost = "50"
rated_life = "100000"
life_metric = "units"
[[assignments]]
asset = "pump-a"
contract = "K"
site = "plant"
from = 2026-01-01
[[assignments]]
asset = "pump-b"
contract = "K"
site = "plant"
from = 2026-01-01
"""

# shorter lives than the shipped cards so that two months of history show wear
ECAP = """type = "ecap-105c-2000h"
version = %(version)d
title = "test capacitor"
match = ["ecap-"]
cost = {part = 4.0, labour = 30.0, new_asset = 400.0, currency = "EUR"}
[weibull]
beta = {value = 3.0, unit = "1", range = [2.0, 4.0], source = "test"}
rated_quantile = {value = 0.5, unit = "1", source = "test"}
[[mechanism]]
name = "electrolyte dry-out"
model = "arrhenius10"
L0 = {value = %(L0)d, unit = "h", source = "test"}
T0 = {value = 105, unit = "degC", source = "test"}
halving_K = {value = 10, unit = "K", range = [9, 11], source = "test"}
"""
MOTOR = """type = "pump-motor"
version = 1
title = "test motor"
match = ["motor-"]
core = true
replaceable = false
cost = {part = 250.0, labour = 80.0, new_asset = 1500.0, currency = "EUR"}
[weibull]
beta = {value = 2.0, unit = "1", source = "test"}
rated_quantile = {value = 0.1, unit = "1", source = "test"}
[[mechanism]]
name = "wear"
model = "runtime"
life_h = {value = 2000, unit = "h", source = "test"}
"""


class History:
    """Daily records (odometers units, run_time) and cumulative stress
    snapshots per device, and swap events, written as their modules write them."""

    def __init__(self, db):
        self.col = Collector(db, keys=lambda d: None)
        self.b = self.col._b
        self.b.execute(STRESS)
        self.b.execute(PARTS)

    def days(self, device, last, t_bin, t_h, load_h, units=100):
        cum_t, cum_l = [0] * 16, [0] * 8
        with self.b.transaction(write=True):
            self.b.execute("INSERT INTO schemas VALUES (?,?,?) ON CONFLICT DO NOTHING",
                           (device, 1, json.dumps([["units", "count", 0, "odometer"],
                                                   ["run_time", "s", 0, "odometer"]])))
            for d in range(0, last + 1):
                if d:
                    cum_t[t_bin] += t_h * 3600
                    cum_l[6] += load_h * 3600
                self.b.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                               (device, 1, d + 1, d + 1, 0, 1, 1, d * DAY * 1000, T0 + d * DAY, 3, 86400000,
                                json.dumps([units * d, load_h * 3600 * d]), T0 + d * DAY + 60))
                for hist, c in (("t_s", cum_t), ("load_s", cum_l)):
                    self.b.execute("INSERT INTO stress VALUES (?,?,?,?,?,?)",
                                   (device, 1, d + 1, hist, 1, json.dumps(c)))

    def event(self, device, day, idx, kind, slot, comp):
        with self.b.transaction(write=True):
            self.b.execute("INSERT INTO part_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (device, 1, day + 1, idx, kind, slot, comp, T0 + day * DAY, "{}", "swap"))


def fleet(db, tmp_path, end="2026-12-31", ecap_L0=150):
    """pump-a runs hot (62.5 degC, 20 h a day, motor at full load), pump-b
    cool (32.5 degC, motor 4 h a day), 2026-01-01 .. 02-28. ecap-0001 is in
    pump-a until 01-16, then in pump-b; ecap-0002 stays in pump-a; in pump-a's
    aux slot ecap-0003 is swapped for ecap-0004 on 01-11; sdm-0001 has no card."""
    h = History(db)
    h.days("pump-a", 58, 14, 20, 20)
    h.days("pump-b", 58, 8, 20, 4)
    for dev in ("pump-a", "pump-b"):
        h.event(dev, 0, 9, "installed", "motor", "motor-" + dev[-1])
    h.event("pump-a", 0, 0, "installed", "psu", "ecap-0001")
    h.event("pump-a", 0, 1, "installed", "psu2", "ecap-0002")
    h.event("pump-a", 0, 2, "installed", "aux", "ecap-0003")
    h.event("pump-a", 0, 3, "installed", "meter", "sdm-0001")
    h.event("pump-a", 10, 0, "removed", "aux", "ecap-0003")
    h.event("pump-a", 10, 1, "installed", "aux", "ecap-0004")
    h.event("pump-a", 15, 0, "removed", "psu", "ecap-0001")
    h.event("pump-b", 16, 0, "installed", "psu", "ecap-0001")
    cards = tmp_path / "cards"
    cards.mkdir(exist_ok=True)
    (cards / "ecap.toml").write_text(ECAP % {"version": 1, "L0": ecap_L0})
    (cards / "motor.toml").write_text(MOTOR)
    f = tmp_path / "k.toml"
    f.write_text(CONTRACT % {"end": end})
    contracts.load(h.col, str(f))
    return h, str(cards)


@pytest.fixture
def hist(tmp_path):
    h, cards = fleet(str(tmp_path / "ledger.sqlite"), tmp_path)
    yield h, cards
    h.col.close()


JAN = billing.parse_period("2026-01")
FEB = billing.parse_period("2026-02")


def rows(h, asset):
    return h.b.execute("SELECT period, kind, ref, version, amount, basis FROM reserve_entries WHERE asset=? "
                       "ORDER BY period, kind, ref, version", (asset,)).fetchall()


def test_life_used_uses_the_card_and_falls_back_to_rated_life(hist):
    h, cards = hist
    ctx = pricing.life_context(h.col, cards)
    c = contracts.stored(h.col)["contracts"]["K"]
    use, units = pricing.Usage(h.col).window("pump-a", "2026-01-01", "2026-01-31")
    life = {x["name"]: x for x in pricing.life_used(c, "pump-a", use, units, "2026-01-01", "2026-01-31", ctx)}
    ecap, fan = life["ecap"], life["fan"]
    assert ecap["source"] == "life model ecap-105c-2000h@1 (cost from the contract)" and ecap["cost"] == "40"
    # ecap-0001 (to 01-16), ecap-0002, ecap-0003 (to 01-11), ecap-0004 (from 01-11): each part's damage there
    assert {p["component"] for p in ecap["parts"]} == {"ecap-0001", "ecap-0002", "ecap-0003", "ecap-0004"}
    d = {p["component"]: Fraction(p["D_P50"]) for p in ecap["parts"]}
    assert d["ecap-0002"] > d["ecap-0001"] > 0 and abs(d["ecap-0003"] + d["ecap-0004"] - d["ecap-0002"]) < 1e-9
    assert abs(ecap["used"] - sum(d.values())) < Fraction(1, 10 ** 11) and ecap["used_p90"] > ecap["used"]
    # no card rates a fan: its units over the rated life, and the source says so
    assert fan["source"] == "rated life (contract): no life card rates a fan part"
    assert fan["used"] == Fraction(use["units"]) / 100000 == Fraction(3000, 100000)
    # the motor's card (no contract component): its own cost, part + labour
    assert life["pump-motor"]["cost"] == "330" and life["pump-motor"]["source"].startswith("life model pump-motor@1")
    # without the life models (no context) every component is the contract's rated life
    plain = pricing.life_used(c, "pump-a", use, units, "2026-01-01", "2026-01-31")
    assert [x["source"] for x in plain] == ["rated life (contract)"] * 2


def test_a_moved_part_splits_its_damage_between_the_two_reserves(hist):
    h, cards = hist
    ctx = pricing.life_context(h.col, cards)
    data = contracts.stored(h.col)
    for per in (JAN, FEB):                       # both assets' months evaluated together (one batch per card)
        pricing.post_many(h.col, data, ["pump-a", "pump-b"], per, ctx)

    def d(asset, period):
        (basis,) = [json.loads(r[5]) for r in rows(h, asset) if r[0] == period and r[1] == "accrual"]
        comp = {x["name"]: x for x in basis["components"]}["ecap"]
        return sum(Fraction(p["D_P50"]) for p in comp["parts"] if p["component"] == "ecap-0001")

    in_a, in_b = d("pump-a", "2026-01"), d("pump-b", "2026-01") + d("pump-b", "2026-02")
    assert in_a > 0 and in_b > 0
    assert in_a > 2 * in_b          # 15 days at 62.5 degC in A against 42 at 32.5 degC (8x the life) in B
    # the two assets' shares add up to the part's whole life (linear damage)
    assert abs(in_a + in_b - Fraction(repr(ctx.total("ecap-0001")["D_P50"]))) < Fraction(1, 10 ** 9)


def test_the_reserve_accrues_once_per_period_and_a_card_change_is_a_new_version(hist, tmp_path):
    h, cards = hist
    data = contracts.stored(h.col)
    for _ in range(3):                       # re-running January's statement or bills accrues nothing more
        ctx = pricing.life_context(h.col, cards)
        pricing.post(h.col, data, "pump-a", JAN, ctx)
    acc = [r for r in rows(h, "pump-a") if r[1] == "accrual"]
    assert [(r[0], r[3]) for r in acc] == [("2026-01", 1)] and acc[0][4] > 0
    first = acc[0][4]
    # a new card version (half the rated life): a second version holding the difference, the first kept
    (tmp_path / "cards" / "ecap.toml").write_text(ECAP % {"version": 2, "L0": 75})
    pricing.post(h.col, data, "pump-a", JAN, pricing.life_context(h.col, cards))
    acc = [r for r in rows(h, "pump-a") if r[1] == "accrual"]
    assert [r[3] for r in acc] == [1, 2] and acc[0][4] == first and acc[1][4] > 0
    basis = json.loads(acc[1][5])
    assert basis["adjusts"]["stored"] == first and basis["adjusts"]["now"] == first + acc[1][4]
    assert "ecap-105c-2000h@2" in json.dumps(basis["components"])
    r = pricing.reserve(h.col, data, "pump-a", "2026-01-31")
    assert [e["kind"] for e in r["months"][0]["entries"] if e["kind"].startswith("accrual")] == \
        ["accrual", "accrual adjustment"]
    pricing.post(h.col, data, "pump-a", JAN, pricing.life_context(h.col, cards))
    assert len([r for r in rows(h, "pump-a") if r[1] == "accrual"]) == 2


def test_repair_records_and_part_swaps_draw_the_reserve(tmp_path):
    db = str(tmp_path / "ledger.sqlite")
    h, cards = fleet(db, tmp_path)
    # the operator records the repair of ecap-0001 in pump-b on 01-20
    assert cli.main(["event", "add", "--db", db, "--component", "ecap-0001", "--kind", "repair",
                     "--at", "2026-01-20T10:00:00Z", "--note", "resoldered"]) == 0
    data = contracts.stored(h.col)
    ctx = pricing.life_context(h.col, cards)
    for a in ("pump-a", "pump-b"):
        pricing.post(h.col, data, a, JAN, ctx)
    draws_a = [r for r in rows(h, "pump-a") if r[1] == "draw"]
    draws_b = [r for r in rows(h, "pump-b") if r[1] == "draw"]
    # pump-a: the aux swap of 01-11 (ecap-0003 out, ecap-0004 in), costed by the contract's ecap (40.00)
    assert [(r[2], r[4]) for r in draws_a] == [("part_events pump-a epoch 1 seq 11 slot aux", -4000)]
    recs = json.loads(draws_a[0][5])["records"]
    assert {(x["kind"], x["component"]) for x in recs} == {("removed", "ecap-0003"), ("installed", "ecap-0004")}
    # pump-b: the operator's repair record (the move of ecap-0001 from A to B is no swap: no draw)
    assert [(r[2], r[4]) for r in draws_b] == [("component_records ecap-0001 repair at %d" % (T0 + 19 * DAY + 36000),
                                                -4000)]
    assert json.loads(draws_b[0][5])["records"][0]["note"] == "resoldered"
    r = pricing.reserve(h.col, data, "pump-b", "2026-01-31")
    (m,) = r["months"]
    assert m["drawn"] == 4000 and r["balance"] == m["accrued"] - 4000
    # tally price shows the stored accounts with the draws they trace to
    p = pricing.propose(h.col, "K", JAN, ctx)
    acc = {x["asset"]: x for x in p["reserve_accounts"]["assets"]}
    assert acc["pump-b"]["drawn"] == "40.00" and acc["pump-b"]["draws"][0]["ref"].startswith("component_records")
    text = pricing.render(p, "text")
    assert "drawn 40.00 on 2026-01-11: part_events pump-a epoch 1 seq 11 slot aux" in text
    h.col.close()


def test_price_reserve_per_unit_is_cost_times_damage_per_unit(hist):
    h, cards = hist
    ctx = pricing.life_context(h.col, cards)
    p = pricing.propose(h.col, "K", JAN, ctx)
    comp = {c["component"]: c for c in p["components"]}
    terms = {t["term"]: Fraction(t["per_unit"]) for t in p["terms"]}
    # P50: the median asset's D P50 per unit; P90: the 90th percentile asset's D P90 per unit; risk the gap
    per = {}
    data = contracts.stored(h.col)
    for a in ("pump-a", "pump-b"):
        use, units = pricing.Usage(h.col).window(a, "2026-01-01", "2026-01-31")
        for x in pricing.life_used(data["contracts"]["K"], a, use, units, "2026-01-01", "2026-01-31", ctx):
            per.setdefault(x["name"], []).append((x["used"] / 3000, x["used_p90"] / 3000))
    e = per["ecap"]
    assert abs(Fraction(comp["ecap"]["life_used_per_unit_p50"]) - min(x[0] for x in e)) < Fraction(1, 10 ** 12)
    assert abs(Fraction(comp["ecap"]["life_used_per_unit_p90"]) - max(x[1] for x in e)) < Fraction(1, 10 ** 12)
    assert terms["risk"] > 0
    assert abs(terms["maintenance_reserve"] - sum(Fraction(c["cost"]) * Fraction(c["life_used_per_unit_p50"])
                                                  for c in comp.values())) < Fraction(1, 10 ** 5)
    # the core motor is rated, so the capital term uses the life model's residual value
    assert "valued by the life models" in [t for t in p["terms"] if t["term"] == "capital"][0]["how"]


def test_residual_value_falls_as_core_damage_rises(tmp_path):
    h, cards = fleet(str(tmp_path / "l.sqlite"), tmp_path, end="2026-03-31")
    try:
        ctx = pricing.life_context(h.col, cards)
        c = contracts.stored(h.col)["contracts"]["K"]
        rv = {}
        for a in ("pump-a", "pump-b"):
            use, units = pricing.Usage(h.col).window(a, "2026-02-01", "2026-02-28")
            life = pricing.life_used(c, a, use, units, "2026-02-01", "2026-02-28", ctx)
            rv[a] = pricing.residual_value(ctx, c, a, "2026-02-28",
                                           pricing.rates_of(life, "2026-02-01", "2026-02-28", "2026-02-28"))
    finally:
        h.col.close()
    a, b = rv["pump-a"], rv["pump-b"]
    # pump-a's motor ran 20 h a day, pump-b's 4 h: its core is worn past core_max, pump-b's is not
    assert Fraction(a["D_core_P90_end"]) > Fraction(b["D_core_P90_end"])
    assert a["value"] < b["value"]
    assert b["option"].startswith("remanufacture (R5)") and a["option"].startswith("harvest parts (R6)")
    # pump-b: K x (1 - D_core) less restoring its wear part (ecap-0001 at the contract's cost 40)
    d = Fraction(b["D_core_P90_end"])
    restore = Fraction(b["restore_wear_parts"])
    assert abs(b["value"] - (1500 * (1 - d) - restore)) < Fraction(1, 100) and restore > 0     # shown rounded
    # pump-a: scrap (pricing.residual) plus the part cost of its spares (D_P90 < 0.5)
    assert a["value"] == 100 + 4 * len(a["spares"])


def test_statement_plans_maintenance_of_a_part_nearing_the_warning_value(tmp_path):
    db = str(tmp_path / "s.sqlite")
    h, cards = fleet(db, tmp_path)
    try:
        ctx = pricing.life_context(h.col, cards)
        tot = ctx.total("ecap-0002")
        st = statement.build(h.col, "acme", FEB, cards_dir=cards)
    finally:
        h.col.close()
    assert 0.3 < tot["D_P90"] < 0.8
    plan = {(p["asset"], p["component"]): p for p in st["maintenance"]["planned"]}
    p = plan[("pump-a", "ecap-0002")]
    # the date at the current damage rate: D_P90 now + February's rate per day x days reaches 0.8
    rate = Fraction(p["why"].split(" + ")[1].split(" per day")[0])
    days = (datetime_date(p["due"]) - datetime_date("2026-02-28")).days
    assert Fraction(p["D_P90"]) + rate * (days - 1) < Fraction(8, 10) <= Fraction(p["D_P90"]) + rate * days
    assert p["rule"].startswith("R1 ")
    a = {x["asset"]: x for x in st["assets"]}["pump-a"]
    assert a["residual_value_inputs"]["source"] == "life model ecap-105c-2000h@1, pump-motor@1"
    assert a["next_use_now"]["trace"][0]["rule"] == "R0"
    # the statement's bills carry the same reserve accounts it posted
    assert {r["asset"] for r in st["bills"][0]["reserve"]} == {"pump-a", "pump-b"}
    rows_ = sqlite3.connect(db).execute("SELECT COUNT(*) FROM reserve_entries WHERE period='2026-02'").fetchone()
    assert rows_[0] >= 2


def datetime_date(s):
    import datetime
    return datetime.date.fromisoformat(s)


def test_reserve_table_on_postgresql(postgres, tmp_path):
    h, cards = fleet(postgres, tmp_path)
    try:
        data = contracts.stored(h.col)
        for _ in range(2):
            pricing.post(h.col, data, "pump-a", JAN, pricing.life_context(h.col, cards))
        r = pricing.reserve(h.col, data, "pump-a", "2026-01-31")
    finally:
        h.col.close()
    (m,) = r["months"]
    assert [e["kind"] for e in m["entries"]] == ["accrual", "draw"]
    assert m["drawn"] == 4000 and m["accrued"] > 0


def test_report_shows_the_reserve_and_bad_life_inputs_are_one_line(tmp_path, capsys):
    db = str(tmp_path / "ledger.sqlite")
    h, cards = fleet(db, tmp_path)
    h.col.close()
    for _ in range(2):
        assert cli.main(["report", "--db", db, "--by", "contract", "--period", "2026-01"]) == 0
        out = capsys.readouterr().out
    assert "drawn 40.00 on 2026-01-11: part_events pump-a epoch 1 seq 11 slot aux (contract K component ecap)" in out
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM reserve_entries WHERE kind='accrual'").fetchone() == (2,)
    for args, needle in ((["price", "--contract", "K", "--cards", str(tmp_path / "none")], "is not a folder"),
                         (["statement", "--customer", "acme", "--period", "2026-01", "--key", "k", "--out",
                           str(tmp_path / "s"), "--cards", str(tmp_path / "none")], "is not a folder")):
        rc = cli.main(args + ["--db", db])
        err = capsys.readouterr().err
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.toml").write_text(ECAP.replace('unit = "h", source = "test"}', 'source = "test"}')
                                             % {"version": 1, "L0": 100})
    before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM reserve_entries").fetchone()
    rc = cli.main(["price", "--db", db, "--contract", "K", "--cards", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "parameter L0 has no unit" in err and len(err.strip().splitlines()) == 1
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM reserve_entries").fetchone() == before
