"""Customers, sites, contracts and assignments (`tally contract`), bills per
contract and customer (`tally report --by`) and price proposals (`tally
price`), on a real SQLite ledger made by the fleet simulator, and the
contract tables on PostgreSQL."""
import csv
import io
import json
import shutil
import sqlite3
from fractions import Fraction

import pytest

from agent import cli
from agent.collector import contracts
from agent.collector.store import Collector

import pathlib

from conftest import ROOT as _ROOT

ROOT = pathlib.Path(_ROOT)

EXAMPLE = ROOT / "docs" / "contracts.example.toml"


@pytest.fixture(scope="session")
def sim_db(tmp_path_factory):
    """Two emulated compressors for two days (2026-01-01 and -02), 5 % of
    messages lost in transit; shared read-only, copied by the tests."""
    from hil.harness.sim import simulate
    path = str(tmp_path_factory.mktemp("sim") / "sim.sqlite")
    rep = simulate(devices=2, days=2, db=path, loss=0.05, seed=3)
    assert rep["reconciled"]
    return path


@pytest.fixture
def db(sim_db, tmp_path):
    p = str(tmp_path / "ledger.sqlite")
    shutil.copy(sim_db, p)
    return p


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def contract_rows(db):
    c = sqlite3.connect(db)
    try:
        return {t: c.execute("SELECT * FROM %s ORDER BY 1, 2" % t).fetchall()
                for t in ("customers", "sites", "contracts", "assignments", "repairs")}
    finally:
        c.close()


def bills_json(capsys, db, by="contract", period="2026-01"):
    rc, out, err = run(capsys, "report", "--db", db, "--by", by, "--period", period, "--format", "json")
    assert rc == 0, err
    return json.loads(out)


