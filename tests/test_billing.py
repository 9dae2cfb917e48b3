"""`tally report`: a period's usage priced from a rate card, against ledgers
built from real signed batches (and one from the fleet simulator)."""
import csv
import io
import json
import os
import re
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Decimal

import cbor2
import pytest

from agent import batch, cli, cose
from agent.collector.store import Collector
from agent.log import RingLog
from agent.meter import Meter
from hil.nor import EmulatedNOR

from conftest import ROOT, utc

KEY = bytes(range(16))
SCHEMA = [("run_time", "s", 0, "odo"), ("air", "m3", -3, "odo"), ("energy", "Wh", -3, "odo"),
          ("tmax", "Cel", -2, "max")]
RATES = """currency = "EUR"
monthly_fee = "25.00"
[run_hours]
price = "0.40"
[metrics.air]
unit = "m3"
price = "0.018"
[metrics.energy]
unit = "kWh"
price = "0.25"
"""


def feed(col, dev, rows, epoch=7, skip=()):
    """Log one-minute records on a real ring log, then send them to the
    collector as a signed birth and signed CBOR batches. rows: (end of the
    interval, run_time, air, energy usage in it); seqs in `skip` are logged
    but never delivered (an unexplained gap)."""
    m = Meter(SCHEMA)
    log = RingLog(EmulatedNOR(4096, 16), dev).open()
    log.epoch = epoch
    odo = [0, 0, 0]
    t0 = utc(rows[0][0]) - 60
    for end, *use in rows:
        odo = [a + b for a, b in zip(odo, use)]
        start = utc(end) - 60
        log.append(m.id, 1, (start - t0) * 1000, start, 3, 60000, odo + [2000])
    schema = [[a, b, c, "odometer" if d == "odo" else "gauge:" + d] for a, b, c, d in m.schema]
    col.handle("tally/v1/%s/birth" % dev, cose.mac0(cbor2.dumps(
        {"v": 1, "device": dev, "schema_id": m.id, "epoch": epoch, "seq0": 1, "boot": 1, "schema": schema}),
        KEY, dev))
    runs = [[]]
    for r in log.pending(len(rows)):         # a batch carries consecutive seqs
        if r[0] in skip:
            runs.append([])
        else:
            runs[-1].append(r)
    for run in filter(None, runs):
        assert col.handle("tally/v1/%s/data" % dev, cose.mac0(batch.encode(run), KEY, dev))


@pytest.fixture
def ledger(tmp_path):
    """A ledger file and a function to fill it; closed before the CLI reads it."""
    path = str(tmp_path / "ledger.sqlite")
    col = Collector(path, keys=lambda dev: KEY)
    yield path, col
    col.close()


def report(tmp_path, db, *args, rates=RATES, fmt="json"):
    p = tmp_path / "rates.toml"
    p.write_text(rates)
    out = tmp_path / ("out." + fmt)
    argv = ["report", "--db", db, "--rates", str(p), "--format", fmt, "-o", str(out)] + list(args)
    assert cli.main(argv) == 0
    text = out.read_text()
    return json.loads(text) if fmt == "json" else text


def lines(rep, dev):
    d = next(x for x in rep["devices"] if x["device"] == dev)
    return {x["metric"] or x["item"]: x for x in d["lines"]}, d


