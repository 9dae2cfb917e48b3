"""The component ledger (agent/collector/components.py), health and the
next-use table (agent/collector/life/rules.py) over recorded histories: rows of
exactly the shapes the stress and identity helpers will write (`stress`,
`part_events`, the contract in the common brief), in a real SQLite ledger."""
import json
import math

import numpy as np
import pytest

from agent.collector.components import Ledger, LedgerError
from agent.collector.store import Collector
from agent.collector.life import cards as cardmod
from agent.collector.life import rul, rules

DAY = 86400
T0 = 1_767_225_600          # 2026-01-01T00:00:00Z

# the two helpers' tables as their modules create them (agent/collector/stress.py, parts.py)
STRESS = """CREATE TABLE IF NOT EXISTS stress (device TEXT NOT NULL, epoch INT NOT NULL, seq INT NOT NULL,
    hist TEXT NOT NULL, edges_version INT NOT NULL, counts TEXT NOT NULL, PRIMARY KEY(device, epoch, seq, hist))"""
PARTS = """CREATE TABLE IF NOT EXISTS part_events (device TEXT NOT NULL, epoch INT NOT NULL, seq INT NOT NULL,
    idx INT NOT NULL, kind TEXT NOT NULL, slot TEXT NOT NULL, component TEXT NOT NULL, wall_s INT NOT NULL,
    odometers TEXT NOT NULL, detail TEXT NOT NULL, PRIMARY KEY(device, epoch, seq, idx))"""


