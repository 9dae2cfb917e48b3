# ID EEPROM tags (issue 15, CIRCULAR.md section 4): an AT24CS02 or a
# 24AA02E48 on a part with no identity of its own, its serial the part's id,
# its user area the component passport (agent/passport.py, docs/passport.md).
# Their config ("slot=chip@0xNN"), their drivers, and the passport work of a
# tag's slot for agent/parts.py: the passport read when the part is found,
# its checkpoint odometers written every checkpoint_ms. Only an installation
# with tags loads this module (and the passport and the EEPROM driver).
# Portable.
#
# The passport is not kept in RAM: it is read from the EEPROM when it is
# needed (an install, a checkpoint); a slot keeps only the sources of its
# counters at the last checkpoint and when that was (S_REF).

from agent import passport
from agent.parts import S_REF, eeprom

TAG_CHIPS = ("at24cs02", "24aa02e48")

# passport counter -> the schema metrics that can feed it (the first present)
PASSPORT_ODO = (("run_s", ("run_time", "lit_time")), ("cycles", ("cycles",)),
                ("energy_Wh", ("energy", "mains_energy")))


def parse_tag(spec):
    """An ID EEPROM tag from config: "slot=chip@0xNN" (chip at24cs02 or
    24aa02e48, its array address 0x50-0x57) -> (slot, chip, addr);
    ValueError naming what is wrong."""
    slot, _, rest = spec.partition("=")
    chip, _, a = rest.partition("@")
    try:
        addr = int(a, 16) if a.lower().startswith("0x") else int(a)
    except ValueError:
        addr = -1
    if not slot or chip not in TAG_CHIPS or not 0x50 <= addr <= 0x57:
        raise ValueError("part tag %r: want slot=at24cs02@0x50 or slot=24aa02e48@0x50 (0x50-0x57)"
                         % (spec,))
    return slot, chip, addr


def tags(specs, i2c):
    """(slot, EEPROM driver) for each tag spec (parse_tag), on bus i2c."""
    from drivers.eeprom24 import AT24CS02, M24AA02E48
    out = []
    for spec in specs:
        slot, chip, addr = parse_tag(spec)
        out.append((slot, (AT24CS02 if chip == "at24cs02" else M24AA02E48)(i2c, addr)))
    return out


def tag_specs(board, extra=()):
    """The board's ID EEPROM tags (its "tags" list: boards/tags.py) as specs
    "slot=chip@0xNN", then the config's part_tags: a spec naming one of the
    board's slots replaces it, any other is added. All on the board's I2C bus."""
    out = []
    for t in (board or {}).get("tags", ()):
        out.append("%s=%s@0x%02x" % (t["slot"], t["chip"], t["addr"]))
    for spec in extra:
        slot = spec.partition("=")[0]
        out = [x for x in out if x.partition("=")[0] != slot]
        out.append(spec)
    return out


def board_tags(board, extra, opened, open_bus=None):
    """(slot, EEPROM driver) for the board's tags and the config's part_tags
    (tag_specs), on the board's I2C bus: opened {bus name: open bus, or None
    if it would not open}; open_bus(name) opens one not opened yet. A spec
    that does not parse is said in one line and no tag is read."""
    for b, x in board["buses"].items():
        if x["kind"] == "i2c":
            if b not in opened and open_bus is not None:
                opened[b] = open_bus(b)
            if opened.get(b) is None:
                return []
            try:
                return tags(tag_specs(board, extra), opened[b])
            except ValueError as e:
                print("tally: part tags: %s" % e)
                return []
    return []


def sources(meter):
    """The asset's counters that feed the passport's, in PASSPORT_ODO order,
    in the passport's units (whole seconds, cycles, Wh)."""
    v = meter.values
    names = meter.names
    out = []
    for _, cands in PASSPORT_ODO:
        x = 0
        for n in cands:
            if n in names:
                i = names.index(n)
                sc = meter.schema[i][2]
                x = v[i]
                while sc < 0:
                    x //= 10
                    sc += 1
                break
        out.append(x)
    return out


def _read(parts, b):
    """The passport in the slot's EEPROM, or None (a fault counted by parts)."""
    try:
        p, why = passport.read(eeprom(parts.slots, b), parts.family)
    except OSError:
        parts.fault("eeprom")
        return None
    if p is None:
        parts.fault(why)
    return p


def found(parts, b, now):
    """Read the passport of a part found in the slot at parts.slots[b:]: the
    checkpoints count from now. Returns it (not kept), or None."""
    p = _read(parts, b)
    if p is None:
        parts.slots[b + S_REF] = now                          # read at boot or install, not valid
    else:
        parts.slots[b + S_REF] = sources(parts.meter) + [now]
    return p


def checkpoint(parts, b, now, p=None):
    """Add the usage since the last checkpoint to the passport's odometers
    (p, or read again from the EEPROM) and write it (the other copy). A
    passport that no longer reads valid ends the checkpoints until the part
    is found again (a counted fault)."""
    if p is None:
        p = _read(parts, b)
        if p is None:
            parts.slots[b + S_REF] = None
            return
    cur = sources(parts.meter)
    ref = parts.slots[b + S_REF]
    k = 0
    for name, _ in PASSPORT_ODO:
        d = cur[k] - ref[k]
        if d > 0:
            setattr(p, name, getattr(p, name) + d)
        k += 1
    p.installed_s += (now - ref[3]) // 1000
    try:
        passport.write(eeprom(parts.slots, b), p)
    except OSError:
        parts.fault("eeprom")                   # not advanced: added again at the next try
        return
    cur.append(now)
    parts.slots[b + S_REF] = cur