def test_amounts_are_exact_from_the_odometers(tmp_path, ledger):
    db, col = ledger
    # 7263 s of running, 123.456 m3 of air, 98.765432 kWh over three intervals on 10 November
    feed(col, "c-1", [("2026-11-10T08:01", 3600, 100000, 90000000),
                      ("2026-11-10T08:02", 3600, 23000, 8000000),
                      ("2026-11-10T08:03", 63, 456, 765432)])
    rep = report(tmp_path, db, "--period", "2026-11")
    got, d = lines(rep, "c-1")
    # 7263 s x 0.40 / 3600 s = 0.807 -> 0.81; 123.456 x 0.018 = 2.222208 -> 2.22;
    # 98.765432 x 0.25 = 24.691358 -> 24.69; base fee 25.00
    assert got["run_time"]["quantity"] == "2.0175" and got["run_time"]["amount"] == "0.81"
    assert got["run_time"]["item"] == "run_hours" and got["run_time"]["unit"] == "h"
    assert got["air"]["quantity"] == "123.456" and got["air"]["amount"] == "2.22"
    assert got["energy"]["quantity"] == "98.765432" and got["energy"]["amount"] == "24.69"
    assert got["energy"]["odometer"] == {"total": 98765432, "unit": "Wh", "scale": -3}
    assert got["base_fee"]["quantity"] == "1" and got["base_fee"]["amount"] == "25.00"
    assert d["subtotal"] == rep["total"] == "52.72"
    assert rep["currency"] == "EUR" and rep["period"] == {"from": "2026-11-01", "to": "2026-11-30",
                                                          "label": "2026-11", "days": 30}
    # never a float anywhere in the JSON
    floats = []
    json.loads(json.dumps(rep), parse_float=lambda s: floats.append(s))
    assert floats == []


def test_half_cent_lines_round_half_even_unless_the_card_says_half_up(tmp_path, ledger):
    db, col = ledger
    feed(col, "a", [("2026-11-02T00:01", 1, 1500, 0)])      # 1.5 m3 x 0.01 = 0.015
    feed(col, "b", [("2026-11-02T00:01", 0, 2500, 0)])      # 2.5 m3 x 0.01 = 0.025
    rates = 'currency = "EUR"\n[run_hours]\nprice = "54.00"\n[metrics.air]\nunit = "m3"\nprice = "0.01"\n'
    even = report(tmp_path, db, "--period", "2026-11", rates=rates)
    assert lines(even, "a")[0]["air"]["amount"] == "0.02"     # 0.015 -> 0.02 (not truncated)
    assert lines(even, "b")[0]["air"]["amount"] == "0.02"     # 0.025 -> 0.02 (to even)
    # 1 s at 54.00 per hour is exactly 0.015: multiplied before dividing, it is a true tie -> 0.02
    assert lines(even, "a")[0]["run_time"]["quantity"] == "0.000278"
    assert lines(even, "a")[0]["run_time"]["amount"] == "0.02"
    assert even["rounding"].startswith("half-even")
    up = report(tmp_path, db, "--period", "2026-11", rates=rates.replace("EUR\"", "EUR\"\nrounding = \"half-up\""))
    assert lines(up, "b")[0]["air"]["amount"] == "0.03"
    assert lines(up, "a")[0]["air"]["amount"] == "0.02"
    # currencies keep their own minor unit: yen have none, dinars three
    yen = report(tmp_path, db, "--period", "2026-11", rates=rates.replace("EUR", "JPY"))
    assert lines(yen, "b")[0]["air"]["amount"] == "0" and yen["total"] == "0"
    kwd = report(tmp_path, db, "--period", "2026-11", rates=rates.replace("EUR", "KWD"))
    assert lines(kwd, "b")[0]["air"]["amount"] == "0.025" and kwd["minor_unit"] == 3


def test_period_boundaries_follow_the_ledgers_day_bookings(tmp_path, ledger):
    db, col = ledger
    feed(col, "c-1", [("2026-11-01T00:00", 1000, 0, 0),      # ends at midnight: booked 31 October
                      ("2026-11-01T00:01", 200, 0, 0),       # 1 November
                      ("2026-11-30T23:59", 30, 0, 0),        # 30 November
                      ("2026-12-01T00:00", 4, 0, 0),         # ends at midnight: still 30 November
                      ("2026-12-01T00:01", 50000, 0, 0)])    # 1 December: out
    assert col.ledger()["c-1"] == {
        "2026-10-31": {"run_time": 1000, "air": 0, "energy": 0},
        "2026-11-01": {"run_time": 200, "air": 0, "energy": 0},
        "2026-11-30": {"run_time": 34, "air": 0, "energy": 0},
        "2026-12-01": {"run_time": 50000, "air": 0, "energy": 0}}
    rates = 'currency = "EUR"\n[run_hours]\nprice = "3600"\n'          # 1.00 a second
    nov = report(tmp_path, db, "--period", "2026-11", rates=rates)
    assert lines(nov, "c-1")[0]["run_time"]["amount"] == "234.00"
    assert report(tmp_path, db, "--from", "2026-11-30", "--to", "2026-11-30", rates=rates)["total"] == "34.00"
    assert report(tmp_path, db, "--from", "2026-12-01", "--to", "2026-12-01", rates=rates)["total"] == "50000.00"
    assert report(tmp_path, db, "--period", "2026-10", rates=rates)["total"] == "1000.00"
    # 30 November: 232 of 234 s were outside a one-day window; days with no data are listed
    q = lines(nov, "c-1")[1]["data_quality"]
    assert q["days_with_data"] == 2 and len(q["days_without_data"]) == 28
    assert "2026-11-01" not in q["days_without_data"] and "2026-11-02" in q["days_without_data"]


