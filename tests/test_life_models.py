"""agent/collector/life/: each life model against a published worked example, to the
precision it was printed with (the source is named at each test), and the
cards' validation: one line naming what is wrong."""
import contextlib
import io
import math
import re

import numpy as np
import pytest

from agent.collector.life import cards, models, rul


# -- Palmgren-Miner: the `reliability` documentation's example ---------------------
# reliability.readthedocs.io, "Palmgren Miner linear damage model": bearings
# failing after 50000, 6500 and 1000 h at 1, 2 and 4 kN; each load cycle is
# 40 min at 1 kN, 15 min at 2 kN and 5 min at 4 kN. Printed: 0.01351 % per
# cycle, service life 7400.37951 cycles, damage 9.86717 / 28.463 / 61.66983 %.

def test_miner_reproduces_the_reliability_docs_example():
    frac, per_cycle = models.miner([50000, 6500, 1000], [40 / 60, 15 / 60, 5 / 60])
    assert round(per_cycle * 100, 5) == 0.01351
    assert round(1 / per_cycle, 5) == 7400.37951
    assert [round(x, 5) for x in frac / per_cycle * 100] == [9.86717, 28.463, 61.66983]


def test_miner_agrees_with_reliabilitys_own_printout():
    from reliability.PoF import palmgren_miner_linear_damage
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        palmgren_miner_linear_damage(rated_life=[50000, 6500, 1000], time_at_stress=[40 / 60, 15 / 60, 5 / 60],
                                     stress=[1, 2, 4])
    printed = [float(x) for x in re.findall(r"Damage fraction = ([0-9.]+)", out.getvalue())]
    frac, per_cycle = models.miner([50000, 6500, 1000], [40 / 60, 15 / 60, 5 / 60])
    assert printed == [round(x, 5) for x in frac / per_cycle * 100]
    life = float(re.search(r"service life of the component is ([0-9.]+)", out.getvalue()).group(1))
    assert life == round(1 / per_cycle, 5)


# -- ISO 281 basic rating life ------------------------------------------------------
# Course notes "Antifriction bearings", Example 1 (FAG catalogue data): deep
# groove ball bearing 6208, C = 22.4 kN, n = 650 r/min, Fr = 3.2 kN:
# L10 = (22.4/3.2)^3 = 343 million rev, L10h = 343e6 / (650 * 60) = 8795 h.
# sarthaks.com 2642436: C = 16 kN, W = 2 kN, ball bearing: L10 = 512 million rev.

def test_iso281_reproduces_the_6208_example():
    assert round(float(models.iso281_l10(22.4, 3.2)), 6) == 343.0
    assert round(float(models.iso281_l10h(22.4, 3.2, 650))) == 8795
    assert float(models.iso281_l10(16, 2)) == 512.0


def test_iso281_spectrum_damage_equals_the_mean_load_life():
    # a load spectrum's Miner sum equals the life at ISO 281's mean load
    load_pct = [20.0, 60.0, 100.0]
    hours = np.array([300.0, 500.0, 200.0])
    Lb = models.iso281_life_h(load_pct, 13.5, 0.4, 1.2, 1450, 3)[0]
    d = float(np.sum(hours / Lb))
    P = [0.4 + 1.2 * x / 100 for x in load_pct]
    Pm = models.iso281_mean_load(P, hours, 3)
    assert d == pytest.approx(hours.sum() / float(models.iso281_l10h(13.5, Pm, 1450)), rel=1e-12)
    # and a heavier spectrum uses more life
    Lb2 = models.iso281_life_h([40.0, 80.0, 110.0], 13.5, 0.4, 1.2, 1450, 3)[0]
    assert np.sum(hours / Lb2) > d


# -- Arrhenius: electrolytic capacitors ---------------------------------------------
# The 10-degree rule as the capacitor makers print it (illinoiscapacitor.com,
# eepower.com); the worked figures: a cap rated 105 degC / 2000 h lasts 4000 h
# at 95, 8000 h at 85 and 32,000 h at 65 degC (egg.5ch.net dtm 1630432580/255).
# Cosel FAQ a0057: 1000 h at 105 degC; 8 h each at 45, 55 and 65 degC
# (64,000, 32,000, 16,000 h) -> equivalent ambient 57.2 degC.

def test_capacitor_2000h_at_105_gives_32000h_at_65():
    L = models.arrhenius_10k([95, 85, 65], 2000, 105)[0]
    assert [round(x) for x in L] == [4000, 8000, 32000]


def test_cosel_mixed_temperature_example():
    lives = models.arrhenius_10k([45, 55, 65], 1000, 105)[0]
    assert [round(x) for x in lives] == [64000, 32000, 16000]
    life, ta = models.equivalent_temperature([8, 8, 8], lives, 1000, 105)
    assert round(ta, 1) == 57.2
    assert ta > 55.0               # the mean temperature understates the stress


def test_arrhenius_ea_doubles_per_10K_near_55C_at_0_64eV():
    # CIRCULAR.md 2.4: a doubling per 10 K near 55 degC is Ea ~ 0.64 eV
    L = models.arrhenius_ea([50.0, 60.0], 1.0, 55.0, 0.64)[0]
    assert round(L[0] / L[1], 1) == 2.0


