"""The mixed fleet (`tally simulate --fleet`, hil/harness/fleet.py) through
the real agent, log, uplink and collector, and what `tally life --json` says
of it (issue 16 item 7). One short run with coarse sampling (6 simulated
days, a sample every 2 minutes, hourly records): the events are placed at
fractions of the run, so the story is the year's in small.

Components are chosen by card, slot and history, never by a fixed list, so
ID EEPROM tags that boards declare later just add parts."""
import json
import os

import numpy as np
import pytest

from hil.harness import fleet

DAYS = 6.0
TEMPERATURE_MODELS = ("arrhenius_ea", "arrhenius10", "peck")
DUTY_MODELS = ("iso281", "runtime", "tm21", "contactor")


def _tally(argv, capsys):
    from agent.cli import main
    rc = main(argv)
    o = capsys.readouterr()
    return rc, o.out, o.err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("fleet") / "fleet.db")
    rep = fleet.run(days=DAYS, db=db, sample_s=120, interval_s=3600)
    return rep, db


@pytest.fixture(scope="module")
def life(run):
    from agent.cli import main
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["life", "--db", run[1], "--json", "--no-store"])
    assert rc == 0
    return json.loads(out.getvalue())


def _parts(life, asset, whole_run=True):
    """{card type: component} of the parts in the asset now; whole_run: only
    those that have been there since the start and nowhere else."""
    out = {}
    for cid, c in life["components"].items():
        if c["asset"] != asset or not c["card"]:
            continue
        h = c["history"]
        if whole_run and (len(h) != 1 or not h[0]["installed"].startswith("2026-01-01T00:00:00Z")):
            continue
        out[c["card"]] = c
    return out


def _mech(c, models):
    return {m["name"]: m["D_model_P50"] for m in c["life"]["mechanisms"]
            if m["model"] in models and m.get("D_model_P50") is not None}


def test_every_asset_reconciles_and_every_profile_has_rated_parts(run, life):
    rep, _ = run
    assert rep["reconciled"] is True
    assert {f["profile"] for f in rep["fleet"]} == {"compressor", "luminaire", "pump"}
    for f in rep["fleet"]:
        a = life["assets"][f["id"]]
        assert a["parts"] and a["cards"], f["id"]
        # every part in every asset has a figure: nothing Unknown
        for cid in a["parts"]:
            assert life["components"][cid]["life"].get("D_P90") is not None, cid
    assert life["problems"] == []


@pytest.mark.parametrize("hot,cool", [("cmp-hot", "cmp-cool"), ("lum-hot", "lum-cool")])
def test_a_hot_site_consumes_more_temperature_driven_life(life, hot, cool):
    h, c = _parts(life, hot), _parts(life, cool)
    compared = 0
    for card in set(h) & set(c):
        dh, dc = _mech(h[card], TEMPERATURE_MODELS), _mech(c[card], TEMPERATURE_MODELS)
        for name in set(dh) & set(dc):
            assert dh[name] > 1.3 * dc[name] > 0, (card, name, dh[name], dc[name])
            compared += 1
    assert compared >= 1


def test_heavy_duty_consumes_more_than_light_duty(life):
    h, lt = _parts(life, "pump-heavy"), _parts(life, "pump-light")
    compared = 0
    for card in set(h) & set(lt):
        dh, dl = _mech(h[card], DUTY_MODELS), _mech(lt[card], DUTY_MODELS)
        for name in set(dh) & set(dl):
            assert dh[name] > 1.5 * dl[name] > 0, (card, name, dh[name], dl[name])
            compared += 1
    assert compared >= 1
    # and the days it has left are fewer
    bearing = [k for k in set(h) & set(lt) if "iso281" in [m["model"] for m in h[k]["life"]["mechanisms"]]]
    for k in bearing:
        assert h[k]["life"]["days_P50"] < lt[k]["life"]["days_P50"]


def test_the_failed_sensor_has_its_failure_and_its_replacement(life):
    failed = [c for c in life["components"].values()
              if any(r["kind"] == "failure" for r in c["records"]) and c["history"][0]["asset"] == "lum-hot"]
    assert len(failed) == 1
    f = failed[0]
    seg = f["history"][-1]
    assert f["asset"] is None and seg["removed"] is not None
    rec = [r for r in f["records"] if r["kind"] == "failure"][0]
    assert rec["source"] == "derived" and rec["mode"] == "FTF" and rec["detection"] == "5"
    assert f["health"] == "Critical"
    # the part now in that slot came in after it left
    now = [c for c in life["components"].values() if c["asset"] == "lum-hot"
           and c["history"][-1]["slot"] == seg["slot"]]
    assert len(now) == 1 and now[0]["component"] != f["component"]
    assert now[0]["history"][-1]["installed"][:20] > seg["removed"][:20]
    assert now[0]["records"] == [] and now[0]["health"] in ("Good", "Fair")


