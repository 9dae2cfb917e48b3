"""Component-type life cards: versioned TOML files (cards/ beside this
module ships the defaults; `--cards DIR` adds or replaces by type), one per
component type, with the rated life and the parameters of each failure
mechanism. Every parameter is a table {value, unit, source} with an
optional range = [low, high] that the Monte Carlo samples (uniform) to
propagate the parameter's uncertainty:

    type = "ecap-105c-2000h"
    version = 1
    title = "Aluminium electrolytic capacitor, 2000 h at 105 degC"
    [weibull]
    beta = {value = 2.5, unit = "1", range = [2.0, 3.5], source = "..."}
    rated_quantile = {value = 0.1, unit = "1", source = "..."}
    [[mechanism]]
    name = "electrolyte dry-out"
    model = "arrhenius10"
    L0 = {value = 2000, unit = "h", source = "datasheet"}
    ...

load() refuses a card with one line naming the file, the parameter and
what is wrong with it (missing, no unit, the wrong unit, no source, an
impossible value or range): CardError. Nothing is evaluated with it."""
import os
import tomllib

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cards")


class CardError(ValueError):
    pass


def _pos(v):
    return v > 0


def _nonneg(v):
    return v >= 0


def _frac(v):
    return 0 < v < 1


# model -> (histogram it reads or None for odometers, {param: (unit, check,
# what the check says, required)}, reference parameter or a rule for L_ref)
_P = (_pos, "must be > 0")
MODELS = {
    "runtime": ("odometers", {
        "life_h": ("h", _pos, "must be > 0", False),
        "cycles": ("ops", _pos, "must be > 0", False)}),
    # powered hours at any temperature (the thermal histogram's seconds
    # counted, whatever the bin): a rated life in time, IDTA Reliability's
    # UsefulLifeInTimeInterval, for parts that age while switched on
    "powered": ("t_s", {
        "life_h": ("h", _pos, "must be > 0", True)}),
    "arrhenius10": ("t_s", {
        "L0": ("h", _pos, "must be > 0", True),
        "T0": ("degC", lambda v: -55 <= v <= 200, "must be within -55..200 degC", True),
        "halving_K": ("K", _pos, "must be > 0", True)}),
    "arrhenius_ea": ("t_s", {
        "L0": ("h", _pos, "must be > 0", True),
        "T0": ("degC", lambda v: -55 <= v <= 200, "must be within -55..200 degC", True),
        "Ea": ("eV", lambda v: 0 < v < 3, "must be within 0..3 eV", True)}),
    "peck": ("rh_s", {
        "L0": ("h", _pos, "must be > 0", True),
        "RH0": ("%", lambda v: 0 < v <= 100, "must be within 0..100 %", True),
        "T0": ("degC", lambda v: -55 <= v <= 200, "must be within -55..200 degC", True),
        "n": ("1", _pos, "must be > 0", True),
        "Ea": ("eV", lambda v: 0 < v < 3, "must be within 0..3 eV", True)}),
    "iso281": ("load_s", {
        "C": ("kN", _pos, "must be > 0", True),
        "P_static": ("kN", _nonneg, "must be >= 0", True),
        "k_load": ("kN", _nonneg, "must be >= 0", True),
        "rpm": ("1/min", _pos, "must be > 0", True),
        "p": ("1", lambda v: 2.5 <= v <= 4, "must be 3 (ball) or 10/3 (roller)", True)}),
    "tm21": ("odometers", {
        "alpha": ("1/h", _pos, "must be > 0", True),
        "B": ("1", lambda v: 0.5 < v < 1.5, "must be within 0.5..1.5", True),
        "test_h": ("h", lambda v: v >= 6000, "must be >= 6000 h (TM-21 projects no shorter test)", True),
        "samples": ("1", lambda v: v >= 10, "must be >= 10 (TM-21 projects no smaller sample)", True),
        "p": ("%", lambda v: 0 < v < 100, "must be within 0..100 %", True)}),
    "contactor": ("sw_ops", {
        "N": ("ops", _pos, "must be > 0 in every class", True)}),
}
WEIBULL = {"beta": ("1", lambda v: 0.3 <= v <= 10, "must be within 0.3..10", True),
           "rated_quantile": ("1", _frac, "must be within 0..1 (0.1 for a B10 rating)", True)}
CONDITION = {
    "vib_c_h": ("h", _nonneg, "must be >= 0", False),
    "vib_d_h": ("h", _nonneg, "must be >= 0", False),
    "collar_c": ("1", lambda v: 0 <= v <= 1, "must be within 0..1", False),
    "collar_d": ("1", lambda v: 0 <= v <= 1, "must be within 0..1", False),
    "error_rise": ("1", _pos, "must be > 0", False),
    "collar_errors": ("1", lambda v: 0 <= v <= 1, "must be within 0..1", False),
    "lumen_ratio": ("1", _frac, "must be within 0..1", False),
    "collar_lumen": ("1", lambda v: 0 <= v <= 1, "must be within 0..1", False),
}