# -- Peck -------------------------------------------------------------------------------
# No worked Peck example with printed numbers was found (accendoreliability.com
# "Temperature & Humidity Accelerated Life Testing" gives the form:
# AF = (RH_u/RH_t)^-n * exp(Ea/k (1/T_u - 1/T_t))). Checked here: it reduces
# to Arrhenius at equal humidity and to the humidity power law at equal
# temperature, and the life per cell is the rating divided by it.

def test_peck_reduces_to_its_two_factors():
    same_rh = float(models.peck_af(85, 25, 85, 85, 3.0, 0.7))
    arr = math.exp(0.7 / models.BOLTZMANN_EV * (1 / 298.15 - 1 / 358.15))
    assert same_rh == pytest.approx(arr, rel=1e-12)
    same_t = float(models.peck_af(50, 85, 85, 85, 3.0, 0.7))
    assert same_t == pytest.approx((85 / 50) ** 3.0, rel=1e-12)
    L = models.peck_life([(50, 25)], 1000, 85, 85, 3.0, 0.7)[0, 0]
    assert L == pytest.approx(1000 * float(models.peck_af(50, 25, 85, 85, 3.0, 0.7)), rel=1e-12)


# -- TM-21 ------------------------------------------------------------------------------
# L70 = ln(B/0.7)/alpha (E. Bretschneider, "An intuitive metric for lumen
# maintenance"); the 6x rule: "6,000 hours of testing allows lumen
# maintenance claims up to 36,000 hours" (DOE SSL slides); 5.5x for 10-19 samples.

def test_tm21_fit_projection_and_the_6x_rule():
    alpha, B = 6.0e-6, 0.985
    t = np.arange(0, 6001, 1000.0)
    flux = B * np.exp(-alpha * t)
    sel_t, sel_f = models.tm21_select(list(t), list(flux))
    assert sel_t == [3000.0, 4000.0, 5000.0, 6000.0]
    a, b = models.tm21_fit(sel_t, sel_f)
    assert a == pytest.approx(alpha, rel=1e-9) and b == pytest.approx(B, rel=1e-9)
    lp, reported, capped = models.tm21_report(a, b, 6000, 20)
    assert lp == pytest.approx(math.log(B / 0.7) / alpha, rel=1e-9)   # ~56,947 h projected
    assert reported == 36000.0 and capped
    assert models.tm21_report(a, b, 6000, 12)[1] == 33000.0
    assert models.tm21_report(a, b, 6000, 9)[1] is None


# -- contactor mixed duty -----------------------------------------------------------------

def test_contactor_mixed_duty_formula_bounds():
    # X = A / (1 + (C/100)(A/B - 1)): all normal breaking -> A, all inching -> B
    assert models.contactor_mixed(1.2e6, 2e5, 0) == 1.2e6
    assert models.contactor_mixed(1.2e6, 2e5, 100) == pytest.approx(2e5)
    assert 2e5 < models.contactor_mixed(1.2e6, 2e5, 10) < 1.2e6


# -- Weibull remaining life -----------------------------------------------------------------

def test_new_part_rul_is_reliabilitys_weibull_quantile():
    from reliability.Distributions import Weibull_Distribution
    eta, beta = 50000.0, 2.0
    u = np.array([0.1, 0.5, 0.9])
    x = rul.conditional_rul(np.zeros(3), eta, beta, u)
    w = Weibull_Distribution(alpha=eta, beta=beta)
    assert list(x) == pytest.approx([float(w.quantile(q)) for q in u], rel=1e-9)
    # a B10 rating: eta from L_ref puts 10 % of failures before L_ref
    eta10 = float(rul.weibull_eta(20000.0, 1.5, 0.1))
    assert float(Weibull_Distribution(alpha=eta10, beta=1.5).CDF(xvals=20000.0, show_plot=False)) \
        == pytest.approx(0.1, rel=1e-9)


def test_older_part_has_less_left_and_damage_follows_usage():
    c = cards.load()["ecap-105c-2000h"]
    cool = np.zeros(16)
    cool[8] = 3600 * 5000.0                  # 5000 h at 37.5 degC
    hot = np.zeros(16)
    hot[15] = 3600 * 5000.0                  # 5000 h above 65 degC
    r_cool = rul.evaluate(c, {"t_s": cool}, {"t_s": cool / 100}, window_days=30)
    r_hot = rul.evaluate(c, {"t_s": hot}, {"t_s": hot / 100}, window_days=30)
    assert r_hot["D_P50"] > r_cool["D_P50"]
    m_hot, m_cool = r_hot["mechanisms"][0], r_cool["mechanisms"][0]
    assert m_hot["rul_P50"] < m_cool["rul_P50"]
    assert r_hot["days_P10"] <= r_hot["days_P50"] <= r_hot["days_P90"]
    assert r_hot["card"] == "ecap-105c-2000h@1"
    assert "67.5" in m_hot["dominant"]
    # the nominal damage: 5000 h at 67.5 degC on 2000 h at 105 with halving 10 K
    assert m_hot["D_model_P50"] == pytest.approx(5000 / (2000 * 2 ** 3.75), rel=0.15)
    # same inputs, same seed: same figures
    assert rul.evaluate(c, {"t_s": hot}, {"t_s": hot / 100}) == rul.evaluate(c, {"t_s": hot}, {"t_s": hot / 100})


