# A board as installed (boards.board, which loads this module for the call
# and drops it again): the asset's sensor set from the board file's ASSETS,
# the air source, and the config's [sensor] tables applied, then checked by
# boards/check.py. A table naming a sensor the board does not carry is a
# BoardError naming it and what the board carries. Portable.


def board(name, asset="compressor", overrides=None, air="rated"):
    """The board `name` as installed on `asset`, with the config's sensor
    settings (overrides: {sensor type: {key: value}}) applied and checked.
    air = "measured" bills a compressor's air from the board's pulse flow
    meter (AIR_METER) instead of rated flow x run time. BoardError (one line)
    for an asset the board has no sensor set for, a settings table naming a
    sensor the board does not carry, or what boards/check.py refuses."""
    from boards import BoardError, load, validate
    mod = load(name)
    sets = getattr(mod, "ASSETS", {"compressor": mod.BOARD})
    if asset not in sets:
        raise BoardError("board %s: no sensor set for asset %r (it has: %s)"
                         % (name, asset, ", ".join(sorted(sets))))
    b = sets[asset]
    if not overrides and air == "rated":
        if b is not mod.BOARD:
            validate(b)                       # load() checked BOARD
        return b
    sensors = [dict(s) for s in b["sensors"]]
    if air == "measured":
        meter = getattr(mod, "AIR_METER", None)
        if asset != "compressor" or meter is None:
            raise BoardError("board %s: air = \"measured\" needs a compressor with a pulse flow meter "
                             "(AIR_METER), and %s on %s has none" % (name, asset, name))
        sensors.append(dict(meter))
        for s in sensors:
            if s["type"] in ("ina219", "ina226"):
                s["air"] = "measured"
    elif air != "rated":
        raise BoardError("board %s: air must be rated or measured, got %r" % (name, air))
    have = [s["type"] for s in sensors]
    buses = b["buses"]
    for t in sorted(overrides or {}):
        if t not in have:
            raise BoardError("[%s]: board %s as a %s carries no %s (its sensors: %s)"
                             % (t, name, asset, t, ", ".join(have)))
        for s in sensors:
            if s["type"] == t:
                for k in overrides[t]:
                    if k in ("port", "baud"):
                        # a serial line's settings are its bus's, shared by its sensors
                        if buses is b["buses"]:
                            buses = {n: dict(x) for n, x in buses.items()}
                        buses[s["bus"]][k] = overrides[t][k]
                    else:
                        s[k] = overrides[t][k]
    out = dict(b)
    out["buses"] = buses
    out["sensors"] = sensors
    validate(out)
    return out