def test_base_fee_is_pro_rata_by_day_outside_whole_months(tmp_path, ledger):
    db, col = ledger
    feed(col, "c-1", [("2026-11-10T00:01", 0, 0, 0), ("2026-12-10T00:01", 0, 0, 0)])
    rates = 'currency = "EUR"\nmonthly_fee = "31.00"\n'
    assert report(tmp_path, db, "--from", "2026-11-01", "--to", "2026-11-15", rates=rates)["total"] == "15.50"
    # one day of November (1/30) and one of December (1/31): 31/30 + 1 = 2.0333.. -> 2.03
    two = report(tmp_path, db, "--from", "2026-11-30", "--to", "2026-12-01", rates=rates)
    assert two["total"] == "2.03" and lines(two, "c-1")[0]["base_fee"]["quantity"] == "0.065591"


def test_fleet_report_matches_the_simulated_devices_own_odometers(tmp_path):
    from hil.harness.sim import simulate
    db = str(tmp_path / "sim.sqlite")
    rep = simulate(devices=2, days=0.25, db=db, loss=0.1, seed=4)
    assert rep["reconciled"]
    rates = RATES + '[devices."sim-002"]\nmonthly_fee = "20.00"\nmetrics.air.price = "0.015"\n'
    js = report(tmp_path, db, "--period", "2026-01", rates=rates)
    cent = Decimal("0.01")
    total = Decimal(0)
    for d in rep["devices"]:
        odo = {k: v["device"] for k, v in d["odometers"].items()}      # the devices' own meters
        air = "0.015" if d["device_id"] == "sim-002" else "0.018"
        want = {"air": Decimal(odo["air"]) * Decimal(air) / 1000,
                "energy": Decimal(odo["energy"]) * Decimal("0.25") / 1000000,
                "run_time": Decimal(odo["run_time"]) * Decimal("0.40") / 3600,
                "base_fee": Decimal("20.00" if d["device_id"] == "sim-002" else "25.00")}
        got, dev = lines(js, d["device_id"])
        for k, v in want.items():
            assert Decimal(got[k]["amount"]) == v.quantize(cent, ROUND_HALF_EVEN), k
        assert Decimal(dev["subtotal"]) == sum(v.quantize(cent, ROUND_HALF_EVEN) for v in want.values())
        total += Decimal(dev["subtotal"])
        assert dev["data_quality"]["history"]["records"] == d["records_in_ledger"]
        assert dev["data_quality"]["history"]["unexplained_missing_intervals"] == 0
        assert dev["data_quality"]["history"]["duplicates_ignored"] == d["duplicates_ignored"]
    assert Decimal(js["total"]) == total and total > 40
    # the CSV reads back with the csv module: one row per device and line, summing to the JSON total
    rows = list(csv.DictReader(io.StringIO(report(tmp_path, db, "--period", "2026-01", rates=rates,
                                                  fmt="csv"))))
    assert len(rows) == 8 and {r["item"] for r in rows} == {"usage", "run_hours", "base_fee"}
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(js["total"])
    assert all(r["currency"] == "EUR" and r["period_from"] == "2026-01-01" for r in rows)
    # the text report: aligned columns, a subtotal per device, the fleet total
    text = report(tmp_path, db, "--period", "2026-01", rates=rates, fmt="text")
    assert "sim-002  subtotal" in text and text.count("  subtotal  ") == 2
    assert re.search(r"^fleet +total +EUR +%s$" % re.escape(js["total"]), text, re.M)
    all_lines = text.splitlines()
    table = all_lines[all_lines.index(next(x for x in all_lines if x.startswith("device "))):]
    table = table[:table.index(next(x for x in table if x.startswith("fleet "))) + 1]
    ends = {len(x) for x in table if x[:1] != "-"}
    assert len(ends) == 1, table              # amounts right-aligned to one column
    # --device narrows the report
    one = report(tmp_path, db, "--period", "2026-01", "--device", "sim-002", rates=rates)
    assert [d["device"] for d in one["devices"]] == ["sim-002"]