class History:
    """A recorded history: daily cumulative t_s snapshots per device (one
    record per day dates them), and swap events."""

    def __init__(self, path):
        self.col = Collector(str(path), keys=lambda d: None)
        self.db = self.col._b              # ? placeholders on either database
        self.db.execute(STRESS)
        self.db.execute(PARTS)
        self.cum = {}

    def days(self, device, first, last, hot_h_per_day, bin_=14, hist="t_s", nbins=16, version=1,
             units=10, errors=lambda d: 0):
        """Days first..last: one daily record (simulated wall time; units and
        err_crc odometers, cumulative in the epoch) and one snapshot."""
        c = self.cum.setdefault((device, hist), np.zeros(nbins))
        odo = self.cum.setdefault((device, "odo"), np.zeros(2))
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO schemas VALUES (?,?,?) ON CONFLICT DO NOTHING",
                        (device, 1, json.dumps([["units", "count", 0, "odometer"],
                                                ["err_crc", "count", 0, "odometer"]])))
        for d in range(first, last + 1):
            c[bin_] += hot_h_per_day * 3600
            odo += (units, errors(d))
            self.db.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                            (device, 1, d, d, 0, 1, 1, d * DAY * 1000, T0 + d * DAY, 3, 86400000,
                             json.dumps([int(x) for x in odo]), T0 + (d + 1) * DAY))
            self.db.execute("INSERT INTO stress VALUES (?,?,?,?,?,?)",
                            (device, 1, d, hist, version, json.dumps([int(x) for x in c])))
        self.db.execute("COMMIT")

    def event(self, device, day, idx, kind, slot, comp, starts=None, detail="swap"):
        odo = {"run_time": day * 3600} if starts is None else {"run_time": day * 3600, "starts": starts}
        self.db.execute("INSERT INTO part_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (device, 1, day, idx, kind, slot, comp, T0 + day * DAY, json.dumps(odo), detail))

    def ledger(self):
        return Ledger(self.col)


@pytest.fixture
def moved(tmp_path):
    """ecap-0001 runs 100 days in the hot asset pump-a, then moves to the
    cool pump-b; ecap-0002 is new in pump-b on the same day."""
    h = History(tmp_path / "ledger.db")
    h.days("pump-a", 0, 200, 20.0, bin_=14)         # 20 h/day at 62.5 degC
    h.days("pump-b", 0, 200, 20.0, bin_=8)          # 20 h/day at 32.5 degC
    h.event("pump-a", 0, 0, "installed", "psu", "ecap-0001")
    h.event("pump-a", 100, 0, "removed", "psu", "ecap-0001")
    h.event("pump-b", 101, 0, "installed", "psu", "ecap-0001")
    h.event("pump-b", 101, 1, "installed", "aux", "ecap-0002")
    yield h
    h.col.close()


def test_a_moved_part_arrives_with_its_history(moved):
    led = moved.ledger()
    assert led.problems == []
    u1, u2 = led.usage("ecap-0001"), led.usage("ecap-0002")
    # 100 days hot in pump-a (day 1..100 counted after the day-0 snapshot), then 99 cool days in pump-b
    assert u1["t_s"][14] == 100 * 20 * 3600 and u1["t_s"][8] == 99 * 20 * 3600
    assert u2["t_s"][14] == 0 and u2["t_s"][8] == 99 * 20 * 3600
    card = cardmod.load()["ecap-105c-2000h"]
    d1 = rul.evaluate(card, u1)["mechanisms"][0]["D_model_P50"]
    d2 = rul.evaluate(card, u2)["mechanisms"][0]["D_model_P50"]
    assert d1 > 3 * d2                           # the hot days travel with the part
    hist = led.history("ecap-0001")
    assert [(s["asset"], s["removed"] is None) for s in hist] == [("pump-a", False), ("pump-b", True)]
    assert led.installed("pump-b") == {"ecap-0001": "psu", "ecap-0002": "aux"}


def test_assess_names_card_rate_and_health(moved):
    led = moved.ledger()
    r = rules.assess(led, cardmod.load(), rules.load_config(), asset="pump-b")
    c1 = r["components"]["ecap-0001"]
    assert c1["card"] == "ecap-105c-2000h@1" and c1["asset"] == "pump-b"
    life = c1["life"]
    assert life["days_P10"] <= life["days_P50"] <= life["days_P90"]
    assert "last 30 days" in life["rate_assumption"]
    a = r["assets"]["pump-b"]
    assert a["health"] == rules.worst([c1["health"], r["components"]["ecap-0002"]["health"]])
    assert [t["rule"] for t in a["trace"]] == ["R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7"]
    assert a["cards"] == ["ecap-105c-2000h@1"]


def _installed_again(moved, dev, slot):
    """ecap-0009 installed in pump-a slot aux, then in dev's slot with no
    removal on record: the ledger and its one problem."""
    moved.event("pump-a", 50, 1, "installed", "aux", "ecap-0009")
    moved.event(dev, 60, 2, "installed", slot, "ecap-0009")
    led = moved.ledger()
    assert len(led.problems) == 1
    return led, led.problems[0]


def test_two_assets_at_once_is_said_and_marks_the_figure_uncertain(moved):
    led, msg = _installed_again(moved, "pump-b", "aux2")
    assert "ecap-0009 is in two assets at once" in msg and "pump-b" in msg and "pump-a" in msg
    r = rules.assess(led, cardmod.load(), rules.load_config(), component="ecap-0009", store=False)
    assert msg in r["components"]["ecap-0009"]["life"]["uncertain"]
    # the others are untouched
    assert "ecap-0001" not in led.uncertain


def test_a_part_moved_between_slots_of_one_asset_is_said_as_a_move(moved):
    led, msg = _installed_again(moved, "pump-a", "aux2")
    assert "ecap-0009 moved within pump-a from slot aux to slot aux2 with no removal on record" in msg
    assert "two assets" not in msg
    assert "ecap-0001" not in led.uncertain


def test_removal_without_install_is_a_gap(moved):
    moved.event("pump-a", 150, 0, "removed", "psu", "ecap-0777")
    led = moved.ledger()
    assert led.problems == ["ecap-0777 removed from pump-a slot psu (epoch 1 seq 150) with no install there "
                            "on record: a gap in its history"]
    assert led.segs.get("ecap-0777") is None


def _stored(h):
    """Rows per table (the ledger's own tables made first, as any read makes them)."""
    h.ledger()
    return {t: h.db.execute("SELECT COUNT(*) FROM %s" % t).fetchone()[0]
            for t in ("stress", "part_events", "records", "component_records", "life_decisions")}


def test_bad_events_change_nothing_already_in_the_ledger(moved):
    led = moved.ledger()
    rules.assess(led, cardmod.load(), rules.load_config(), asset="pump-b")      # decisions stored
    before = _stored(moved)
    u = {c: led.usage(c) for c in ("ecap-0001", "ecap-0002")}
    figs = {c: rul.evaluate(cardmod.load()["ecap-105c-2000h"], u[c]) for c in u}
    # the identity helper's table gets two bad events: a part in two assets, a removal with no install
    moved.event("pump-a", 50, 1, "installed", "aux", "ecap-0009")
    moved.event("pump-b", 60, 2, "installed", "aux2", "ecap-0009")
    moved.event("pump-a", 150, 0, "removed", "psu", "ecap-0777")
    led = moved.ledger()
    assert len(led.problems) == 2 and all("\n" not in p for p in led.problems)
    assert set(led.uncertain) == {"ecap-0009", "ecap-0777"}
    r = rules.assess(led, cardmod.load(), rules.load_config(), asset="pump-b")
    assert r["components"]["ecap-0009"]["life"]["uncertain"]
    # nothing stored changed but the two event rows the test wrote, and the
    # other parts' figures are the same to the last bit
    after = _stored(moved)
    assert after["part_events"] == before["part_events"] + 3
    assert {k: v for k, v in after.items() if k not in ("part_events", "life_decisions")} == \
        {k: v for k, v in before.items() if k not in ("part_events", "life_decisions")}
    for c in u:
        assert all(np.array_equal(led.usage(c)[h], u[c][h]) for h in ("t_s",))
        assert rul.evaluate(cardmod.load()["ecap-105c-2000h"], led.usage(c)) == figs[c]


def test_a_gap_in_the_snapshots_is_said_and_the_rate_is_not_invented(tmp_path):
    # pump-g reports days 0..100, nothing from 101 to 149, then 150..160: its
    # cumulative counts jump over the gap (it ran, 20 h/day, but nothing came in)
    h = History(tmp_path / "g.db")
    h.days("pump-g", 0, 100, 20.0, bin_=12)
    h.cum[("pump-g", "t_s")][12] += 49 * 20 * 3600                     # the days it ran unreported
    h.days("pump-g", 150, 160, 20.0, bin_=12)
    h.event("pump-g", 0, 0, "installed", "psu", "ecap-0200")
    led = h.ledger()
    total = led.usage("ecap-0200")["t_s"][12]
    assert total == 160 * 20 * 3600                                    # every hour counted, none invented
    recent, days = led.recent("ecap-0200", 30)
    # the counts of the window run from the day-100 snapshot: 60 days, not the 30 asked
    assert days == 60.0 and recent["t_s"][12] == 60 * 20 * 3600
    note = led.uncertain["ecap-0200"][0]
    assert "no snapshot of pump-g from 2026-04-11 until after 2026-05-11 (a gap in its history)" in note
    assert "the average over the 60.0 days" in note and "\n" not in note
    r = rules.assess(led, cardmod.load(), rules.load_config(), store=False)
    life = r["components"]["ecap-0200"]["life"]
    assert note in life["uncertain"] and "last 60 days" in life["rate_assumption"]
    # the rate is 20 h/day at 52.5 degC, as it ran: the same figure as a history without the gap
    h2 = History(tmp_path / "g2.db")
    h2.days("pump-g", 0, 160, 20.0, bin_=12)
    h2.event("pump-g", 0, 0, "installed", "psu", "ecap-0200")
    r2 = rules.assess(h2.ledger(), cardmod.load(), rules.load_config(), store=False)
    m, m2 = life["mechanisms"][0], r2["components"]["ecap-0200"]["life"]["mechanisms"][0]
    assert m["rate_per_day_P50"] == pytest.approx(m2["rate_per_day_P50"], rel=1e-9)
    assert r2["components"]["ecap-0200"]["life"]["uncertain"] == []
    # a rate note alone does not take the part out of the fleet fit
    from agent.collector.life import fleet
    fl = fleet.fleet(led, cardmod.load())
    assert "ecap-0200" not in fl["ecap-105c-2000h"]["left_out"]


def test_counts_that_go_down_are_uncertain_not_negative(tmp_path):
    h = History(tmp_path / "l.db")
    h.days("pump-c", 0, 10, 10.0)
    h.db.execute("UPDATE stress SET counts = ? WHERE device = 'pump-c' AND seq = 6", (json.dumps([0] * 16),))
    h.event("pump-c", 0, 0, "installed", "psu", "ecap-0100")
    led = h.ledger()
    assert "t_s" not in led.usage("ecap-0100")
    assert any("counts went down at epoch 1 seq 6" in p for p in led.uncertain["ecap-0100"])
    r = rules.assess(led, cardmod.load(), rules.load_config(), store=False)
    assert r["components"]["ecap-0100"]["health"] == "Unknown"


def test_failure_record_for_unknown_part_changes_nothing(moved):
    led = moved.ledger()
    n = led.b.execute("SELECT COUNT(*) FROM component_records").fetchone()[0]
    with pytest.raises(LedgerError, match="no component ecap-9999 in the ledger"):
        led.add_record("ecap-9999", "failure", mode="BRD")
    with pytest.raises(LedgerError, match="mode 'XYZ' is not an ISO 14224 mode code"):
        led.add_record("ecap-0001", "failure", mode="XYZ")
    with pytest.raises(LedgerError, match="a failure needs its --mode"):
        led.add_record("ecap-0001", "failure")
    assert led.b.execute("SELECT COUNT(*) FROM component_records").fetchone()[0] == n


def test_a_failure_makes_the_asset_critical_and_a_repair_clears_it(moved):
    led = moved.ledger()
    led.add_record("ecap-0002", "failure", at_s=T0 + 150 * DAY, mode="OHE", mechanism="2.7", cause="3.4",
                   detection="5")
    led = moved.ledger()                       # read back from the database
    cfg = rules.load_config()
    r = rules.assess(led, cardmod.load(), cfg, asset="pump-b")
    a = r["assets"]["pump-b"]
    assert a["health"] == "Critical"
    assert a["decision"].startswith("withdraw, then ")
    assert any("ecap-0002" in x and "OHE" in x for x in a["reasons"])
    led.add_record("ecap-0002", "repair", at_s=T0 + 151 * DAY, note="capacitor replaced")
    r2 = rules.assess(moved.ledger(), cardmod.load(), cfg, asset="pump-b")
    assert r2["assets"]["pump-b"]["health"] != "Critical"


def test_every_decision_is_stored_once_with_its_trace(moved):
    led = moved.ledger()
    cfg = rules.load_config()
    rules.assess(led, cardmod.load(), cfg, asset="pump-b")
    rules.assess(led, cardmod.load(), cfg, asset="pump-b")
    rows = led.decisions("pump-b")
    assert len(rows) == 1
    trace = json.loads(rows[0]["trace"])
    assert [t["rule"] for t in trace["rules"]] == ["R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7"]
    assert json.loads(rows[0]["cards"]) == ["ecap-105c-2000h@1"]
    assert trace["thresholds"]["critical"] == 1.0


def test_thresholds_come_from_config(moved, tmp_path):
    led = moved.ledger()
    p = tmp_path / "life.toml"
    p.write_text('[thresholds]\ncritical = 0.0001\n[asset."pump-b"]\ncontract_days_left = 100\n')
    cfg = rules.load_config(str(p))
    a = rules.assess(led, cardmod.load(), cfg, asset="pump-b", store=False)["assets"]["pump-b"]
    assert a["trace"][0]["fired"] is True and a["decision"].startswith("withdraw")
    p.write_text('[thresholds]\ncritcal = 0.1\n')
    with pytest.raises(rules.ConfigError, match="has no critcal"):
        rules.load_config(str(p))


def test_rule_table_first_match_and_unknown_inputs():
    th = rules.DEFAULTS["thresholds"]
    base = {"health": "Good", "D_P90": 0.2, "rul_P10_days": 900.0, "contract_days_left": 365,
            "fx_ok": True, "legal_flag": False, "bad_replaceable": [], "ec": None,
            "post_repair_rul_P10_days": None, "tg": None, "payback_days": None, "core_D_P90": 0.2,
            "wear_D_P50": 0.1, "u_ratio": None, "contract_ends": None, "next_term_days": None,
            "reman_cost_ratio": None, "retired": None, "harvestable": ["a", "b"]}
    d, t = rules.next_use(base, th)
    assert d == "continue" and t[1]["fired"] is True and t[3]["fired"] is None
    d, t = rules.next_use(dict(base, rul_P10_days=100.0), th)      # will not last the term
    assert d == "recycle" and t[1]["fired"] is False
    d, _ = rules.next_use(dict(base, health="Poor", bad_replaceable=["ecap-1"], ec=0.1,
                               post_repair_rul_P10_days=900.0), th)
    assert d == "repair: replace ecap-1"
    d, _ = rules.next_use(dict(base, legal_flag=True), th)
    assert d == "withdraw, then harvest parts: a, b"
    d, _ = rules.next_use(dict(base, u_ratio=0.2, next_term_days=700, contract_days_left=None), th)
    assert d == "continue"                                          # R1 comes before R4
    d, _ = rules.next_use(dict(base, fx_ok=False, next_term_days=700), th)
    assert d == "redeploy"


# -- the commands ------------------------------------------------------------------------

def _tally(argv, capsys):
    from agent.cli import main
    rc = main(argv)
    o = capsys.readouterr()
    return rc, o.out, o.err


def test_the_ledger_on_postgresql(postgres):
    h = History(postgres)
    h.days("pump-a", 0, 40, 20.0, bin_=14)
    h.days("pump-b", 0, 40, 20.0, bin_=8)
    h.event("pump-a", 0, 0, "installed", "psu", "ecap-0001")
    h.event("pump-a", 20, 0, "removed", "psu", "ecap-0001")
    h.event("pump-b", 21, 0, "installed", "psu", "ecap-0001")
    led = h.ledger()
    u = led.usage("ecap-0001")
    assert u["t_s"][14] == 20 * 20 * 3600 and u["t_s"][8] == 19 * 20 * 3600
    with pytest.raises(LedgerError):
        led.add_record("nope-1", "failure", mode="BRD")
    led.add_record("ecap-0001", "failure", at_s=T0 + 30 * DAY, mode="BRD")
    with pytest.raises(LedgerError, match="already has a failure record"):
        led.add_record("ecap-0001", "failure", at_s=T0 + 30 * DAY, mode="BRD")
    r = rules.assess(h.ledger(), cardmod.load(), rules.load_config(), asset="pump-b")
    assert r["assets"]["pump-b"]["health"] == "Critical"
    rules.assess(h.ledger(), cardmod.load(), rules.load_config(), asset="pump-b")
    assert len(h.ledger().decisions("pump-b")) == 1
    h.col.close()


def test_tally_life_json_and_text(moved, capsys):
    db = moved.col.db_path
    rc, out, _ = _tally(["life", "--db", db, "--asset", "pump-b", "--json"], capsys)
    assert rc == 0
    r = json.loads(out)
    assert set(r["assets"]) == {"pump-b"} and r["assets"]["pump-b"]["trace"][0]["rule"] == "R0"
    assert r["components"]["ecap-0001"]["history"][0]["asset"] == "pump-a"
    rc, out, _ = _tally(["life", "--db", db, "--component", "ecap-0001"], capsys)
    assert rc == 0
    assert "component ecap-0001 (ecap-105c-2000h@1) in pump-b" in out
    assert "been in pump-a slot psu from 2026-01-01T00:00:00Z" in out
    assert "assuming the damage rate of the last 30 days continues" in out


def test_tally_event_add_and_its_refusals(moved, capsys):
    db = moved.col.db_path
    rc, _, e = _tally(["event", "add", "--db", db, "--component", "ecap-0001", "--kind", "failure",
                       "--mode", "OHE", "--mechanism", "2.7", "--detection", "5", "--at", "2026-06-01T00:00:00Z"],
                      capsys)
    assert rc == 0 and "failure record added for ecap-0001" in e
    rc, out, _ = _tally(["life", "--db", db, "--asset", "pump-b"], capsys)
    assert "asset pump-b: health Critical; next use: withdraw, then" in out
    before = _stored(moved)
    rc, _, e = _tally(["event", "add", "--db", db, "--component", "nope-1", "--kind", "failure", "--mode", "BRD"],
                      capsys)
    assert rc == 2 and e == "tally: event: no component nope-1 in the ledger (no install event names it)\n"
    assert _stored(moved) == before
    rc, _, e = _tally(["life", "--db", db, "--asset", "pump-z"], capsys)
    assert rc == 2 and e.count("\n") == 1 and "no asset pump-z" in e


def test_tally_life_bad_card_is_one_line(moved, capsys, tmp_path):
    d = tmp_path / "cards"
    d.mkdir()
    (d / "bad.toml").write_text('type = "ecap-x"\nversion = 1\nmatch = ["ecap-"]\n[weibull]\n'
                                'beta = {value = 2, unit = "1", source = "s"}\n'
                                'rated_quantile = {value = 0.1, source = "s"}\n')
    before = _stored(moved)
    rc, _, e = _tally(["life", "--db", moved.col.db_path, "--cards", str(d)], capsys)
    assert rc == 2
    assert e == "tally: life: card ecap-x v1 (bad.toml): [weibull]: parameter rated_quantile has no unit (it is in 1)\n"
    assert _stored(moved) == before                   # no decision stored from a refused card


# -- fleet calibration -----------------------------------------------------------------------

def test_censored_fit_recovers_the_fleet_and_blends_with_the_rating():
    from agent.collector.life import fleet
    rng = np.random.default_rng(11)
    life = 2.0 * rng.weibull(3.0, 60)                 # parts outlive their rating twice over
    seen = rng.uniform(0.5, 2.5, 60)                  # how far each part has run so far
    failures = list(life[life <= seen])
    censored = list(seen[life > seen])
    c = fleet.calibrate(failures, censored, beta_prior=3.0, q=0.5)
    eta_prior = 1 / (math.log(2)) ** (1 / 3.0)
    assert c["prior"]["eta"] == pytest.approx(eta_prior)
    assert c["fit"]["eta_90ci"][0] < 2.0 < c["fit"]["eta_90ci"][1]
    w = len(failures) / (len(failures) + 5)
    assert c["weight"] == pytest.approx(w)
    assert c["blend"]["eta"] == pytest.approx(math.exp(w * math.log(c["fit"]["eta"]) + (1 - w) * math.log(eta_prior)))
    assert c["life_factor"] > 1.3
    # treating the running parts as failures would understate the life
    naive = fleet.calibrate(failures + censored, [], 3.0, 0.5)
    assert naive["fit"]["eta"] < c["fit"]["eta"]
    # few failures: the rating stands
    few = fleet.calibrate(failures[:3], censored, 3.0, 0.5)
    assert few["fit"] is not None and few["weight"] == 0 and few["life_factor"] == 1.0


# reliability.readthedocs.io, "How does Maximum Likelihood Estimation work"
# (docs/How does Maximum Likelihood Estimation work.rst): Fit_Weibull_2P on
# failures [17, 5, 12] and right-censored [20, 25] prints Alpha 23.0653 (standard
# error 8.76119) and Beta 1.57474 (0.805575). Our fit is that call; its bounds
# are the two-sided 90 % ones (the library's normal approximation on the log of
# each parameter: p * exp(-/+ z(0.95) * SE / p)), from the printed errors.
# "Working with fitted distributions" (same docs): the automotive data set
# (10 failures, 21 right-censored) prints Alpha 134651, Beta 1.15443; with 10
# failures the blend weight is 10 / 15 on the fit.

def test_fleet_fit_reproduces_reliabilitys_printed_censored_fits():
    from scipy.stats import norm

    from agent.collector.life import fleet
    c = fleet.calibrate([17, 5, 12], [20, 25], beta_prior=1.5, q=0.1)
    assert round(c["fit"]["eta"], 4) == 23.0653 and round(c["fit"]["beta"], 5) == 1.57474
    z = norm.ppf(0.95)
    for key, p, se in (("eta_90ci", 23.0653, 8.76119), ("beta_90ci", 1.57474, 0.805575)):
        lo, hi = c["fit"][key]
        assert lo == pytest.approx(p * math.exp(-z * se / p), rel=1e-4)
        assert hi == pytest.approx(p * math.exp(z * se / p), rel=1e-4)
    assert c["weight"] == 0 and c["blend"]["eta"] == c["prior"]["eta"]      # 3 failures: the rating stands

    from reliability.Datasets import automotive
    a = automotive()
    c = fleet.calibrate(a.failures, a.right_censored, beta_prior=1.5, q=0.1)
    assert round(c["fit"]["eta"]) == 134651 and round(c["fit"]["beta"], 5) == 1.15443
    w = 10 / 15
    eta_prior = 1 / (-math.log(0.9)) ** (1 / 1.5)
    assert c["weight"] == pytest.approx(w)
    assert c["blend"]["eta"] == pytest.approx(math.exp(w * math.log(134651) + (1 - w) * math.log(eta_prior)),
                                              rel=1e-5)
    assert c["blend"]["beta"] == pytest.approx(w * 1.15443 + (1 - w) * 1.5, rel=1e-5)


def test_fleet_from_the_ledger_feeds_the_figures(tmp_path, capsys):
    h = History(tmp_path / "f.db")
    for i in range(8):
        dev = "site-%d" % i
        h.days(dev, 0, 60, 24.0, bin_=12 + i % 4)      # 52.5..67.5 degC
        h.event(dev, 0, 0, "installed", "psu", "ecap-%04d" % i)
    led = h.ledger()
    for i in range(6):
        led.add_record("ecap-%04d" % i, "failure", at_s=T0 + 60 * DAY, mode="PDE", mechanism="2.4", cause="3.4",
                       detection="5")
    from agent.collector.life import fleet
    fl = fleet.fleet(h.ledger(), cardmod.load())["ecap-105c-2000h"]
    assert (fl["failures"], fl["censored"], fl["left_out"]) == (6, 2, [])
    assert fl["weight"] == pytest.approx(6 / 11)
    rc, out, _ = _tally(["life", "--db", h.col.db_path, "--fleet", "--component", "ecap-0007", "--no-store"], capsys)
    assert rc == 0
    assert "fleet ecap-105c-2000h@1: 6 failed, 2 running" in out
    assert "calibrated by the fleet: 6 failures, 2 running, weight 0.55" in out
    h.col.close()


def test_error_trend_collar_and_outcome_units_come_from_the_billing_ledger(tmp_path):
    h = History(tmp_path / "e.db")
    h.days("pump-e", 0, 89, 12.0, bin_=5, hist="load_s", nbins=8, units=10,
           errors=lambda d: 5 if d >= 60 else 1)
    h.event("pump-e", 0, 0, "installed", "motor", "motor-0001")
    r = rules.assess(h.ledger(), cardmod.load(), rules.load_config(), asset="pump-e", store=False)
    c = r["components"]["motor-0001"]
    life = c["life"]
    # the last 30 days had 150 errors against 30 the 30 days before: x5.0 > the card's x3
    assert life["condition"] == ["error rate x5.0 over the previous window > x3.0: collar D >= 0.5"]
    assert life["D_P50"] >= 0.5 and c["health"] == "Fair"
    assert any("error rate" in x for x in c["reasons"])
    assert life["outcome_per_day"] == pytest.approx(10.0)
    assert life["outcome_P50"] == pytest.approx(life["days_P50"] * 10.0)
    h.col.close()


def test_a_swap_after_an_error_burst_is_a_derived_failure(tmp_path):
    h = History(tmp_path / "b.db")
    h.days("pump-f", 0, 40, 10.0, errors=lambda d: 12 if 24 <= d <= 29 else 0)
    h.event("pump-f", 0, 0, "installed", "psu", "ecap-0600")
    h.event("pump-f", 30, 0, "removed", "psu", "ecap-0600")       # swapped the day after the burst
    h.event("pump-f", 30, 1, "installed", "psu", "ecap-0601")
    h.event("pump-f", 0, 1, "installed", "aux", "ecap-0602")
    h.event("pump-f", 15, 0, "removed", "aux", "ecap-0602")       # a quiet swap: nothing derived
    led = h.ledger()
    recs = led.records.get("ecap-0600")
    assert len(recs) == 1 and recs[0]["source"] == "derived" and recs[0]["mode"] == "ERO"
    assert "72 errors in the 7 days before" in recs[0]["note"]
    assert "ecap-0602" not in led.records and "ecap-0601" not in led.records
    assert led.b.execute("SELECT COUNT(*) FROM component_records").fetchone()[0] == 0   # never stored
    r = rules.assess(led, cardmod.load(), rules.load_config(), component="ecap-0600", store=False)
    assert r["components"]["ecap-0600"]["health"] == "Critical"
    h.col.close()


# -- the formats the stress and identity helpers write (docs/wire.md) ------------------------

DEFS_SQL = """CREATE TABLE IF NOT EXISTS stress_defs (device TEXT NOT NULL, edges_version INT NOT NULL,
    defs TEXT NOT NULL, PRIMARY KEY (device, edges_version))"""
DEFS = [["load_s", "count", "s", 0, 8, [10, 30, 50, 70, 85, 100, 115], 0],
        ["t_s", "count", "s", 0, 16, list(range(-5, 66, 5)), 0],
        ["lux_w", "level", "lx/W", -2, 1, [], 0]]


def test_birth_definitions_give_the_bins_and_levels_are_readings(tmp_path):
    h = History(tmp_path / "d.db")
    h.db.execute(DEFS_SQL)
    ver = 0x1a2b3c4d                                   # the definitions' hash, as the device sends it
    h.db.execute("INSERT INTO stress_defs VALUES (?,?,?)", ("lum-1", ver, json.dumps(DEFS)))
    h.days("lum-1", 0, 60, 12.0, bin_=6, hist="load_s", nbins=8, version=ver)   # 12 h/day at 92.5 %
    lux = 500
    for d in range(0, 61, 10):                        # lux per watt falls 500 -> 350 (levels, not counts)
        h.db.execute("INSERT INTO stress VALUES (?,?,?,?,?,?)", ("lum-1", 1, d, "lux_w", ver, json.dumps([lux])))
        lux -= 25
    h.days("lum-2", 0, 60, 12.0, bin_=6, hist="load_s", nbins=8, version=0x55555555)   # no definitions
    cards = tmp_path / "cards"
    cards.mkdir()
    src = open(cardmod.HERE + "/led-engine.toml").read()
    pn = next(x for x in src.splitlines() if x.startswith("part_numbers"))
    (cards / "led.toml").write_text(src.replace(pn, 'part_numbers = ["LE-4K-930"]'))
    h.event("lum-1", 0, 0, "installed", "engine", "at24cs02-00112233445566778899aabbccddeeff", detail="LE-4K-930")
    h.event("lum-2", 0, 0, "installed", "engine", "at24cs02-ffeeddccbbaa99887766554433221100", detail="LE-4K-930")
    led = h.ledger()
    assert led.problems == []                         # a falling lux/W is a reading, not a count going down
    cs = cardmod.load(str(cards))
    r = rules.assess(led, cs, rules.load_config(), store=False)
    c1 = r["components"]["at24cs02-00112233445566778899aabbccddeeff"]
    assert c1["card"] == "led-engine@1"                # found by the passport's part number
    assert c1["life"]["condition"] == ["lumen ratio 0.700 < 0.75: collar D >= 0.9"]   # 350/500 lx/W
    assert c1["health"] in ("Poor", "Fair") and c1["life"]["D_P50"] >= 0.9
    u = led.usage("at24cs02-00112233445566778899aabbccddeeff")
    assert u["_layouts"]["load_s"]["values"][6] == 107.5 and u["run_h"] == 60 * 12.0
    # the same counts under a version with no definitions in the ledger: said, not guessed
    u2 = led.usage("at24cs02-ffeeddccbbaa99887766554433221100")
    assert "load_s" in u2 and "load_s" not in u2["_layouts"]
    h.col.close()


def test_a_vanished_part_is_a_derived_failure(tmp_path):
    h = History(tmp_path / "v.db")
    h.days("pump-v", 0, 20, 10.0)
    h.event("pump-v", 0, 0, "installed", "sht4x@0x44", "sht4x-0a0b0c0d")
    h.event("pump-v", 12, 0, "removed", "sht4x@0x44", "sht4x-0a0b0c0d", detail="vanished")
    led = h.ledger()
    (rec,) = led.records["sht4x-0a0b0c0d"]
    assert (rec["source"], rec["mode"], rec["mechanism"]) == ("derived", "FTF", "3.2")
    assert "stopped answering in pump-v slot sht4x@0x44" in rec["note"]
    h.col.close()


def test_run_time_and_cycles_odometers_when_there_is_no_load_histogram(tmp_path):
    h = History(tmp_path / "o.db")
    h.db.execute("INSERT INTO schemas VALUES (?,?,?)", ("cmp-1", 2, json.dumps(
        [["run_time", "s", 0, "odometer"], ["cycles", "count", 0, "odometer"]])))
    for d in range(0, 11):
        h.db.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                     ("cmp-1", 1, d, d, 0, 2, 1, d * DAY * 1000, T0 + d * DAY, 3, 86400000,
                      json.dumps([d * 8 * 3600, d * 40]), T0 + (d + 1) * DAY))
    for d, kind in ((0, "installed"), (5, "removed")):
        h.db.execute("INSERT INTO part_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                     ("cmp-1", 1, d, 0, kind, "motor", "motor-0042", T0 + d * DAY,
                      json.dumps({"run_time": d * 8 * 3600, "cycles": d * 40}), "swap"))
    h.db.execute("INSERT INTO part_events VALUES (?,?,?,?,?,?,?,?,?,?)",
                 ("cmp-1", 1, 5, 1, "installed", "motor", "motor-0043", T0 + 5 * DAY,
                  json.dumps({"run_time": 5 * 8 * 3600, "cycles": 200}), "swap"))
    led = h.ledger()
    u_old, u_new = led.usage("motor-0042"), led.usage("motor-0043")
    assert (u_old["run_h"], u_old["starts"]) == (40.0, 200.0)          # at its removal
    assert (u_new["run_h"], u_new["starts"]) == (40.0, 200.0)          # since its install, from the newest record
    h.col.close()


