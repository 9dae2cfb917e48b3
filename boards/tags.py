# ID EEPROM tags per asset: the wear parts with no identity of their own
# (a bearing, a winding, a contactor, an LED engine, a driver, a seal) carry
# an AT24CS02 or a 24AA02E48 (drivers/eeprom24.py) with their passport in the
# user area (docs/passport.md). One table for every board: a board file
# takes its asset's slots on its I2C bus with on(bus, asset), so a flashed or
# run board reads them without config (part_tags in a config replaces a slot
# of the same name or adds one: agent/parttags.py tag_specs).
#
# Addresses are strapped on the tag (A2 A1 A0): the array at 0x50-0x57, and
# for an AT24CS02 its serial block at the array address | 0x08 (0x58-0x5F).
# None of them is an address a sensor of that asset sits at on any board
# (0x23 BH1750, 0x40 INA2xx, 0x44 SHT, 0x53 ADXL345, 0x76 BME280); 0x53 is
# left free on purpose (the ADXL345's alternate address is its default here).
# boards/check.py refuses a tag that clashes with a sensor or another tag.
# Portable: plain data.
#
# asset -> ((slot, chip, address), ...)
TAGS = {
    "compressor": (
        ("motor-bearing", "at24cs02", 0x50),
        ("motor-winding", "at24cs02", 0x51),
        ("contactor", "24aa02e48", 0x52),
    ),
    "luminaire": (
        ("led-engine", "at24cs02", 0x50),
        ("led-driver", "24aa02e48", 0x51),
    ),
    "pump": (
        ("pump-bearing", "at24cs02", 0x50),
        ("pump-motor", "at24cs02", 0x51),
        ("pump-seal", "24aa02e48", 0x52),
    ),
}


def on(bus, asset):
    """The asset's tag slots on the board's I2C bus `bus`, as a board's
    "tags" list: [{"slot", "chip", "bus", "addr"}]."""
    return [{"slot": s, "chip": c, "bus": bus, "addr": a} for s, c, a in TAGS.get(asset, ())]
