"""Passports (agent/collector/life/passport.py, tally passport): AAS JSON built and
read back with the Eclipse BaSyx Python SDK, and the DPP JSON, over the
recorded history of tests/test_life_ledger.py."""
import io
import json

import pytest

from agent.collector.life import cards as cardmod
from agent.collector.life import passport, rules

from test_life_ledger import History, _tally, moved  # noqa: F401  (moved: the fixture)


def _report(h, **kw):
    return rules.assess(h.ledger(), cardmod.load(), rules.load_config(), store=False, **kw)


def test_asset_passport_reads_back_with_basyx(moved):  # noqa: F811
    from basyx.aas import model
    from basyx.aas.adapter import json as aasjson
    r = _report(moved, asset="pump-b")
    text = passport.to_json(passport.build(r, cardmod.load(), "tally:ledger:test", asset="pump-b"))
    back = aasjson.read_aas_json_file(io.StringIO(text), failsafe=False)
    shells = {o.id for o in back if isinstance(o, model.AssetAdministrationShell)}
    assert shells == {"urn:tally:aas:asset:pump-b", "urn:tally:aas:component:ecap-0001",
                      "urn:tally:aas:component:ecap-0002"}
    life = back.get_item("urn:tally:aas:component:ecap-0001:life")
    mech = life.get_referable("electrolyte_dry_out")
    d50 = r["components"]["ecap-0001"]["life"]["mechanisms"][0]["D_P50"]
    assert mech.get_referable("Value").value == pytest.approx(1 - d50)
    assert mech.get_referable("StartValue").value == 1.0 and mech.get_referable("LimitValue").value == 0.0
    bom = back.get_item("urn:tally:aas:component:ecap-0001:bom")
    hist = bom.get_referable("InstallHistory")
    assert [s.get_referable("Asset").value for s in hist.value] == ["pump-a", "pump-b"]   # the part's own past
    entry = bom.get_referable("ecap_0001")
    rel = entry.get_referable("IsPartOf_pump_b")
    assert rel.first.key[-1].value == "ecap_0001" and rel.second.key[-1].value == "pump_b"   # part, whole
    rel_sm = back.get_item("urn:tally:aas:component:ecap-0001:reliability")
    conds = rel_sm.get_referable("OperatingConditionsOfReliabilityCharacteristics")
    assert conds.get_referable("UsefulLifeInTimeInterval").value == 2000.0
    asset_bom = back.get_item("urn:tally:aas:asset:pump-b:bom")
    assert asset_bom.get_referable("ArcheType").value == "OneDown"
    ts = back.get_item("urn:tally:aas:asset:pump-b:timeseries")
    assert ts.get_referable("Segments").get_referable("LinkedSegment").get_referable("Endpoint").value \
        == "tally:ledger:test"


def test_dpp_json_is_strict_and_carries_the_decision(tmp_path):
    h = History(tmp_path / "p.db")
    h.days("pump-u", 0, 5, 10.0)
    # undated snapshots: no rate, so no days (inf internally) -> null, never Infinity
    h.db.execute("DELETE FROM records")
    h.event("pump-u", 0, 0, "installed", "psu", "ecap-0500")
    r = _report(h, asset="pump-u")
    text = passport.dumps(passport.dpp(r, asset="pump-u"))
    d = json.loads(text)
    assert "Infinity" not in text and "NaN" not in text
    assert d["nextUse"]["decision"] == r["assets"]["pump-u"]["decision"]
    c = d["components"][0]
    assert c["identifier"] == "urn:tally:comp:ecap:0500" and c["durability"]["remainingLifeDays"]["P50"] is None
    assert any("no dated snapshots" in u for u in c["durability"]["uncertain"])
    h.col.close()


def test_tally_life_json_is_strict(tmp_path, capsys):
    h = History(tmp_path / "s.db")
    h.days("pump-s", 0, 5, 10.0)
    h.db.execute("UPDATE records SET vals = '[0, 0]'")          # nothing delivered: no outcome rate
    h.event("pump-s", 0, 0, "installed", "psu", "ecap-0501")
    h.event("pump-s", 0, 1, "installed", "aux", "nocard-1")
    h.col.close()
    rc, out, _ = _tally(["life", "--db", str(tmp_path / "s.db"), "--json", "--no-store"], capsys)
    assert rc == 0 and "Infinity" not in out and "NaN" not in out
    d = json.loads(out)
    assert d["components"]["nocard-1"]["health"] == "Unknown"
    assert d["assets"]["pump-s"]["health"] == "Unknown"            # never hidden behind a Good


def test_tally_passport(moved, capsys, tmp_path):  # noqa: F811
    db = moved.col.db_path
    out = tmp_path / "pp.json"
    rc, _, e = _tally(["passport", "--db", db, "--component", "ecap-0001", "--out", str(out)], capsys)
    assert rc == 0 and "aas passport written" in e
    d = json.loads(out.read_text())
    assert [s["id"] for s in d["assetAdministrationShells"]] == ["urn:tally:aas:component:ecap-0001"]
    rc, _, e = _tally(["passport", "--db", db, "--asset", "nowhere"], capsys)
    assert rc == 2 and e == "tally: passport: no asset nowhere in the ledger (no part was ever installed in it)\n"
