"""`tally export` and the reports: CloudEvents and SenML (RFC 8428) exports
agree with the ledger record for record, units follow the schema, and
hostile device ids stay harmless in the text, CSV and JSON outputs."""
import json
import os
import subprocess
import sys

from hil.harness.sim import simulate

from conftest import ROOT, utc


def test_exports_agree_with_the_ledger(tmp_path):
    db = str(tmp_path / "ledger.sqlite")
    rep = simulate(devices=2, days=0.25, db=db, loss=0.1, seed=4)
    assert rep["reconciled"]
    run = lambda *a: subprocess.run([sys.executable, "-m", "agent.cli", "export", "--db", db] + list(a),
                                    cwd=ROOT, capture_output=True, text=True, timeout=120)
    ce = run("--format", "cloudevents")
    assert ce.returncode == 0, ce.stderr
    events = json.loads(ce.stdout)
    # one event per ledger record, ids are the record keys: unique, stable across exports
    assert len(events) == sum(d["records_in_ledger"] for d in rep["devices"])
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert json.loads(run("--format", "cloudevents").stdout)[5]["id"] == ids[5]
    for e in events:
        assert e["specversion"] == "1.0" and e["source"].startswith("tally/") and e["type"]
        dev, epoch, seq = e["id"].split("/")
        assert e["subject"] == dev and int(seq) == e["data"]["seq"] and int(epoch) == e["data"]["epoch"]
    # usage summed over events equals the ledger totals (run hours, in seconds)
    for d in rep["devices"]:
        total = sum(e["data"]["usage"]["run_time"] for e in events if e["subject"] == d["device_id"])
        assert total == d["odometers"]["run_time"]["ledger"]
    sm = run("--format", "senml", "--device", "sim-001")
    pack = json.loads(sm.stdout)
    assert pack[0]["bn"] == "urn:dev:tally:sim-001:" and "bt" in pack[0]
    runs = [x for x in pack if x["n"] == "run_time"]
    assert runs[-1]["v"] == rep["devices"][0]["odometers"]["run_time"]["ledger"] and runs[-1]["u"] == "s"
    assert all(("s" in x) != ("v" in x) and x["u"] for x in pack)
    check_senml(pack)
    temps = [x for x in pack if x["n"] == "temp_max"]
    assert temps and all(10 < x["v"] < 80 for x in temps)   # an integer where the value is whole
    bad = run("--format", "senml")
    assert bad.returncode == 0
    nodb = subprocess.run([sys.executable, "-m", "agent.cli", "export", "--db", str(tmp_path / "no")],
                          cwd=ROOT, capture_output=True, text=True)
    assert nodb.returncode == 2 and "no ledger" in nodb.stderr


# -- SenML against the RFC 8428 JSON rules, and ids that try to attack the reader -----------------

import csv
import io
import math
import re

import cbor2
import pytest

from agent import batch, cose
from agent.collector import export
from agent.collector.store import Collector
from agent.log import RingLog
from agent.meter import Meter
from hil.nor import EmulatedNOR

KEY = bytes(range(16))
SCHEMA = [("run_time", "s", 0, "odo"), ("energy", "Wh", -3, "odo"), ("air", "m3", -3, "odo"),
          ("light_exposure", "lx.h", 0, "odo"), ("cycles", "count", 0, "odo"), ("pm2_5_mean", "ug/m3", 0, "mean"),
          ("temp_max", "Cel", -2, "max"), ("vib_max", "m/s2", -3, "max"), ("mem_free", "By", 0, "min")]
# RFC 8428 section 4 / 5: the JSON labels and their types (bver an integer)
LABELS = {"bn": str, "bt": "num", "bu": str, "bv": "num", "bs": "num", "bver": int, "n": str, "u": str,
          "v": "num", "vs": str, "vb": bool, "vd": str, "s": "num", "t": "num", "ut": "num"}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")       # RFC 8428 section 4.5.1
HOSTILE = ['=HYPERLINK("x","click")', "evil\x1b[2J\x1b]0;pwned\x07", "cr\rlf\nid", "+1+1", "-2+3",
           "@SUM(A1)", "\u202eevil", "\ttab"]


