"""Asset life on a simulated ledger, end to end: `tally simulate` runs each
profile (its wear parts carry ID EEPROM tag twins with passports, declared
in the board file: boards/tags.py), then `tally life --json` must rate every
part installed with a card and a figure, see the wear parts' damage move,
give remaining life in the asset's outcome unit without configuration, and
let a healthy young asset continue."""
import json

import pytest

from boards import tags as board_tags
from hil import scenario

# profile -> (outcome odometer, its unit, {tag slot: card type its passport's part number maps to})
EXPECT = {
    "compressor": ("air", "m3", {"motor-bearing": "bearing-6204", "motor-winding": "motor-24v-dc",
                                 "contactor": "contactor-ac3"}),
    "luminaire": ("light_exposure", "lx.h", {"led-engine": "led-engine", "led-driver": "ecap-105c-2000h"}),
    "pump": ("water", "m3", {"pump-bearing": "bearing-6204", "pump-motor": "pump-motor",
                             "pump-seal": "mech-seal"}),
}
# simulated days: enough for dated snapshots, a usage rate and wear (the pump's
# emulation is the slowest: vibration windows at every sample)
DAYS = {"compressor": "1", "luminaire": "1", "pump": "0.5"}
PROFILE_CLASS = {"compressor": scenario.Compressor, "luminaire": scenario.Luminaire,
                 "pump": scenario.BoosterPump}


def _tally(argv, capsys):
    from agent.cli import main
    rc = main(argv)
    o = capsys.readouterr()
    return rc, o.out, o.err


