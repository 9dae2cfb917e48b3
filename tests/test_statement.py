"""`tally statement` and `tally verify`: the signed monthly statement (JSON,
HTML, PDF) of a customer on a simulated SQLite ledger; tampering with one
cent, one range or one ledger record is caught; the format in
docs/statement.md is checked on the real bytes with cryptography and sqlite3
directly, not through our code."""
import base64
import hashlib
import json
import pathlib
import re
import shutil
import sqlite3
from fractions import Fraction

import pytest

from agent import cli
from conftest import ROOT as _ROOT
from test_contracts import EXAMPLE, run, sim_db  # noqa: F401  (a session fixture shared with test_contracts)

ROOT = pathlib.Path(_ROOT)


@pytest.fixture(scope="module")
def made(sim_db, tmp_path_factory):  # noqa: F811
    """A ledger with the example contracts, a key pair and ACME's January
    statement, made once through the CLI."""
    d = tmp_path_factory.mktemp("statement")
    db = str(d / "ledger.sqlite")
    shutil.copy(sim_db, db)
    assert cli.main(["contract", "load", str(EXAMPLE), "--db", db]) == 0
    assert cli.main(["statement", "--keygen", str(d / "prov")]) == 0
    assert cli.main(["statement", "--db", db, "--customer", "acme", "--period", "2026-01",
                     "--key", str(d / "prov.key"), "--out", str(d / "acme")]) == 0
    return d, db


def test_statement_files_say_what_the_bills_say(made, capsys):
    d, db = made
    doc = json.loads((d / "acme.json").read_text())
    st = doc["statement"]
    assert (d / "acme.pdf").read_bytes()[:5] == b"%PDF-"
    html = (d / "acme.html").read_text()
    assert st["evidence"]["records_sha256"] in html and html.count("<svg") >= 4
    assert doc["signature"]["key_sha256"] in html
    # the same bills as tally report --by customer
    rc, out, _ = run(capsys, "report", "--db", db, "--by", "customer", "--id", "acme", "--period", "2026-01",
                     "--format", "json")
    assert json.loads(out)["groups"][0]["bills"] == st["bills"]
    assert st["totals"] == {"EUR": st["bills"][0]["total"]}
    # units per day add up to the billed quantity, energy per unit to the totals
    assert abs(sum(Fraction(x["units"]) for x in st["daily"]) - Fraction(st["bills"][0]["quantity"])) < 1e-4
    assert [x["units"] for x in st["daily"][2:]] == ["0"] * 29
    assert st["daily"][5]["availability"] == "0"
    e = st["energy"]
    assert abs(Fraction(e["co2e_kg_per_unit"]) - Fraction(e["kwh_per_unit"]) * Fraction("0.35")) < 1e-6
    a1 = [a for a in st["assets"] if a["asset"] == "sim-001"][0]
    # drawn by the contract file's contactor repair (45.00) and the sensor swap in part_events, costed from
    # its card (6 part + 15 labour), each with the records it traces to
    assert a1["reserve_drawn"] == "66.00"
    done = {r["component"]: r for r in st["maintenance"]["done"] if r["asset"] == "sim-001"}
    assert done["contactor"]["cost"] == "45.00" and done["contactor"]["records"][0]["table"] == "repairs"
    swap = [r for c, r in done.items() if c.startswith("sht3x-")][0]
    assert swap["cost"] == "21.00" and {x["kind"] for x in swap["records"]} == {"removed", "installed"}
    # every part of the simulated compressor is rated by a card: the sensors by their serials, the
    # bearing, winding and contactor by their ID EEPROM tags' passports (boards/tags.py); the
    # contract's rated life is the fallback only (tests/test_reserve.py)
    src = a1["life_used_total_source"]
    assert any(k.startswith("at24cs02-") and v.startswith("life model bearing-6204@1") for k, v in src.items())
    assert any(k.startswith("24aa02e48-") and v.startswith("life model contactor-ac3@1") for k, v in src.items())
    assert all(v.startswith("life model ") for v in src.values()), src
    assert any(k.startswith("sht3x-") and v.startswith("life model sht-humidity-sensor@1") for k, v in src.items())
    # X = (L/L_av)(U/U_av) with U the month's units annualised over the asset's days
    x = Fraction(10, 8) * (Fraction(a1["units"]) * 365 / 31 / 40000)
    assert abs(Fraction(a1["utility_factor_x"]) - x) <= Fraction(1, 1000)
    assert st["evidence"]["records"] == sum(r["records"] for r in st["evidence"]["ranges"]) > 0