def check_senml(pack):
    """Every rule of RFC 8428's JSON representation that can be checked on
    the pack alone; returns the records resolved (full name, time, ...)."""
    assert isinstance(pack, list) and pack
    bn, bt, out = "", None, []
    for rec in pack:
        assert isinstance(rec, dict)
        for k, v in rec.items():
            assert k in LABELS, k                 # no unknown (or must-understand) label
            want = LABELS[k]
            if want == "num":
                assert type(v) in (int, float) and math.isfinite(v), (k, v)
            else:
                assert type(v) is want, (k, v)
        bn = rec.get("bn", bn)
        bt = rec.get("bt", bt)
        values = [k for k in ("v", "vs", "vb", "vd") if k in rec]
        assert len(values) <= 1 and (values or "s" in rec), rec     # a value and/or a sum
        name = bn + rec.get("n", "")
        assert NAME.fullmatch(name), name
        assert rec.get("u") in export.SENML_UNITS and rec["u"] not in export.SENML_NOT_RECOMMENDED, rec
        t = (bt or 0) + rec.get("t", 0)
        assert t >= 2 ** 28                       # an absolute time (section 4.5.3)
        out.append(dict(rec, name=name, time=t))
    return out


def test_the_unit_registry_is_the_primary_senml_units():
    u = export.SENML_UNITS
    for unit in ("s", "J", "W", "m3", "count", "lx", "m/s2", "Cel", "%RH", "V", "A"):
        assert u[unit] == "RFC 8428 section 12.1"
    assert u["B"] == u["kg/m3"] == "RFC 8798 section 2"
    # secondary units (RFC 8798 section 3) and units in no registry are not there
    for unit in ("Wh", "kWh", "ug/m3", "mV", "lx.h", "mg", "g-force", "By", "L"):
        assert unit not in u
    # every conversion lands on a primary unit, and only lx.h on a sum
    assert all(v[0] in u for v in export.TO_SENML.values())
    assert [k for k, v in export.TO_SENML.items() if v[2] == "s"] == ["lx.h"]


def feed(col, dev, rows, epoch=3):
    """One-minute records of SCHEMA on a real ring log, sent to the collector
    as a signed birth and a signed batch under the device's own key.
    rows: (interval end, [values of SCHEMA])."""
    m = Meter(SCHEMA)
    log = RingLog(EmulatedNOR(4096, 16), dev).open()
    log.epoch = epoch
    t0 = utc(rows[0][0]) - 60
    for end, vals in rows:
        start = utc(end) - 60
        log.append(m.id, 1, (start - t0) * 1000, start, 3, 60000, vals)
    schema = [[a, b, c, "odometer" if d == "odo" else "gauge:" + d] for a, b, c, d in m.schema]
    assert col.handle("tally/v1/%s/birth" % dev, cose.mac0(cbor2.dumps(
        {"v": 1, "device": dev, "schema_id": m.id, "epoch": epoch, "seq0": 1, "boot": 1, "schema": schema}),
        KEY, dev)) is not None
    assert col.handle("tally/v1/%s/data" % dev, cose.mac0(batch.encode(log.pending(len(rows))), KEY, dev))