def test_the_moved_part_carries_its_history_and_its_damage_adds_up(run, life):
    moved = [c for c in life["components"].values() if len({s["asset"] for s in c["history"]}) > 1]
    assert len(moved) == 1
    m = moved[0]
    assert [s["asset"] for s in m["history"]] == ["cmp-hot", "cmp-cool"] and m["asset"] == "cmp-cool"
    assert m["history"][0]["removed"] is not None and m["history"][1]["removed"] is None
    # the damage of its two stays adds up to its total, draw by draw (Miner)
    from agent.collector.components import Ledger
    from agent.collector.life import cards as cardmod
    from agent.collector.life import rul
    from agent.collector.store import Collector
    col = Collector(run[1], keys=lambda d: None)
    try:
        led = Ledger(col)
        card = cardmod.for_component(cardmod.load(), m["component"])
        segs = led.segs[m["component"]]
        total = led.usage(m["component"])
        rng = np.random.default_rng(7)
        checked = 0
        for mech in card["mechanisms"]:
            P = {k: rul._draw(p, 200, rng) for k, p in mech["params"].items() if p is not None}
            parts = [rul.mechanism_damage(mech, led.segment_usage(s), P)[0] for s in segs]
            d = rul.mechanism_damage(mech, total, P)[0]
            if d is None:
                continue
            assert all((x > 0).all() for x in parts)
            assert np.allclose(d, parts[0] + parts[1], rtol=1e-9)
            checked += 1
        assert checked >= 1
    finally:
        col.close()
    # and the figure tally life gives is of both stays: more than the part
    # that replaced it in cmp-hot, which has been in for less time
    repl = [c for c in life["components"].values() if c["asset"] == "cmp-hot" and c["card"] == m["card"]]
    assert len(repl) == 1 and m["life"]["D_P50"] > 0 and repl[0]["life"]["D_P50"] > 0


def test_the_bearing_in_zone_c_d_is_repaired_and_the_trace_names_the_collar(life):
    a = life["assets"]["pump-worn"]
    assert a["health"] in ("Poor", "Critical") and a["decision"].startswith("repair")
    assert any("vibration zone" in r for r in a["reasons"])
    r2 = [t for t in a["trace"] if t["rule"] == "R2"][0]
    assert r2["fired"] is True and "vibration zone" in r2["because"]
    # the part to replace is the one the collar is on
    bad = a["inputs"]["bad_replaceable"]
    assert len(bad) == 1 and any("vibration zone" in r for r in life["components"][bad[0]]["reasons"])
    # the same bearing type in the healthy pumps carries no collar
    card = life["components"][bad[0]]["card"]
    for other in ("pump-heavy", "pump-light"):
        c = _parts(life, other)[card]
        assert not c["life"]["condition"] and c["health"] == "Good"


def test_healthy_young_assets_continue(run, life):
    for f in run[0]["fleet"]:
        if f["id"] == "pump-worn":
            continue
        a = life["assets"][f["id"]]
        assert a["health"] in ("Good", "Fair"), (f["id"], a["reasons"])
        assert a["decision"].startswith("continue"), (f["id"], a["decision"])


def test_fleet_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, run):
    rc, _, e = _tally(["simulate", "--fleet", "--days", "1"], capsys)
    assert rc == 2 and e == ("tally: simulate: --fleet needs --db FILE (the ledger `tally life --db FILE` "
                             "reads afterwards)\n")
    db = tmp_path / "f.db"
    rc, _, e = _tally(["simulate", "--fleet", "--days", "0", "--db", str(db)], capsys)
    assert rc == 2 and e == "tally: simulate: --fleet needs a positive number of --days\n"
    assert not os.path.exists(db)
    # a second fleet into the same ledger would bill its assets twice: refused, the ledger unchanged
    before = os.path.getsize(run[1])
    rc, _, e = _tally(["simulate", "--fleet", "--days", "0.1", "-q", "--db", run[1]], capsys)
    assert rc == 2 and "already holds cmp-cool, cmp-hot" in e and e.count("\n") == 1
    assert os.path.getsize(run[1]) == before


def test_the_twin_crc_is_the_drivers():
    from drivers.crc import crc16_modbus as driver
    from hil.twins.sdm120 import crc16_modbus as twin
    rng = np.random.default_rng(3)
    for n in (0, 1, 6, 8, 165, 255):
        b = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        assert twin(b) == driver(b) and twin(b, 1, n) == driver(b, 1, n)
    assert twin(bytes.fromhex("010400000002")) == 0xCB71