def test_collar_raises_damage_and_says_why():
    c = cards.load()["bearing-6204"]
    load = np.full(8, 3600 * 100.0)
    plain = rul.evaluate(c, {"load_s": load})
    shaken = rul.evaluate(c, {"load_s": load}, evidence={"vib_zone_h": [100, 10, 30, 2]})
    assert shaken["D_P50"] >= 0.9 > plain["D_P90"]
    assert any("zone D" in r for r in shaken["condition"])


def test_missing_histogram_is_uncertain_not_invented():
    c = cards.load()["ecap-105c-2000h"]
    r = rul.evaluate(c, {"load_s": np.zeros(8)})
    assert "D_P50" not in r and r["uncertain"] == ["electrolyte dry-out: no t_s histogram in the history"]


# -- cards ---------------------------------------------------------------------------------

GOOD = """
type = "x-cap"
version = 2
match = ["x-"]
[weibull]
beta = {value = 2.0, unit = "1", source = "s"}
rated_quantile = {value = 0.1, unit = "1", source = "s"}
[[mechanism]]
name = "dry-out"
model = "arrhenius10"
L0 = {value = 2000, unit = "h", source = "datasheet"}
T0 = {value = 105, unit = "degC", source = "datasheet"}
halving_K = {value = 10, unit = "K", range = [8, 12], source = "rule"}
"""


def _card(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return str(p)


def test_shipped_cards_load_and_a_good_card_replaces_by_type(tmp_path):
    shipped = cards.load()
    assert {"ecap-105c-2000h", "bearing-6204", "led-engine", "contactor-ac3", "sht-humidity-sensor"} <= set(shipped)
    for c in shipped.values():
        for m in c["mechanisms"]:
            for p in m["params"].values():
                assert p is None or (p["unit"] and p["source"])
    d = tmp_path / "mine"
    d.mkdir()
    (d / "c.toml").write_text(GOOD)
    got = cards.load(str(d))
    assert cards.ref(got["x-cap"]) == "x-cap@2"
    assert cards.for_component(got, "x-0001")["type"] == "x-cap"


@pytest.mark.parametrize("old,new,says", [
    ('L0 = {value = 2000, unit = "h", source = "datasheet"}\n', "",
     "mechanism dry-out: parameter L0 is missing"),
    ('unit = "h", source = "datasheet"', 'source = "datasheet"',
     "parameter L0 has no unit (it is in h)"),
    ('value = 2000, unit = "h"', 'value = -5, unit = "h"',
     "parameter L0 = -5 h is impossible: it must be > 0"),
    ('unit = "degC"', 'unit = "F"', "parameter T0 is in 'F'; this model takes degC"),
    ('range = [8, 12]', 'range = [11, 12]', "parameter halving_K: range [11, 12] is impossible"),
    ('L0 = {value = 2000, unit = "h", source = "datasheet"}', 'L0 = {value = 2000, unit = "h"}',
     "parameter L0 has no source"),
    ('model = "arrhenius10"', 'model = "magic"', "model 'magic' is not one of"),
    ('match = ["x-"]\n', "", "match is missing"),
])
def test_a_bad_card_is_one_line_naming_what_is_wrong(tmp_path, old, new, says):
    assert old in GOOD
    with pytest.raises(cards.CardError) as e:
        cards.load_file(_card(tmp_path, GOOD.replace(old, new)))
    msg = str(e.value)
    assert says in msg and "\n" not in msg
    assert msg.startswith("card x-cap v2 (c.toml)") or msg.startswith("c.toml")


# -- many assets at once (what tally bench life times) --------------------------------------

def test_evaluate_many_gives_each_asset_what_evaluate_gives_it():
    from hil.bench import life
    fleet = life._fleet(4, 3000, seed=3)
    u, r = life.usage_of(fleet), life.usage_of(fleet, 3000 - life.WINDOW_H)
    cs = cards.load()
    for k in ("ecap-105c-2000h", "sht-humidity-sensor", "bearing-6204", "contactor-ac3", "pump-motor"):
        many = rul.evaluate_many(cs[k], u, r, window_days=30.0, samples=500)
        for i in (0, 3):
            one = rul.evaluate(cs[k], {h: (v[i] if h != "_versions" else v) for h, v in u.items()},
                               {h: (v[i] if h != "_versions" else v) for h, v in r.items()},
                               window_days=30.0, samples=500)
            assert many["D_P90"][i] == pytest.approx(one["D_P90"], rel=1e-9)
            assert many["days_P10"][i] == pytest.approx(one["days_P10"], rel=1e-9)
    # the bench's card change really changes the cards it is meant to
    new = life.changed(cs)
    assert new["node-electronics"]["version"] == cs["node-electronics"]["version"] + 1
    assert new["node-electronics"]["mechanisms"][0]["params"]["Ea"]["value"] == pytest.approx(0.75)
