"""Passports that travel with the part (CIRCULAR.md §4 export, issue 16
item 6): one Asset Administration Shell per asset and per component, built
and checked with the Eclipse BaSyx Python SDK (basyx-python-sdk, the
'passport' extra), and a plain JSON for a Digital Product Passport.

Submodels (semantic ids of the IDTA templates as found in published
template files; [mem] where noted, check against the templates):
- Nameplate (IDTA 02006-3, https://admin-shell.io/idta/nameplate/3/0/Nameplate):
  URIOfTheProduct, ManufacturerName, ManufacturerProductType, SerialNumber;
- HierarchicalStructures (IDTA 02011-1-1, .../HierarchicalStructures/1/1/Submodel):
  ArcheType OneDown (asset) or OneUp (component), EntryNode, Node entities
  with IsPartOf, and, because the template's topology is static, an
  InstallHistory collection with every segment (asset, slot, in, out);
- TimeSeries (IDTA 02008-1-1, https://admin-shell.io/idta/TimeSeries/1/1):
  Metadata and one LinkedSegment pointing at the ledger (the record stays
  in the ledger, MeasurementModelQualifier absolute: cumulative counts);
- Reliability (IDTA 02013, https://admin-shell.io/idta/iec62683/1/0/Reliability),
  components only: the card's rated inputs (UsefulLifeInTimeInterval or
  UsefulLifeInNumberOfOperations, B10 where the rating is B10);
- LifeConsumed (Tally's own, urn:tally:submodel:LifeConsumed:1): per
  mechanism a lifetime variable in OPC UA's LifetimeVariableType sense
  (StartValue 1 = all rated life left, LimitValue 0, Value = 1 - D_P50,
  WarningValues 0.2 and 0.05, i.e. D_P90 >= 0.8 and 0.95 per CIRCULAR.md),
  with D_P50, D_P90, the remaining days P10/P50/P90 and the card version.

build() returns the object store; to_json() writes it with the SDK's
encoder and reads it back with its strict decoder, so a passport that the
SDK would not read again is an error, never a file."""
import io
import json
import re

from basyx.aas import model
from basyx.aas.adapter import json as aasjson

NAMEPLATE = "https://admin-shell.io/idta/nameplate/3/0/Nameplate"
MANUFACTURER_NAME = "0112/2///61987#ABA565#009"
HSEBOM = "https://admin-shell.io/idta/HierarchicalStructures/1/1/Submodel"
ENTRY_NODE = "https://admin-shell.io/idta/HierarchicalStructures/EntryNode/1/0"
NODE = "https://admin-shell.io/idta/HierarchicalStructures/Node/1/0"
IS_PART_OF = "https://admin-shell.io/idta/HierarchicalStructures/IsPartOf/1/0"          # [mem]
ARCHE_TYPE = "https://admin-shell.io/idta/HierarchicalStructures/ArcheType/1/0"        # [mem]
TIMESERIES = "https://admin-shell.io/idta/TimeSeries/1/1"
TS_METADATA = "https://admin-shell.io/idta/TimeSeries/Metadata/1/1"
TS_LINKED = "https://admin-shell.io/idta/TimeSeries/Segments/LinkedSegment/1/1"        # [mem]
RELIABILITY = "https://admin-shell.io/idta/iec62683/1/0/Reliability"
USEFUL_LIFE_TIME = "0112/2///62683#ACE054#001"
USEFUL_LIFE_OPS = "0112/2///62683#ACE055#001"
B10 = "https://admin-shell.io/idta/Reliability/B10/1/0"
LIFE = "urn:tally:submodel:LifeConsumed:1"
LIFETIME_VARIABLE = "http://opcfoundation.org/UA/DI/LifetimeVariableType"               # [mem]


class PassportError(ValueError):
    pass


def _sid(v):
    return model.ExternalReference((model.Key(model.KeyTypes.GLOBAL_REFERENCE, v),))