def test_a_scoped_read_gives_the_same_figures(moved):
    moved.days("pump-z", 0, 200, 24.0, bin_=15)          # an asset that has nothing to do with pump-b
    full = moved.ledger()
    scoped = Ledger(moved.col, asset="pump-b")
    assert scoped.scope == ["pump-a", "pump-b"]        # ecap-0001 came from pump-a
    for c in ("ecap-0001", "ecap-0002"):
        assert scoped.usage(c)["t_s"].tolist() == full.usage(c)["t_s"].tolist()
    assert Ledger(moved.col, component="ecap-0002").scope == ["pump-b"]


def test_a_snapshot_that_is_not_a_list_of_numbers_is_said_and_skipped(moved):
    moved.db.execute("INSERT INTO stress VALUES (?,?,?,?,?,?)", ("pump-b", 1, 500, "t_s", 1, "oops"))
    moved.db.execute("INSERT INTO stress VALUES (?,?,?,?,?,?)", ("pump-b", 1, 501, "t_s", 1, '["a", 1]'))
    led = moved.ledger()
    assert led.problems == ["stress pump-b t_s epoch 1 seq 500: counts are not a JSON list of numbers",
                            "stress pump-b t_s epoch 1 seq 501: counts are not a JSON list of numbers"]
    assert led.usage("ecap-0002")["t_s"][8] == 99 * 20 * 3600         # the good snapshots still count


def test_events_without_wall_time_keep_their_device_order(tmp_path):
    h = History(tmp_path / "w.db")
    h.days("pump-w", 0, 10, 10.0)
    h.event("pump-w", 2, 0, "installed", "psu", "ecap-0700")
    h.event("pump-w", 6, 0, "removed", "psu", "ecap-0700")
    h.db.execute("UPDATE part_events SET wall_s = 0 WHERE kind = 'removed'")    # a clock not yet set
    led = h.ledger()
    assert led.problems == []
    assert led.usage("ecap-0700")["t_s"][14] == 4 * 10 * 3600
    h.col.close()