def test_data_quality_lines(tmp_path, ledger):
    db, col = ledger
    feed(col, "c-1", [("2026-11-%02dT12:0%d" % (d, i), 60, 0, 0) for d in (1, 2, 5) for i in (1, 2)],
         skip=(3, 4))                        # 2 November never arrived
    feed(col, "c-2", [("2026-10-20T10:00", 60, 0, 0), ("2026-12-20T10:00", 60, 0, 0)])   # dark in November
    feed(col, "c-3", [("2026-12-20T10:00", 60, 0, 0)])                                  # not yet installed
    rates = 'currency = "EUR"\nmonthly_fee = "10"\n[devices.c-3]\nmonthly_fee = "5"\n'
    rep = report(tmp_path, db, "--period", "2026-11", rates=rates)
    assert [d["device"] for d in rep["devices"]] == ["c-1", "c-2"]
    assert rep["notes"] == ["rate card overrides for devices not in this report: c-3"]
    q1, q2 = (lines(rep, d)[1]["data_quality"] for d in ("c-1", "c-2"))
    assert q1["days_with_data"] == 2 and "2026-11-02" in q1["days_without_data"]
    h = q1["history"]
    assert h["unexplained_missing_intervals"] == 2 and h["gap_ranges"] == [{"epoch": 7, "from_seq": 3, "to_seq": 4}]
    assert "whole ledger history" in h["scope"]
    assert q2["days_with_data"] == 0 and len(q2["days_without_data"]) == 30
    assert rep["total"] == "20.00"            # both pay the base fee
    text = report(tmp_path, db, "--period", "2026-11", rates=rates, fmt="text")
    assert "c-1  data on 2 of 30 days; none on 2026-11-02..2026-11-04, 2026-11-06..2026-11-30" in text
    assert "unexplained missing 2 (epoch 00000007 seq 3..4)" in text
    assert "c-2  data on 0 of 30 days; none on 2026-11-01..2026-11-30" in text
    assert "not limited to the period" in text


# -- errors: a clear message and exit code 2, never a traceback ---------------------------------

