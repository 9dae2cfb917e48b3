# Twins for a board's sensors: the chip models of hil/ behind steady,
# plausible sources (a lab bench: constant values plus seeded jitter), so any
# board description can be emulated bus by bus: i2c_buses(board) gives one
# EmulatedI2C per I2C bus of the board, a twin at every sensor address whose
# driver has one in TWINS. Portable: the MicroPython helper of the test plugin
# (hil/buses/i2c_serve.py) builds the same buses on the other interpreter.
#
# TWINS: driver name -> make(sensor entry, rng) -> model. A new I2C driver
# with a twin in hil/ is one entry here.

from hil.buses.i2c import EmulatedI2C
from hil.rng import Rng


def steady(rng, *spec):
    """source() -> one int per (value, jitter) pair: value +- jitter."""
    def source():
        return tuple(v + rng.below(2 * j + 1) - j for v, j in spec)
    return source


def _ina219(s, rng):
    from hil.twins.ina219 import INA219Model
    # a 24 V supply drawing 1.5 A
    return INA219Model(steady(rng, (24000, 20), (1500, 30)), s.get("shunt_milliohm", 100))


def _sht3x(s, rng):
    from hil.twins.sht3x import SHT3xModel
    # a room at 22.5 C and 45 %RH
    return SHT3xModel(steady(rng, (2250, 3), (4500, 20)))


def _ina226(s, rng):
    from hil.twins.ina226 import INA226Model
    # a 12 V supply drawing 0.8 A
    return INA226Model(steady(rng, (12000, 20), (800, 10)), s.get("shunt_milliohm", 100))


def _sht4x(s, rng):
    from hil.twins.sht4x import SHT4xModel
    return SHT4xModel(steady(rng, (2250, 3), (4500, 20)))


def _bme280(s, rng):
    from hil.twins.bme280 import BME280Model
    # 22.5 C, 1013.25 hPa, 45 %RH
    return BME280Model(steady(rng, (2250, 3), (101325, 10), (4500, 20)))


def _adxl345(s, rng):
    from hil.twins.adxl345 import ADXL345Model
    # at rest, flat: 1 g on z
    return ADXL345Model(steady(rng, (0, 4), (0, 4), (1000, 4)))


def _bh1750(s, rng):
    from hil.twins.bh1750 import BH1750Model
    src = steady(rng, (350000, 500))              # an office desk, 350 lux
    return BH1750Model(lambda: src()[0])


TWINS = {
    "ina219": _ina219,
    "ina226": _ina226,
    "sht3x": _sht3x,
    "sht4x": _sht4x,
    "bme280": _bme280,
    "adxl345": _adxl345,
    "bh1750": _bh1750,
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
