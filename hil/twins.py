# Twins for a board's sensors: the chip models of hil/ behind steady,
# plausible sources (a lab bench: constant values plus seeded jitter), so any
# board description can be emulated bus by bus: i2c_buses(board) gives one
# EmulatedI2C per I2C bus of the board, a twin at every sensor address whose
# driver has one in TWINS. Portable: the MicroPython helper of the test plugin
# (hil/i2c_serve.py) builds the same buses on the other interpreter.
#
# TWINS: driver name -> make(sensor entry, rng) -> model. A new I2C driver
# with a twin in hil/ is one entry here.

from hil.i2c import EmulatedI2C
from hil.rng import Rng


def steady(rng, *spec):
    """source() -> one int per (value, jitter) pair: value +- jitter."""
    def source():
        return tuple(v + rng.below(2 * j + 1) - j for v, j in spec)
    return source


def _ina219(s, rng):
    from hil.ina219 import INA219Model
    # a 24 V supply drawing 1.5 A
    return INA219Model(steady(rng, (24000, 20), (1500, 30)), s.get("shunt_milliohm", 100))


def _sht3x(s, rng):
    from hil.sht3x import SHT3xModel
    # a room at 22.5 C and 45 %RH
    return SHT3xModel(steady(rng, (2250, 3), (4500, 20)))


TWINS = {
    "ina219": _ina219,
    "sht3x": _sht3x,
}


def i2c_buses(board, seed=1):
    """{bus name: EmulatedI2C} for every I2C bus of the board."""
    out = {}
    for name, bus in board["buses"].items():
        if bus["kind"] == "i2c":
            out[name] = EmulatedI2C()
    for i, s in enumerate(board["sensors"]):
        make = TWINS.get(s["type"])
        if make is not None and s.get("bus") in out:
            out[s["bus"]].attach(s["addr"], make(s, Rng(seed + i)))
    return out