@pytest.mark.parametrize("rates,needle", [
    ('currency = "EUR"\n[metrics.air_m3]\nunit = "m3"\nprice = "1"\n',
     "key 'metrics.air_m3': no device in this report has an odometer named 'air_m3'"),
    ('currency = "EUR"\n[metrics.air]\nunit = "kWh"\nprice = "1"\n',
     "key 'metrics.air': unit 'kWh' is energy, but air is measured in m3 (volume)"),
    ('currency = "EUR"\n[metrics.air]\nunit = "gal"\nprice = "1"\n', "key 'metrics.air': unknown unit 'gal'"),
    ('currency = "EUR"\n[run_hours]\nmetric = "energy"\nprice = "1"\n',
     "key 'run_hours.metric': unit 'h' is time, but energy is measured in Wh (energy)"),
    ('currency = "EUR"\n[metrics.air]\nunit = "m3"\nprice = 0.018\n',
     "key 'metrics.air.price' must be a decimal string such as \"0.80\" (a TOML float"),
    ('currency = "EUR"\nmonthly_fee = "-5"\n', "key 'monthly_fee' must be a non-negative decimal"),
    ('currency = "EUR"\nmonthly_fee = "1e3"\n', "key 'monthly_fee' must be a non-negative decimal"),
    ('currency = "EUR"\n[metrics.air]\nprice = "1"\n', "key 'metrics.air.unit' is required"),
    ('currency = "EUR"\n[devices.c-1.run_hours]\nmetric = "run_time"\n', "key 'devices.c-1.run_hours.price' is required"),
    ('currency = "EUR"\n[devices.c-1.metrics.hot_time]\nunit = "h"\nprice = "1"\n',
     "key 'devices.c-1.metrics.hot_time': device c-1 has no odometer named 'hot_time'"),
    ('currency = "EUR"\n[run_hours]\nprice = "1"\n[metrics.run_time]\nunit = "h"\nprice = "1"\n',
     "metric 'run_time' is priced twice"),
    ('currency = "EURO"\n', "key 'currency' must be an ISO 4217 code"),
    ('monthly_fee = "1"\n', "key 'currency' must be an ISO 4217 code"),
    ('currency = "EUR"\nrounding = "up"\n', "key 'rounding' must be one of half-even, half-up"),
    ('currency = "EUR"\nmonthy_fee = "1"\n', "unknown key 'monthy_fee'"),
    ('currency = "EUR"\n[metrics.air]\nunit = "m3"\nprise = "1"\n', "unknown key 'metrics.air.prise'"),
    ('currency = "EUR"\nmetrics = 3\n', "key 'metrics' must be a table"),
    ('this is [not toml', "is not valid TOML"),
])
def test_a_bad_rate_card_is_named_by_key(tmp_path, ledger, capsys, rates, needle):
    db, col = ledger
    feed(col, "c-1", [("2026-11-10T08:01", 60, 1000, 1000)])
    p = tmp_path / "rates.toml"
    p.write_text(rates)
    assert cli.main(["report", "--db", db, "--rates", str(p), "--period", "2026-11"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tally: report: ") and needle in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("args,needle", [
    (["--period", "2026-13"], "--period '2026-13' is not a month YYYY-MM"),
    (["--period", "november"], "is not a month YYYY-MM"),
    (["--from", "2026-11-31", "--to", "2026-12-01"], "--from '2026-11-31' is not a day YYYY-MM-DD"),
    (["--from", "2026-11-05", "--to", "2026-11-01"], "--to 2026-11-01 is before --from 2026-11-05"),
    (["--from", "2026-11-05"], "give --period YYYY-MM, or both --from and --to"),
    ([], "give --period YYYY-MM, or both --from and --to"),
    (["--period", "2026-11", "--to", "2026-11-05"], "either --period or --from/--to, not both"),
    (["--period", "2026-11", "--device", "c-1", "c-9"], "no device c-9 in the ledger (it has c-1)"),
    (["--period", "2026-11", "--rates", "/nonexistent/rates.toml"], "rate card /nonexistent/rates.toml: no such file"),
    (["--period", "2026-11", "--db", "/nonexistent/ledger.sqlite"], "no ledger at /nonexistent/ledger.sqlite"),
    (["--period", "2026-11", "-o", "/nonexistent/dir/report.txt"], "/nonexistent/dir/report.txt: No such file"),
])
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path, ledger, capsys, args, needle):
    db, col = ledger
    feed(col, "c-1", [("2026-11-10T08:01", 60, 1000, 1000)])
    p = tmp_path / "rates.toml"
    p.write_text(RATES)
    argv = ["report", "--db", db, "--rates", str(p)] + args
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert "Traceback" not in err