@pytest.mark.parametrize("profile", sorted(EXPECT))
def test_a_simulated_asset_has_a_life_figure_for_every_part(profile, tmp_path, capsys):
    db = str(tmp_path / ("%s.db" % profile))
    rc, _, err = _tally(["simulate", "--days", DAYS[profile], "--devices", "1", "--profile", profile, "--db", db, "-q"],
                        capsys)
    assert rc == 0, err
    rc, out, err = _tally(["life", "--db", db, "--json", "--no-store"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    outcome, unit, wear = EXPECT[profile]
    asset = r["assets"]["sim-001"]
    comps = r["components"]
    # the board file's tags were read without any config: one part per tag slot
    slots = {c["history"][-1]["slot"]: cid for cid, c in comps.items() if c["asset"] == "sim-001"}
    assert sorted(s for s, _, _ in board_tags.TAGS[profile]) == sorted(wear)
    assert set(wear) <= set(slots)
    for cid in asset["parts"]:
        c = comps[cid]
        life = c["life"]
        assert c["card"] is not None, (cid, life["uncertain"])
        assert life["D_P90"] is not None and life["days_P50"] is not None, (cid, life["uncertain"])
        assert c["health"] == "Good", (cid, c["reasons"])
        # remaining life in the asset's own outcome unit, found from its schema
        assert (life["outcome_unit"], life["outcome_si"]) == (outcome, unit), cid
        assert life["outcome_per_day"] > 0
        assert life["outcome_P50"] == pytest.approx(life["days_P50"] * life["outcome_per_day"])
        assert not any("no life card" in u or "odometer moved" in u for u in life["uncertain"]), life["uncertain"]
    for slot, card in wear.items():
        cid = slots[slot]
        c = comps[cid]
        # rated by the card its passport's part number names, not by the tag chip's id
        assert cid.startswith(("at24cs02-", "24aa02e48-"))
        assert c["card"] == card + "@1"
        assert c["life"]["D_P50"] > 0, (slot, c["life"])          # a day of duty wore it
    assert asset["health"] == "Good"
    assert asset["decision"].startswith("continue"), asset["trace"]
    assert not asset["decision"].startswith(("withdraw", "recycle"))
    # every part's passport part number reached the ledger with its install
    pns = {h["slot"]: cid for cid, c in comps.items() for h in c["history"]}
    assert set(PROFILE_CLASS[profile].PARTS) == set(wear) and all(s in pns for s in wear)


def test_each_emulated_device_has_its_own_tags_and_passports():
    from agent import passport
    from agent.clock import VirtualClock
    from boards.emulated import Emulation
    seen = {}
    # two pumps, and a compressor and a luminaire with the first pump's seed (a mixed fleet in one ledger)
    for profile, seed in (("pump", 1), ("pump", 2), ("compressor", 1), ("luminaire", 1)):
        w = Emulation(VirtualClock(), seed=seed, profile=profile, tags=True)
        got = {slot: (drv.ident(), passport.read(drv, 1)[0]) for slot, drv in w.tags()}
        assert sorted(got) == sorted(PROFILE_CLASS[profile].PARTS)
        for slot, (cid, p) in got.items():
            part, rated_h, rated_cycles = PROFILE_CLASS[profile].PARTS[slot]
            assert (p.part, p.rated_h, p.rated_cycles, p.year) == (part, rated_h, rated_cycles, 2025)
            assert 1 <= p.month <= 12 and 1 <= p.day <= 28
            assert cid not in seen, "two devices share %s" % cid
            seen[cid] = seed
    assert len(seen) == 11
    # without tags=True (parts off) the world fits none: nothing answers there
    assert Emulation(VirtualClock(), seed=1, profile="pump").tag_models == {}


def test_config_part_tags_replace_or_add_to_the_board_tags():
    import boards
    from agent.parttags import tag_specs
    b = boards.board("rpi4", "pump")
    assert tag_specs(b) == ["pump-bearing=at24cs02@0x50", "pump-motor=at24cs02@0x51",
                            "pump-seal=24aa02e48@0x52"]
    assert tag_specs(b, ["pump-seal=at24cs02@0x54", "fan=24aa02e48@0x55"]) == [
        "pump-bearing=at24cs02@0x50", "pump-motor=at24cs02@0x51", "pump-seal=at24cs02@0x54",
        "fan=24aa02e48@0x55"]


@pytest.mark.parametrize("tag, says", [
    # the ADXL345 holds 0x53 on the pump's bus
    ({"slot": "x", "chip": "24aa02e48", "bus": "i2c1", "addr": 0x53}, "0x53 on bus i2c1 is already the adxl345"),
    # an AT24CS02 at 0x52 answers at 0x5a too; the pump seal's tag is at 0x52
    ({"slot": "x", "chip": "at24cs02", "bus": "i2c1", "addr": 0x52}, "0x52 on bus i2c1 is already tag pump-seal"),
    ({"slot": "pump-seal", "chip": "at24cs02", "bus": "i2c1", "addr": 0x56}, "once on the board"),
    ({"slot": "x", "chip": "24c02", "bus": "i2c1", "addr": 0x56}, "chip '24c02' is not one of"),
    ({"slot": "x", "chip": "at24cs02", "bus": "rs485", "addr": 0x56}, "not an I2C bus"),
    ({"slot": "x", "chip": "at24cs02", "bus": "i2c1", "addr": 0x58}, "not an ID EEPROM array address"),
])
def test_a_board_tag_that_clashes_is_refused(tag, says):
    import boards
    b = boards.board("rpi4", "pump")
    bad = dict(b, tags=list(b["tags"]) + [tag])
    with pytest.raises(boards.BoardError) as e:
        boards.validate(bad)
    assert says in str(e.value)


def test_the_at24cs02_serial_block_is_checked_against_sensors():
    import boards
    b = boards.board("rpi4", "luminaire")
    # a BH1750 strapped high sits at 0x5c, where an AT24CS02 at 0x54 has its serial
    bad = dict(b, sensors=[dict(s, addr=0x5C) if s["type"] == "bh1750" else s for s in b["sensors"]],
               tags=list(b["tags"]) + [{"slot": "x", "chip": "at24cs02", "bus": "i2c1", "addr": 0x54}])
    with pytest.raises(boards.BoardError) as e:
        boards.validate(bad)
    assert "0x5c on bus i2c1 is already the bh1750" in str(e.value)
