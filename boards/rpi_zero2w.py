# Raspberry Pi Zero 2 W (RP3A0): wired as the Raspberry Pi 4 (boards/rpi4.py),
# the same header pins, I2C bus 1, RS-485 USB adapter and pulse input, so the
# same sensor sets with its own name and MCU. Copies, not shared dicts: a
# change to one board at run time leaves the other alone.
from boards import rpi4 as _pi4


def _copy(b):
    return {"name": "rpi-zero2w", "mcu": "bcm2710a1", "i2c_bus": b["i2c_bus"],
            "buses": {k: dict(v) for k, v in b["buses"].items()},
            "sensors": [dict(s) for s in b["sensors"]], "tags": [dict(t) for t in b.get("tags", ())]}


BOARD = _copy(_pi4.BOARD)
ASSETS = {k: _copy(v) for k, v in _pi4.ASSETS.items()}
AIR_METER = dict(_pi4.AIR_METER)
