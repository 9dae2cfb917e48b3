# Raspberry Pi Zero 2 W (RP3A0): wired as the Raspberry Pi 4 (boards/rpi4.py),
# the same header pins, I2C bus 1 and RS-485 USB adapter, so the same board
# with its own name and MCU. Copies, not shared dicts: a change to one board
# at run time leaves the other alone.
from boards.rpi4 import BOARD as _PI4

BOARD = {
    "name": "rpi-zero2w",
    "mcu": "bcm2710a1",
    "i2c_bus": _PI4["i2c_bus"],
    "buses": {k: dict(v) for k, v in _PI4["buses"].items()},
    "sensors": [dict(s) for s in _PI4["sensors"]],
}