def run_cli(*args):
    r = subprocess.run([sys.executable, "-m", "agent.cli"] + list(args), cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert "Traceback" not in r.stderr, r.stderr
    return r


ROWS = [("2026-11-10T08:01", [60, 1500, 250, 900, 1, 12, 2150, 1177, 40000]),
        ("2026-11-10T08:02", [120, 3100, 500, 1800, 2, 14, 2230, 2941, 39000])]


def test_senml_conforms_to_rfc8428_and_keeps_the_schema_units(tmp_path):
    db = str(tmp_path / "l.sqlite")
    col = Collector(db, keys=lambda d: KEY)
    feed(col, "pump-1", ROWS)
    col.close()
    r = run_cli("export", "--db", db, "--format", "senml")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    recs = check_senml(json.loads(r.stdout))
    last = {x["name"]: x for x in recs}                 # the later interval's record of each metric
    assert set(last) == {"urn:dev:tally:pump-1:" + n for n, *_ in SCHEMA}
    get = lambda n: last["urn:dev:tally:pump-1:" + n]
    assert get("run_time")["u"] == "s" and get("run_time")["v"] == 120        # a reading, not a sum
    assert get("energy")["u"] == "J" and get("energy")["v"] == pytest.approx(3.1 * 3600)   # 3.1 Wh
    assert get("air")["u"] == "m3" and get("air")["v"] == 0.5
    # lux-hours: no unit of its own; the time integral of lx, which a SenML sum is (lx x s)
    assert get("light_exposure")["u"] == "lx" and get("light_exposure")["s"] == 1800 * 3600
    assert "v" not in get("light_exposure")
    assert get("cycles") == dict(get("cycles"), u="count", v=2)
    assert get("pm2_5_mean")["u"] == "kg/m3" and get("pm2_5_mean")["v"] == pytest.approx(14e-9)
    assert get("temp_max")["u"] == "Cel" and get("temp_max")["v"] == 22.3
    assert get("vib_max")["u"] == "m/s2" and get("vib_max")["v"] == 2.941
    assert get("mem_free")["u"] == "B" and get("mem_free")["v"] == 39000
    assert get("run_time")["time"] == utc("2026-11-10T08:02")
    assert [x for x in recs if "s" in x] == [x for x in recs if x["n"] == "light_exposure"]


def test_names_are_escaped_to_the_senml_name_characters():
    assert export.senml_name("sim-001") == "sim-001"
    assert export.senml_name("run_time") == "run_time"
    assert export.senml_name("a_b:c/d") == "a_b/3Ac/2Fd"
    assert export.senml_name("\x1b[2J") == "/1B/5B2J"
    assert export.senml_name("é") == "/C3/A9"
    for s in HOSTILE:
        assert NAME.fullmatch("x" + export.senml_name(s))


@pytest.fixture(scope="module")
def hostile_ledger(tmp_path_factory):
    """A real SQLite ledger holding devices whose ids attack spreadsheets and
    terminals, each with its own key, fed through Collector.handle."""
    db = str(tmp_path_factory.mktemp("hostile") / "ledger.sqlite")
    col = Collector(db, keys=lambda d: KEY)
    for dev in HOSTILE + ["plain-1"]:
        feed(col, dev, ROWS)
    assert set(col.devices()) == set(HOSTILE + ["plain-1"])
    col.close()
    rates = tmp_path_factory.mktemp("rates") / "rates.toml"
    rates.write_text('currency = "EUR"\nmonthly_fee = "10"\n[run_hours]\nprice = "36"\n'
                     '[metrics.energy]\nunit = "kWh"\nprice = "100"\n')
    return db, str(rates)


def _raw_controls(text):
    return [c for c in text if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f or c == "\u202e"]


def test_hostile_ids_are_harmless_in_the_text_report(hostile_ledger):
    db, rates = hostile_ledger
    r = run_cli("report", "--db", db, "--rates", rates, "--period", "2026-11")
    assert r.returncode == 0, r.stderr
    assert _raw_controls(r.stdout) == []                  # no ESC, BEL, CR, tab, RLO reach the terminal
    assert "evil\\x1b[2J\\x1b]0;pwned\\x07" in r.stdout and "cr\\x0dlf\\x0aid" in r.stdout
    assert "\\u202eevil" in r.stdout
    # one subtotal line per device: a CR or LF in an id did not start a line of its own
    assert len([x for x in r.stdout.splitlines() if "  subtotal  " in x]) == len(HOSTILE) + 1


def test_hostile_ids_cannot_be_formulas_in_the_csv_report(hostile_ledger):
    db, rates = hostile_ledger
    r = run_cli("report", "--db", db, "--rates", rates, "--period", "2026-11", "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 3 * (len(HOSTILE) + 1)            # usage, run-hours and base fee per device
    for row in rows:
        for cell in row.values():
            assert _raw_controls(cell) == [], cell
            if cell[:1] in ("=", "+", "-", "@"):
                assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", cell), cell    # only a real number may
    devs = {row["device"] for row in rows}
    assert devs == {"'=HYPERLINK(\"x\",\"click\")", "evil\\x1b[2J\\x1b]0;pwned\\x07", "cr\\x0dlf\\x0aid",
                    "'+1+1", "'-2+3", "'@SUM(A1)", "\\u202eevil", "'\\x09tab", "plain-1"}
    # the money is unchanged: 2 min at 36/h = 1.20, 3.1 Wh at 100/kWh = 0.31, fee 10.00 (pro rata: a month)
    assert sorted({row["amount"] for row in rows}) == ["0.31", "1.20", "10.00"]


def test_hostile_ids_survive_json_exactly_and_escaped(hostile_ledger):
    db, rates = hostile_ledger
    r = run_cli("report", "--db", db, "--rates", rates, "--period", "2026-11", "--format", "json")
    assert r.returncode == 0 and _raw_controls(r.stdout) == []
    assert {d["device"] for d in json.loads(r.stdout)["devices"]} == set(HOSTILE + ["plain-1"])
    ce = run_cli("export", "--db", db, "--format", "cloudevents")
    assert ce.returncode == 0 and _raw_controls(ce.stdout) == []
    events = json.loads(ce.stdout)
    assert {e["subject"] for e in events} == set(HOSTILE + ["plain-1"])
    for e in events:
        assert re.fullmatch(r"tally/[A-Za-z0-9\-._~%]+", e["source"]), e["source"]     # a URI reference
    sm = run_cli("export", "--db", db, "--format", "senml")
    assert sm.returncode == 0 and _raw_controls(sm.stdout) == []
    recs = check_senml(json.loads(sm.stdout))
    assert len({x["bn"] for x in recs if "bn" in x}) == len(HOSTILE) + 1      # one base name per device


def test_a_ledger_with_schemas_from_before_births_were_checked_exports_and_bills(tmp_path):
    """Births whose scale is 10**9 or -10**9, a text scale or a list as unit
    (accepted before the collector checked births) must neither hang nor
    crash an export or a report: those metrics are left out, one stderr line
    each, and pricing one is a one-line error."""
    db = str(tmp_path / "old.sqlite")
    col = Collector(db, keys=lambda d: KEY)
    dev = "old-1"
    schema = [["run_time", "s", 0, "odometer"], ["huge", "s", 10 ** 9, "odometer"],
              ["tiny", "J", -10 ** 9, "odometer"], ["listed", ["W"], 0, "odometer"],
              ["texty", "s", "3", "odometer"]]
    # Such a birth is refused at ingest now; write the row as an older
    # collector did, then send real data under it through the ingest path.
    sid = 0x0BAD5EED
    with col.db:
        col.db.execute("INSERT INTO schemas VALUES (?,?,?)", (dev, sid, json.dumps(schema)))
    t = utc("2026-11-10T08:00")
    rec = [1, 1, 0, 3, sid, 1, 0, t, 3, 60000, [60, 1, 2, 3, 4]]    # agent.log R_* order
    stored = col.handle("tally/v1/%s/data" % dev, cose.mac0(batch.encode([rec]), KEY, dev))
    assert stored and dev in col.devices(), col.rejects
    col.close()
    for fmt in ("senml", "cloudevents"):
        r = run_cli("export", "--db", db, "--format", fmt)
        assert r.returncode == 0, r.stderr
        left = sorted(x.split()[3] for x in r.stderr.splitlines())
        assert left == ["huge", "listed", "texty", "tiny"], r.stderr
        assert "run_time" in r.stdout and "huge" not in r.stdout
    rates = tmp_path / "r.toml"
    rates.write_text('currency = "EUR"\n[run_hours]\nprice = "36"\n')
    r = run_cli("report", "--db", db, "--rates", str(rates), "--period", "2026-11", "--format", "csv")
    assert r.returncode == 0 and r.stdout.count("\n") == 2, r.stdout       # header + run-hours line
    rates.write_text('currency = "EUR"\n[metrics.huge]\nunit = "h"\nprice = "1"\n')
    r = run_cli("report", "--db", db, "--rates", str(rates), "--period", "2026-11")
    assert r.returncode == 2 and "declares 'huge' with a unit or scale out of range" in r.stderr, r.stderr