def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _param(where, name, raw, spec):
    unit, check, says, required = spec
    if raw is None:
        if required:
            raise CardError("%s: parameter %s is missing (a table {value, unit = \"%s\", source})"
                            % (where, name, unit))
        return None
    if not isinstance(raw, dict) or "value" not in raw:
        raise CardError("%s: parameter %s must be a table {value, unit = \"%s\", source}" % (where, name, unit))
    if "unit" not in raw or not str(raw["unit"]).strip():
        raise CardError("%s: parameter %s has no unit (it is in %s)" % (where, name, unit))
    if raw["unit"] != unit:
        raise CardError("%s: parameter %s is in %r; this model takes %s" % (where, name, raw["unit"], unit))
    if not isinstance(raw.get("source"), str) or not raw["source"].strip():
        raise CardError("%s: parameter %s has no source (the datasheet, standard or fit it comes from)"
                        % (where, name))
    v = raw["value"]
    vals = v if isinstance(v, list) else [v]
    if not vals or not all(_num(x) for x in vals):
        raise CardError("%s: parameter %s = %r is not a number" % (where, name, v))
    for x in vals:
        if not check(x):
            raise CardError("%s: parameter %s = %s %s is impossible: it %s" % (where, name, x, unit, says))
    rng = raw.get("range")
    if rng is not None:
        if isinstance(v, list) or not (isinstance(rng, list) and len(rng) == 2 and all(_num(x) for x in rng)):
            raise CardError("%s: parameter %s: range must be [low, high] around one value" % (where, name))
        lo, hi = rng
        if not (lo <= v <= hi) or not check(lo) or not check(hi):
            raise CardError("%s: parameter %s: range [%s, %s] is impossible for value %s (it %s and must "
                            "hold the value)" % (where, name, lo, hi, v, says))
    return {"value": v, "unit": unit, "source": raw["source"], "range": rng}


def validate(doc, path="<card>"):
    """The card as a checked dict, or CardError naming what is wrong."""
    where = os.path.basename(path)
    ctype = doc.get("type")
    if not isinstance(ctype, str) or not ctype.strip():
        raise CardError("%s: type is missing (the component type this card rates)" % where)
    ver = doc.get("version")
    if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
        raise CardError("%s: version must be a whole number >= 1 (got %r)" % (where, ver))
    where = "card %s v%d (%s)" % (ctype, ver, os.path.basename(path))
    match = doc.get("match")
    if not (isinstance(match, list) and match and all(isinstance(x, str) and x for x in match)):
        raise CardError("%s: match is missing: the component-id prefixes this card rates, e.g. [\"sht4x-\"]"
                        % where)
    wb = doc.get("weibull")
    if not isinstance(wb, dict):
        raise CardError("%s: [weibull] is missing (beta and rated_quantile)" % where)
    weibull = {k: _param(where + ": [weibull]", k, wb.get(k), s) for k, s in WEIBULL.items()}
    mechs = doc.get("mechanism")
    if not isinstance(mechs, list) or not mechs:
        raise CardError("%s: no [[mechanism]]: a card rates at least one failure mechanism" % where)
    out = []
    for i, m in enumerate(mechs):
        name = m.get("name") or "#%d" % (i + 1)
        mw = "%s: mechanism %s" % (where, name)
        model = m.get("model")
        if model not in MODELS:
            raise CardError("%s: model %r is not one of %s" % (mw, model, ", ".join(sorted(MODELS))))
        hist, spec = MODELS[model]
        params = {k: _param(mw, k, m.get(k), s) for k, s in spec.items()}
        extra = sorted(k for k in m if k not in spec and k not in ("name", "model", "beta"))
        if extra:
            raise CardError("%s: unknown parameter %s for model %s" % (mw, extra[0], model))
        if model == "runtime" and params["life_h"] is None and params["cycles"] is None:
            raise CardError("%s: a runtime mechanism needs life_h, cycles or both" % mw)
        if model == "contactor" and not (isinstance(params["N"]["value"], list) and len(params["N"]["value"]) == 4):
            raise CardError("%s: parameter N must list the endurance of the 4 breaking-current classes" % mw)
        beta = _param(mw, "beta", m.get("beta"), dict(WEIBULL)["beta"][:3] + (False,))
        out.append({"name": name, "model": model, "hist": hist, "params": params, "beta": beta})
    cond = doc.get("condition", {})
    condition = {k: _param(where + ": [condition]", k, cond.get(k), s) for k, s in CONDITION.items()}
    unknown = sorted(set(cond) - set(CONDITION))
    if unknown:
        raise CardError("%s: [condition] has unknown key %s" % (where, unknown[0]))
    pns = doc.get("part_numbers", [])
    if not (isinstance(pns, list) and all(isinstance(x, str) and x for x in pns)):
        raise CardError("%s: part_numbers must be a list of part numbers (as the part's passport names them)" % where)
    return {"type": ctype, "version": ver, "match": match, "part_numbers": pns, "title": doc.get("title", ""), "path": path,
            "weibull": weibull, "mechanisms": out, "condition": condition,
            "cost": doc.get("cost", {}), "replaceable": bool(doc.get("replaceable", True)),
            "core": bool(doc.get("core", False))}


def load_file(path):
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise CardError("%s: not TOML: %s" % (os.path.basename(path), e))
    return validate(doc, path)


def load(extra_dir=None):
    """{type: card}: the shipped cards, then extra_dir's (which replace a
    shipped card of the same type). A bad card stops the load: CardError."""
    cards = {}
    for d in (HERE, extra_dir):
        if not d:
            continue
        if not os.path.isdir(d):
            raise CardError("cards: %s is not a folder" % d)
        for name in sorted(os.listdir(d)):
            if name.endswith(".toml"):
                c = load_file(os.path.join(d, name))
                cards[c["type"]] = c
    return cards


def for_component(cards, component, part_number=None):
    """The card that lists the part number its passport gave (or whose type
    the passport names as its part number), else the card whose longest
    match prefix starts the component id, or None."""
    if part_number:
        for c in cards.values():
            if part_number in c["part_numbers"]:
                return c
        if part_number in cards and isinstance(cards[part_number], dict):
            return cards[part_number]
    best = None
    for c in cards.values():
        for m in c["match"]:
            if component.startswith(m) and (best is None or len(m) > best[0]):
                best = (len(m), c)
    return best[1] if best else None


def ref(card):
    """card type@version, the name every figure carries."""
    return "%s@%d" % (card["type"], card["version"])


def value(p, default=None):
    return default if p is None else p["value"]