def _short(s):
    """An idShort: letters, digits and _, starting with a letter."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", s)
    return s if s[:1].isalpha() else "X" + s


def _prop(name, value, sid=None):
    vt = {bool: bool, int: int, float: float}.get(type(value), str)
    return model.Property(_short(name), vt, value if vt is not str else str(value),
                          semantic_id=_sid(sid) if sid else None)


def component_urn(comp):
    """urn:tally:comp:<kind>:<serial> for a global id <kind>-<serial>."""
    kind, _, serial = comp.partition("-")
    return "urn:tally:comp:%s:%s" % (kind, serial or kind)


def asset_urn(device):
    return "urn:tally:asset:%s" % device


def _nameplate(sm_id, urn, serial, product_type):
    return model.Submodel(sm_id, id_short="Nameplate", semantic_id=_sid(NAMEPLATE), submodel_element=[
        _prop("URIOfTheProduct", urn), _prop("ManufacturerName", "unknown (not in the ledger)", MANUFACTURER_NAME),
        _prop("ManufacturerProductType", product_type), _prop("SerialNumber", serial)])


def _history(history):
    items = []
    for i, s in enumerate(history):
        items.append(model.SubmodelElementCollection("Segment%02d" % (i + 1), [
            _prop("Asset", s["asset"]), _prop("Slot", s["slot"]), _prop("Installed", s["installed"]),
            _prop("Removed", s["removed"] or "still installed")]))
    return model.SubmodelElementCollection("InstallHistory", items)


def _bom(sm_id, arche, entry_id, entry_urn, nodes, history):
    """nodes: [(idShort, global asset id)] that are part of (OneDown) or
    that hold (OneUp) the entry node."""
    node_entities = [model.Entity(_short(n), model.EntityType.SELF_MANAGED_ENTITY, global_asset_id=g,
                                  semantic_id=_sid(NODE)) for n, g in nodes]
    entry = model.Entity(_short(entry_id), model.EntityType.SELF_MANAGED_ENTITY, global_asset_id=entry_urn,
                         statement=node_entities, semantic_id=_sid(ENTRY_NODE))
    sm = model.Submodel(sm_id, id_short="HierarchicalStructures", semantic_id=_sid(HSEBOM), submodel_element=[
        _prop("ArcheType", arche, ARCHE_TYPE), entry, _history(history)])
    for ent in node_entities:
        part, whole = (ent, entry) if arche == "OneDown" else (entry, ent)
        entry.statement.add(model.RelationshipElement(
            "IsPartOf_" + ent.id_short, model.ModelReference.from_referable(part),
            model.ModelReference.from_referable(whole), semantic_id=_sid(IS_PART_OF)))
    return sm


def _timeseries(sm_id, what, endpoint):
    return model.Submodel(sm_id, id_short="TimeSeries", semantic_id=_sid(TIMESERIES), submodel_element=[
        model.SubmodelElementCollection("Metadata", [
            _prop("Name", what), _prop("Description", "cumulative stress histograms and odometers in the "
                                                      "Tally ledger"),
            _prop("MeasurementModelQualifier", "absolute")], semantic_id=_sid(TS_METADATA)),
        model.SubmodelElementCollection("Segments", [
            model.SubmodelElementCollection("LinkedSegment", [
                _prop("Endpoint", endpoint), _prop("Query", what)], semantic_id=_sid(TS_LINKED))])])


def _life(sm_id, fig):
    items = [_prop("Card", fig.get("card") or "none")]
    for m in fig.get("mechanisms", []):
        if "D_P50" not in m:
            items.append(model.SubmodelElementCollection(_short(m["name"]), [
                _prop("Uncertain", m.get("uncertain", "no figure"))]))
            continue
        vals = [_prop("StartValue", 1.0), _prop("LimitValue", 0.0), _prop("Value", 1.0 - m["D_P50"]),
                _prop("WarningValue1", 0.2), _prop("WarningValue2", 0.05), _prop("D_P50", m["D_P50"]),
                _prop("D_P90", m["D_P90"]), _prop("Model", m["model"])]
        for k in ("days_P10", "days_P50", "days_P90"):
            if m.get(k) is not None and m[k] != float("inf"):
                vals.append(_prop("RemainingDays" + k[-3:], float(m[k])))
        items.append(model.SubmodelElementCollection(_short(m["name"]), vals, semantic_id=_sid(LIFETIME_VARIABLE)))
    for i, u in enumerate(fig.get("uncertain", [])):
        items.append(_prop("Uncertain%02d" % (i + 1), u))
    return model.Submodel(sm_id, id_short="LifeConsumed", semantic_id=_sid(LIFE), submodel_element=items)


def _reliability(sm_id, card):
    from agent.collector.life.cards import value
    m = card["mechanisms"][0]
    q = value(card["weibull"]["rated_quantile"])
    items = [_prop("OtherOperatingConditions", "card %s@%d: %s" % (card["type"], card["version"], card["title"]))]
    life_h = {"arrhenius10": "L0", "arrhenius_ea": "L0", "peck": "L0", "runtime": "life_h"}.get(m["model"])
    if life_h and m["params"].get(life_h):
        items.append(_prop("UsefulLifeInTimeInterval", float(m["params"][life_h]["value"]), USEFUL_LIFE_TIME))
    ops = m["params"].get("N") or m["params"].get("cycles")
    if ops:
        v = ops["value"][2] if isinstance(ops["value"], list) else ops["value"]
        items.append(_prop("UsefulLifeInNumberOfOperations", float(v), USEFUL_LIFE_OPS))
        if abs(q - 0.1) < 1e-9:
            items.append(_prop("B10", int(v), B10))
    return model.Submodel(sm_id, id_short="Reliability", semantic_id=_sid(RELIABILITY), submodel_element=[
        model.SubmodelElementCollection("OperatingConditionsOfReliabilityCharacteristics", items)])


def _shell(aas_id, urn, short, submodels):
    return model.AssetAdministrationShell(
        model.AssetInformation(model.AssetKind.INSTANCE, global_asset_id=urn), aas_id, id_short=_short(short),
        submodel={model.ModelReference.from_referable(s) for s in submodels})


def build(report, cards, ledger_url, asset=None, component=None):
    """The object store for one asset (its shell and one per installed
    component) or one component, from an assess() report."""
    store = model.DictIdentifiableStore()
    comps = report["components"]
    if component:
        todo = [component]
    else:
        a = report["assets"].get(asset)
        if a is None:
            raise PassportError("passport: no asset %s in the ledger" % asset)
        todo = a["parts"]
        aid = "urn:tally:aas:asset:%s" % asset
        sms = [_nameplate(aid + ":nameplate", asset_urn(asset), asset, "Tally-metered asset"),
               _bom(aid + ":bom", "OneDown", asset, asset_urn(asset),
                    [(c, component_urn(c)) for c in todo],
                    [s for c in todo for s in comps[c]["history"] if s["asset"] == asset]),
               _timeseries(aid + ":timeseries", "device=%s" % asset, ledger_url),
               _life(aid + ":life", {"card": ", ".join(a["cards"]), "mechanisms": [
                   dict(m, name="%s %s" % (c, m["name"])) for c in todo for m in comps[c]["life"].get(
                       "mechanisms", [])]})]
        for s in sms:
            store.add(s)
        store.add(_shell(aid, asset_urn(asset), asset, sms))
    for c in todo:
        r = comps.get(c)
        if r is None:
            raise PassportError("passport: no component %s in the ledger" % c)
        cid = "urn:tally:aas:component:%s" % c
        card = None
        if r["card"]:
            card = next((k for k in cards.values() if "%s@%d" % (k["type"], k["version"]) == r["card"]), None)
        where = r["asset"]
        sms = [_nameplate(cid + ":nameplate", component_urn(c), c.partition("-")[2] or c,
                          card["title"] if card else "no life card"),
               _bom(cid + ":bom", "OneUp", c, component_urn(c), [(where, asset_urn(where))] if where else [],
                    r["history"]),
               _timeseries(cid + ":timeseries", "component=%s" % c, ledger_url),
               _life(cid + ":life", r["life"])]
        if card:
            sms.append(_reliability(cid + ":reliability", card))
        for s in sms:
            store.add(s)
        store.add(_shell(cid, component_urn(c), c, sms))
    return store


def to_json(store):
    """The AAS JSON (metamodel v3.0) written by the SDK and read back by
    its strict decoder: the text, or PassportError if it does not read back."""
    buf = io.StringIO()
    aasjson.write_aas_json_file(buf, store)
    text = buf.getvalue()
    try:
        back = aasjson.read_aas_json_file(io.StringIO(text), failsafe=False)
    except (KeyError, ValueError, TypeError) as e:
        raise PassportError("passport: the SDK does not read the shell back: %s" % e)
    if {o.id for o in back} != {o.id for o in store}:
        raise PassportError("passport: the SDK read back other identifiables than it wrote")
    return text


def dpp(report, asset=None, component=None):
    """A JSON ready for a Digital Product Passport: identifier, durability
    (life consumed, remaining life), maintenance, history, next use."""
    def one(c):
        r = report["components"][c]
        life = r["life"]
        return {"identifier": component_urn(c), "componentId": c, "lifeCard": r["card"],
                "durability": {"lifeConsumedP50": life.get("D_P50"), "lifeConsumedP90": life.get("D_P90"),
                               "remainingLifeDays": {k: life.get("days_" + k) for k in ("P10", "P50", "P90")},
                               "usageRateAssumption": life.get("rate_assumption"),
                               "uncertain": life.get("uncertain", [])},
                "health": {"band": r["health"], "reasons": r["reasons"]},
                "maintenance": r["records"], "installHistory": r["history"]}
    if component:
        return {"dppVersion": "tally-dpp/1", "component": one(component)}
    a = report["assets"][asset]
    return {"dppVersion": "tally-dpp/1", "identifier": asset_urn(asset), "health": {"band": a["health"],
            "reasons": a["reasons"]}, "nextUse": {"decision": a["decision"], "trace": a["trace"],
                                                   "cards": a["cards"]},
            "components": [one(c) for c in a["parts"]]}


def dumps(obj):
    from agent.collector.life.rules import strict
    return json.dumps(strict(obj), indent=2, sort_keys=True, allow_nan=False)