def test_the_tally_command_itself_exits_2_on_a_missing_or_broken_ledger(tmp_path):
    rates = tmp_path / "rates.toml"
    rates.write_text(RATES)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    for db, needle in ((tmp_path / "none.sqlite", "no ledger at"), (junk, "is not a Tally ledger")):
        r = subprocess.run([sys.executable, "-m", "agent.cli", "report", "--db", str(db), "--rates", str(rates),
                            "--period", "2026-11"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""


def test_the_example_rate_card_parses():
    from agent.collector import billing
    card = billing.load_rates(os.path.join(ROOT, "docs", "rates.example.toml"))
    assert card["currency"] == "EUR" and card["minor"] == 2 and card["rounding"] == "half-even"
    assert card["fleet"]["run_hours"] == {"metric": "run_time", "price": Decimal("0.40")}
    assert card["devices"]["sim-002"]["metrics"]["air"] == {"price": Decimal("0.015")}


# -- hostile periods and rate cards: one line, exit 2, no traceback, no hang --------------------

@pytest.mark.parametrize("args,needle", [
    (["--period", "0000-01"], "--period '0000-01' is outside the years 1970 to 9998"),
    (["--period", "9999-12"], "--period '9999-12' is outside the years 1970 to 9998"),
    (["--period", "1969-12"], "outside the years"),
    (["--period", "2026-13"], "--period '2026-13' is not a month YYYY-MM"),
    (["--period", "2026-00"], "is not a month YYYY-MM"),
    (["--period", "abc"], "--period 'abc' is not a month YYYY-MM"),
    (["--period", "2026-11\n"], "--period '2026-11\\n' is not a month YYYY-MM"),
    (["--period", "\uff12\uff10\uff12\uff16-11"], "is not a month YYYY-MM"),         # full-width digits
    (["--period", "2026-11\x1b[2J"], "--period '2026-11\\x1b[2J' is not a month"),
    (["--from", "0000-01-01", "--to", "2026-01-01"], "--from '0000-01-01' is not a day"),
    (["--from", "2026-01-01", "--to", "9999-12-31"], "--to 9999-12-31 is outside the years 1970 to 9998"),
    (["--from", "1970-01-01", "--to", "9998-12-31"], "spans 2932532 days; a report covers at most 3660"),
    (["--from", "2026-12-01", "--to", "2026-11-30"], "--to 2026-11-30 is before --from 2026-12-01"),
    (["--from", "2026-11-01\n", "--to", "2026-11-30"], "is not a day YYYY-MM-DD"),
    (["--period", "2026-11", "--device", "c-1\x1b[2J"], "no device c-1\\x1b[2J in the ledger"),
])
def test_every_bad_period_is_one_line_and_exit_2(tmp_path, ledger, capsys, args, needle):
    db, col = ledger
    feed(col, "c-1", [("2026-11-10T08:01", 60, 1000, 1000)])
    p = tmp_path / "rates.toml"
    p.write_text(RATES)
    assert cli.main(["report", "--db", db, "--rates", str(p)] + args) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert err.count("\n") == 1 and "\x1b" not in err and "Traceback" not in err


@pytest.mark.parametrize("rates,needle", [
    ('currency = "EUR"\nx = ' + "[" * 5000 + "]" * 5000 + "\n", "is not valid TOML: nested too deep"),
    ('currency = "EUR"\nx = ' + "{a = " * 3000 + "1" + "}" * 3000 + "\n", "is not valid TOML: nested too deep"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = nan\n',
     "key 'metrics.energy.price' must be a decimal string such as \"0.80\" (got nan)"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = inf\n', "(got inf)"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = -inf\n', "(got -inf)"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = "nan"\n', "must be a non-negative decimal"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = "Infinity"\n', "must be a non-negative decimal"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = -1\n', "must be a non-negative decimal"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = "cheap"\n', "(got 'cheap')"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = "' + "9" * 100000 + '"\n',
     "at most 15 digits before the point and 12 after"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = 99999999999999999\n', "at most 15 digits"),
    ('currency = "EUR"\n[metrics.energy]\nunit = "kWh"\nprice = [1, 2]\n', "(got a list)"),
    ('currency = "EUR"\n[metrics.energy]\nunit = 3\nprice = "1"\n', "key 'metrics.energy.unit' must be a unit"),
    ('currency = "EUR"\nmonthly_fee = { a = 1 }\n', "key 'monthly_fee' must be a decimal string"),
    ('currency = "EUR"\nrounding = ["half-up"]\n', "key 'rounding' must be one of half-even, half-up (got a list)"),
    ('currency = ["EUR"]\n', "key 'currency' must be an ISO 4217 code such as \"EUR\" (got a list)"),
    ('currency = "EUR"\ndevices = [1, 2]\n', "key 'devices' must be a table"),
    ('currency = "EUR"\n[run_hours]\nmetric = 5\nprice = "1"\n', "key 'run_hours.metric' must be a metric name"),
    ('currency = "EUR"\n[metrics.unknown_metric]\nunit = "kWh"\nprice = "1"\n',
     "no device in this report has an odometer named 'unknown_metric'"),
    ('currency = "EUR"\n[metrics."x\\u001b[2J"]\nunit = "kWh"\nprice = "1"\n',
     "no device in this report has an odometer named 'x\\x1b[2J'"),
    ('currency = "EUR"\n[devices."d\\r\\nnote: forged"]\nmonthly_fee = "1"\n', "unknown key"),
])
def test_every_bad_rate_card_is_one_line_and_exit_2(tmp_path, ledger, rates, needle):
    db, col = ledger
    feed(col, "c-1", [("2026-11-10T08:01", 60, 1000, 1000)])
    col.close()
    p = tmp_path / "rates.toml"
    p.write_text(rates)
    r = subprocess.run([sys.executable, "-m", "agent.cli", "report", "--db", db, "--rates", str(p),
                        "--period", "2026-11"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if "forged" in rates:           # an override for a device not in the report is a note, not an error
        assert r.returncode == 0 and "note: rate card overrides for devices not in this report: " \
            "d\\x0d\\x0anote: forged" in r.stdout, r.stdout
        return
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert needle in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "\x1b" not in r.stderr and "Traceback" not in r.stderr


def test_a_rate_card_larger_than_a_megabyte_is_refused(tmp_path, ledger, capsys):
    db, col = ledger
    p = tmp_path / "rates.toml"
    p.write_text('currency = "EUR"\n' + "# padding\n" * 120000)
    assert cli.main(["report", "--db", db, "--rates", str(p), "--period", "2026-11"]) == 2
    assert "is larger than 1048576 bytes" in capsys.readouterr().err


def test_csv_cells_and_text_are_neutralised():
    from agent.collector.billing import clean, csv_cell
    assert [csv_cell(x) for x in ("=1+1", "+1", "-1+2", "@A1", "\t=1", "\r=1", "plain", "-12.50", "0.31", "-3")] \
        == ["'=1+1", "'+1", "'-1+2", "'@A1", "'\\x09=1", "'\\x0d=1", "plain", "-12.50", "0.31", "-3"]
    assert clean("a\x1b[2Jb\x07\x9b\u202e\u2066c\n") == "a\\x1b[2Jb\\x07\\x9b\\u202e\\u2066c\\x0a"
    assert clean("caf\u00e9 ok") == "caf\u00e9 ok"              # printable text is left alone


def test_the_csv_columns_and_json_keys_are_those_billing_md_lists(tmp_path, ledger):
    """docs/billing.md "Formats" read as a spec: the CSV header is the column
    list it gives, in order, and the JSON report has exactly the keys it names."""
    with open(os.path.join(ROOT, "docs", "billing.md")) as f:
        doc = f.read().split("## Formats", 1)[1]
    csv_doc = re.search(r"\*\*csv\*\*:.*?row per device x line item:\s*`([^`]+)`", doc, re.S).group(1)
    json_doc = set(re.findall(r"`([^`]+)`", doc.split("* **json**", 1)[1]))
    db, col = ledger
    feed(col, "c-1", [("2026-11-10T00:01", 60, 0, 0), ("2026-11-10T00:02", 60, 0, 0)])
    head = report(tmp_path, db, "--period", "2026-11", fmt="csv").splitlines()[0]
    assert head.split(",") == [c.strip() for c in csv_doc.split(",")]
    js = report(tmp_path, db, "--period", "2026-11")
    got = set(js) | set(js["period"]) | set(js["devices"][0]) | {js["report"]}
    assert got == json_doc and js["report"] == "tally.billing.v1"