def test_load_list_and_bills_trace_to_the_ledger(db, capsys):
    rc, out, err = run(capsys, "contract", "load", str(EXAMPLE), "--db", db)
    assert rc == 0 and "2 new contracts, 3 new assignments" in err
    rc, out, _ = run(capsys, "contract", "list", "--db", db)
    assert "asset sim-002 at site acme-north from 2026-01-01 to 2026-01-01" in out
    # loading the same file again changes nothing
    before = contract_rows(db)
    assert run(capsys, "contract", "load", str(EXAMPLE), "--db", db)[0] == 0
    assert contract_rows(db) == before

    rep = bills_json(capsys, db)
    col = Collector(db, keys=lambda d: None)
    led = col.ledger()
    col.close()
    air = {(d, day): Fraction(use.get("air", 0), 1000) for d, days in led.items() for day, use in days.items()}
    acme, brio = [g["bills"][0] for g in rep["groups"]]
    # sim-002 moved on the 2nd: ACME bills its first day, Brio its second
    want_acme = air["sim-001", "2026-01-01"] + air["sim-001", "2026-01-02"] + air["sim-002", "2026-01-01"]
    assert Fraction(acme["quantity"]) == want_acme
    assert Fraction(brio["quantity"]) == air["sim-002", "2026-01-02"]
    src = acme["lines"][0]["sources"]
    assert {s["asset"] for s in src} == {"sim-001", "sim-002"}
    for s in src:                      # each range's quantity is its records' usage
        assert s["to_seq"] >= s["from_seq"]
    by_asset = {}
    for s in src:
        by_asset[s["asset"]] = by_asset.get(s["asset"], 0) + Fraction(s["quantity"])
    assert by_asset["sim-002"] == air["sim-002", "2026-01-01"]
    assert max(s["to_seq"] for s in src if s["asset"] == "sim-002") < \
        min(s["from_seq"] for s in brio["lines"][0]["sources"])
    # tiers: the first 10 m3 at 0.050, the rest at 0.030, each line rounded once
    t1, t2 = acme["lines"][0], acme["lines"][1]
    assert want_acme > 10
    assert (t1["quantity"], t1["amount"]) == ("10", "0.50")
    assert Fraction(t2["quantity"]) == want_acme - 10
    assert Fraction(t2["amount"]) == Fraction(round((want_acme - 10) * Fraction("0.030") * 100), 100)
    # the bill equals the sum of its lines to the cent, and a missed level credits
    for b in (acme, brio):
        assert sum(Fraction(x["amount"]) for x in b["lines"]) == Fraction(b["total"])
    avail = [lv for lv in acme["service_levels"] if lv["name"] == "availability"][0]
    assert not avail["met"]                 # two days of data in a 31-day month
    credit = [x for x in acme["lines"] if x["item"] == "service credit: availability"][0]
    gross = sum(Fraction(x["amount"]) for x in acme["lines"] if not x["item"].startswith("service credit"))
    assert Fraction(credit["amount"]) == -Fraction(round(gross * Fraction("0.05") * 100), 100)
    q = {x["asset"]: x for x in acme["data_quality"]}
    assert q["sim-001"]["days_with_data"] == 2 and "2026-01-31" in q["sim-001"]["days_without_data"]

    cust = bills_json(capsys, db, by="customer")
    assert [g["id"] for g in cust["groups"]] == ["acme", "brio"]
    assert cust["groups"][0]["totals"] == {"EUR": acme["total"]}
    rc, text, _ = run(capsys, "report", "--db", db, "--by", "customer", "--period", "2026-01", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sum(Fraction(r["amount"]) for r in rows if r["contract"] == "AIR-ACME-2026") == Fraction(acme["total"])
    assert "seq" in rows[0]["sources"]
    # the rate card keeps working on the same ledger
    rc, out, err = run(capsys, "report", "--db", db, "--rates", str(ROOT / "docs" / "rates.example.toml"),
                       "--period", "2026-01", "--format", "json")
    assert rc == 0, err
    assert Fraction(json.loads(out)["total"]) > 0


def test_minimum_and_three_decimal_currency_sum_to_the_fils(db, tmp_path, capsys):
    text = EXAMPLE.read_text().replace('price = "0.045"\ncurrency = "EUR"',
                                       'price = "0.0451"\ncurrency = "KWD"\nminimum = "500"\nbase_fee = "3.3335"')
    p = tmp_path / "kwd.toml"
    p.write_text(text)
    assert run(capsys, "contract", "load", str(p), "--db", db)[0] == 0
    brio = bills_json(capsys, db)["groups"][1]["bills"][0]
    assert brio["currency"] == "KWD" and brio["total"].count(".") == 1 and len(brio["total"].split(".")[1]) == 3
    items = [x["item"] for x in brio["lines"]]
    assert items == ["usage", "base fee", "minimum top-up"]
    usage = Fraction(brio["lines"][0]["amount"])
    assert usage + Fraction(brio["lines"][2]["amount"]) == 500      # topped up to the minimum
    assert sum(Fraction(x["amount"]) for x in brio["lines"]) == Fraction(brio["total"])


BAD = [
    ("overlap", lambda t: t + '\n[contracts.AIR-ACME-2027]\ncustomer = "acme"\nsites = ["acme-north"]\n'
     'start = 2026-12-01\nend = 2027-12-31\nmetric = "air"\nunit = "m3"\nprice = "0.04"\n',
     "overlapping contracts: AIR-ACME-2026 (2026-01-01..2026-12-31) and AIR-ACME-2027"),
    ("no prices", lambda t: t.replace('price = "0.045"\n', ""),
     "contract AIR-BRIO-2026 has no prices"),
    ("two at once", lambda t: t.replace('to = 2026-01-01                     # moved', 'to = 2026-01-05 # moved'),
     "asset sim-002 is in two contracts at once: AIR-ACME-2026 from 2026-01-01 to 2026-01-05 and AIR-BRIO-2026"),
    ("unknown site", lambda t: t.replace('site = "brio-main"', 'site = "brio-east"'),
     "site brio-east is not one of contract AIR-BRIO-2026's sites"),
    ("float price", lambda t: t.replace('price = "0.045"', "price = 0.045"),
     "a TOML float is binary and inexact"),
]


@pytest.mark.parametrize("name,edit,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_contract_files_change_nothing(db, tmp_path, capsys, name, edit, needle):
    # a ledger that already holds some contract data: it must stay as it was
    first = tmp_path / "first.toml"
    first.write_text('[customers.zed]\nname = "Zed"\n')
    assert run(capsys, "contract", "load", str(first), "--db", db)[0] == 0
    before = contract_rows(db)
    p = tmp_path / "bad.toml"
    p.write_text(edit(EXAMPLE.read_text()))
    rc, out, err = run(capsys, "contract", "load", str(p), "--db", db)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert contract_rows(db) == before


def test_a_stored_contract_keeps_its_terms_and_an_asset_can_move_later(db, tmp_path, capsys):
    assert run(capsys, "contract", "load", str(EXAMPLE), "--db", db)[0] == 0
    before = contract_rows(db)
    p = tmp_path / "changed.toml"
    p.write_text(EXAMPLE.read_text().replace('base_fee = "100.00"', 'base_fee = "90.00"'))
    rc, _, err = run(capsys, "contract", "load", str(p), "--db", db)
    assert rc == 2 and "contract AIR-ACME-2026 is already in the ledger with other terms" in err
    assert contract_rows(db) == before
    # ending sim-001's open assignment early is history, not a change of terms
    p.write_text(EXAMPLE.read_text().replace('site = "acme-north"\nfrom = 2026-01-01\n\n[[assignments]]\nasset = '
                                             '"sim-002"', 'site = "acme-north"\nfrom = 2026-01-01\nto = 2026-01-01'
                                             '\n\n[[assignments]]\nasset = "sim-002"', 1))
    assert run(capsys, "contract", "load", str(p), "--db", db)[0] == 0
    acme = bills_json(capsys, db)["groups"][0]["bills"][0]
    assert {s["asset"] for s in acme["lines"][0]["sources"]} == {"sim-001", "sim-002"}
    assert max(s["to_seq"] for s in acme["lines"][0]["sources"] if s["asset"] == "sim-001") <= 1440


@pytest.mark.parametrize("args,needle", [
    (("--period", "2025-12"), "period 2025-12 is before contract AIR-ACME-2026 starts (2026-01-01)"),
    (("--period", "2026-01", "--id", "NOPE"), "no contract NOPE in the ledger"),
    (("--period", "2026-01", "--rates", "x.toml"), "--rates and --device do not apply"),
])
def test_bad_report_arguments_are_one_line(db, capsys, args, needle):
    assert run(capsys, "contract", "load", str(EXAMPLE), "--db", db)[0] == 0
    rc, out, err = run(capsys, "report", "--db", db, "--by", "contract", *args)
    assert rc == 2 and out == "" and needle in err and len(err.strip().splitlines()) == 1


def test_price_shows_every_term_from_the_ledger(db, capsys):
    assert run(capsys, "contract", "load", str(EXAMPLE), "--db", db)[0] == 0
    rc, out, err = run(capsys, "price", "--db", db, "--contract", "AIR-ACME-2026", "--format", "json")
    assert rc == 0, err
    p = json.loads(out)
    terms = {t["term"]: Fraction(t["per_unit"]) for t in p["terms"]}
    assert list(terms) == ["energy", "maintenance_reserve", "capital", "service", "risk", "margin"]
    # capital less the residual value the life models give (every part of the simulated compressors
    # is rated by a card), over the expected lifetime units
    rv = p["residual_value"]
    k = Fraction(rv["assets"][0]["K"])
    assert 0 < Fraction(rv["value"]) < k and all(a["K"] == rv["assets"][0]["K"] for a in rv["assets"])
    assert abs(terms["capital"] - (k - Fraction(rv["value"])) / 500000) <= Fraction(1, 10 ** 6)
    assert terms["service"] == Fraction("0.002")
    # the energy term is the ledger's kWh per m3 (both assets, their days under the contract) x the tariff
    col = Collector(db, keys=lambda d: None)
    led = col.ledger()
    col.close()
    days = [("sim-001", "2026-01-01"), ("sim-001", "2026-01-02"), ("sim-002", "2026-01-01")]
    kwh = sum(Fraction(led[a][d]["energy"], 10 ** 6) for a, d in days)
    m3 = sum(Fraction(led[a][d]["air"], 1000) for a, d in days)
    assert Fraction(p["units"]) == m3 and abs(terms["energy"] - kwh / m3 * Fraction("0.25")) < Fraction(1, 10 ** 6)
    # the reserve is cost x life used per unit, and the risk is P90 less P50
    # (the bearing and contactor from the contract's rated life, the humidity sensors from their card)
    comp = {c["component"]: c for c in p["components"]}
    # the contract's bearing is the compressor's tagged bearing, rated by its card, at the contract's cost
    # (a component no card rates keeps the contract's rated life: tests/test_reserve.py)
    assert comp["bearing"]["source"] == "life model bearing-6204@1 (cost from the contract)"
    assert comp["bearing"]["cost"] == "128"
    assert comp["sht-humidity-sensor"]["source"].startswith("life model sht-humidity-sensor@1")
    assert comp["sht-humidity-sensor"]["cost"] == "21"                # the card's part 6 + labour 15
    assert abs(terms["maintenance_reserve"] - sum(Fraction(c["cost"]) * Fraction(c["life_used_per_unit_p50"])
                                                  for c in comp.values())) < Fraction(1, 10 ** 5)
    assert terms["risk"] > 0
    sub = sum(v for k, v in terms.items() if k != "margin")
    assert abs(terms["margin"] - sub * Fraction("0.12")) < Fraction(1, 10 ** 5)
    assert Fraction(p["proposed_price_per_unit"]) >= Fraction(p["exact_price_per_unit"])
    rc, out, err = run(capsys, "price", "--db", db, "--contract", "AIR-BRIO-2026")
    assert rc == 2 and "'contracts.AIR-BRIO-2026.pricing.tariff' is needed" in err


def test_reserve_accrues_per_month_and_repairs_draw_it(db, capsys):
    from agent.collector import pricing
    col = Collector(db, keys=lambda d: None)
    try:
        contracts.load(col, str(EXAMPLE))
        assert pricing.reserve(col, contracts.stored(col), "sim-001", "2026-01-31")["months"] == []
    finally:
        col.close()
    # the month's bills post the accounts; a second run adds nothing
    for _ in range(2):
        rep = bills_json(capsys, db)
    rows = sqlite3.connect(db).execute("SELECT asset, kind, version, amount FROM reserve_entries "
                                       "WHERE asset='sim-001'").fetchall()
    assert sorted((k, v) for _, k, v, _ in rows) == [("accrual", 1), ("draw", 1), ("draw", 1)]
    col = Collector(db, keys=lambda d: None)
    try:
        r = pricing.reserve(col, contracts.stored(col), "sim-001", "2026-01-31")
    finally:
        col.close()
    (m,) = r["months"]
    # the contactor repair of the contract file (45.00 EUR) and the sensor swap (21.00 EUR from its card)
    assert m["drawn"] == 6600 and m["accrued"] > 0
    assert r["balance"] == m["accrued"] - 6600
    acme = [b for g in rep["groups"] for b in g["bills"] if b["contract"] == "AIR-ACME-2026"][0]
    acc = {x["asset"]: x for x in acme["reserve"]}["sim-001"]
    assert acc["drawn"] == "66.00" and Fraction(acc["balance"]) == Fraction(r["balance"], 100)


def test_contract_tables_on_postgresql(postgres, tmp_path, capsys):
    assert run(capsys, "contract", "load", str(EXAMPLE), "--db", postgres)[0] == 0
    rc, out, _ = run(capsys, "contract", "list", "--db", postgres)
    assert "contract AIR-BRIO-2026  customer brio" in out
    p = tmp_path / "bad.toml"
    p.write_text(EXAMPLE.read_text() + '[[assignments]]\nasset = "sim-001"\ncontract = "AIR-BRIO-2026"\n'
                 'site = "brio-main"\nfrom = 2026-03-01\n')
    rc, _, err = run(capsys, "contract", "load", str(p), "--db", postgres)
    assert rc == 2 and "asset sim-001 is in two contracts at once" in err
    col = Collector(postgres, keys=lambda d: None)
    try:
        st = contracts.stored(col)
    finally:
        col.close()
    assert len(st["assignments"]) == 3 and st["assignments"][1]["to"] == "2026-01-01"


def test_a_price_in_a_unit_of_another_kind_is_one_line(db, tmp_path, capsys):
    p = tmp_path / "kwh.toml"
    p.write_text(EXAMPLE.read_text().replace('metric = "air"\nunit = "m3"\nprice = "0.045"',
                                             'metric = "air"\nunit = "kWh"\nprice = "0.045"'))
    assert run(capsys, "contract", "load", str(p), "--db", db)[0] == 0
    rc, out, err = run(capsys, "report", "--db", db, "--by", "customer", "--id", "brio", "--period", "2026-01")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "unit 'kWh' is energy, but air is measured in m3 (volume) on device sim-002" in err