def test_verify_catches_one_cent_one_range_one_record_and_another_key(made, tmp_path, capsys):
    d, db = made
    rc, out, err = run(capsys, "verify", str(d / "acme.json"), "--pubkey", str(d / "prov.pub"), "--db", db)
    assert rc == 0 and "signature good" in out and "the ledger's records match" in out, err
    doc = json.loads((d / "acme.json").read_text())

    def check(edited, needle, db_=None):
        p = tmp_path / "edited.json"
        p.write_text(json.dumps(edited))
        rc, out, err = run(capsys, "verify", str(p), "--pubkey", str(d / "prov.pub"), *(("--db", db_) if db_ else ()))
        assert rc == 2 and out == "" and needle in err and len(err.strip().splitlines()) == 1, err

    cent = json.loads(json.dumps(doc))
    total = cent["statement"]["bills"][0]["total"]
    cent["statement"]["bills"][0]["total"] = "%.2f" % (Fraction(total) + Fraction(1, 100))
    check(cent, "the signature does not match")
    dropped = json.loads(json.dumps(doc))
    dropped["statement"]["evidence"]["ranges"].pop()
    check(dropped, "the signature does not match")
    # one record gone from the ledger: the signature still holds, the evidence does not
    bad = str(tmp_path / "ledger.sqlite")
    shutil.copy(db, bad)
    r = doc["statement"]["evidence"]["ranges"][0]
    c = sqlite3.connect(bad)
    c.execute("DELETE FROM records WHERE device_id=? AND epoch=? AND seq=?", (r["asset"], r["epoch"], r["from_seq"]))
    c.commit()
    c.close()
    check(doc, "the ledger's records differ from those the statement rests on", bad)
    assert cli.main(["statement", "--keygen", str(tmp_path / "other")]) == 0
    rc, _, err = run(capsys, "verify", str(d / "acme.json"), "--pubkey", str(tmp_path / "other.pub"))
    assert rc == 2 and "signed with another key" in err
    (tmp_path / "junk.json").write_text("{not json")
    rc, _, err = run(capsys, "verify", str(tmp_path / "junk.json"), "--pubkey", str(d / "prov.pub"))
    assert rc == 2 and "is not JSON" in err


def test_the_signed_format_in_the_doc_on_real_bytes(made):
    """docs/statement.md, checked with cryptography and sqlite3 only."""
    from cryptography.hazmat.primitives import serialization
    d, db = made
    raw = (d / "acme.json").read_bytes()
    doc = json.loads(raw)
    doc_md = (ROOT / "docs" / "statement.md").read_text()
    # every top-level key the doc's table lists is in the statement, and no other
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", doc_md, re.M))
    assert listed == set(doc["statement"]), listed ^ set(doc["statement"])
    msg = json.dumps(doc["statement"], sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    sig = doc["signature"]
    assert sig["alg"] == "Ed25519" and hashlib.sha256(msg).hexdigest() == sig["statement_sha256"]
    pub = serialization.load_pem_public_key((d / "prov.pub").read_bytes())
    pub.verify(base64.b64decode(sig["value"]), msg)          # raises if it does not verify
    raw_pub = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert hashlib.sha256(raw_pub).hexdigest() == sig["key_sha256"]
    h, n = hashlib.sha256(), 0
    c = sqlite3.connect(db)
    for r in doc["statement"]["evidence"]["ranges"]:
        for row in c.execute("SELECT device_id, epoch, seq, from_seq, flags, schema_id, boot, uptime_ms, wall_s, "
                             "wall_q, ival_ms, vals FROM records WHERE device_id=? AND epoch=? AND seq BETWEEN ? "
                             "AND ? ORDER BY seq", (r["asset"], r["epoch"], r["from_seq"], r["to_seq"])):
            line = json.dumps(list(row[:11]), ensure_ascii=True, separators=(",", ":"))[:-1] + "," + row[11] + "]\n"
            h.update(line.encode())
            n += 1
    c.close()
    assert (h.hexdigest(), n) == (doc["statement"]["evidence"]["records_sha256"], doc["statement"]["evidence"]["records"])


def test_bad_statement_requests_are_one_line(made, capsys):
    d, db = made
    base = ["statement", "--db", db, "--key", str(d / "prov.key"), "--out", str(d / "x")]
    for args, needle in (
            (["--customer", "acme", "--period", "2025-12"], "period 2025-12 is before contract AIR-ACME-2026 starts"),
            (["--customer", "nobody", "--period", "2026-01"], "no customer nobody in the ledger"),
            (["--customer", "acme", "--period", "2026-13"], "is not a month YYYY-MM"),
            (["--customer", "acme", "--period", "2026-01", "--key", str(d / "prov.pub")], "is not a PEM private key")):
        rc, out, err = run(capsys, *(base + args))
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (d / "x.json").exists()


def test_bench_value_runs_on_a_small_fleet():
    """The benchmark's own path (ledger, contract, statement, price) on 2 and
    3 assets; its figures are printed by `tally bench value`, not asserted."""
    from hil.bench import value
    r = value.bench_value(repeat=1, statement_assets=2, price_assets=3)
    assert r["statement_records"] == 2 * 31 * 96 and r["price_records"] == 3 * 31 * 24
    assert r["statement_pdf_bytes"] > 0 and r["statement_html_bytes"] > 0
    assert set(r["goals"]) == {"statement_s < 10", "price_s < 5"}
    # every asset runs 60..90 % of the time at 2.4..2.8 m3/min: the price is a real number, not zero
    assert Fraction(r["proposed_price_per_unit"]) > 0
