# Boards are data: which buses, which sensors at which addresses. One builder
# turns a board plus a bus and a serial opener into agent channels, so the
# emulated board and a real Pi run the same code from the driver up.

BOARDS = ("emulated", "rpi4", "rpi-zero2w", "esp32-devkitc", "esp32-s3-devkitc")
# the boards `tally run` drives (CPython); the ESP32 boards run MicroPython
HOST_BOARDS = ("emulated", "rpi4", "rpi-zero2w")

# What each sensor type needs (bus, addresses, settings, channel factory):
# one row per sensor in boards/sensors.py.


class BoardError(ValueError):
    pass


def load(name):
    if name == "emulated":
        from boards import emulated as mod
    elif name == "rpi4":
        from boards import rpi4 as mod
    elif name == "rpi-zero2w":
        from boards import rpi_zero2w as mod
    elif name == "esp32-devkitc":
        from boards import esp32_devkitc as mod
    elif name == "esp32-s3-devkitc":
        from boards import esp32_s3_devkitc as mod
    else:
        raise BoardError("board: unknown board %r (known: %s)" % (name, ", ".join(BOARDS)))
    validate(mod.BOARD)
    return mod


def validate(board):
    """Check a board (pins, buses, addresses, drivers): BoardError names what is wrong.
    The checker is dropped again afterwards: on a device it runs once at boot
    and its tables would otherwise hold heap for good."""
    held = loaded("sensors")
    from boards import check as mod
    try:
        return mod.check(board)
    finally:
        drop("check")
        if not held:
            drop("sensors")


def loaded(name):
    """Whether boards.<name> is imported."""
    import sys
    return "boards." + name in sys.modules


def drop(name):
    """Forget boards.<name> (check, sensors): tables a device needs at boot
    only give their heap back once nothing refers to them."""
    import sys
    sys.modules.pop("boards." + name, None)
    g = globals()
    if name in g:
        del g[name]


def settings(board, sensor):
    """A sensor's entry with its serial bus's port and baud filled in."""
    o = {}
    bus = board["buses"].get(sensor.get("bus"), {})
    if bus.get("kind") == "uart":
        for k in ("port", "baud"):
            if k in bus:
                o[k] = bus[k]
    o.update(sensor)
    return o


def make_channels(board, i2c, open_serial, sleep_ms=None, overrides=None):
    """Channels for every sensor of the board. open_serial(port, baud) returns
    a port object for the Modbus master. overrides: {sensor type: {key: value}}.
    The sensor table is dropped afterwards unless the caller holds it (a caller
    building a board sensor by sensor imports boards.sensors first, then
    drop("sensors"))."""
    held = loaded("sensors")
    from boards.sensors import SENSORS
    overrides = overrides or {}
    chans = []
    try:
        for s in board["sensors"]:
            o = settings(board, s)
            o.update(overrides.get(s["type"], {}))
            row = SENSORS.get(o["type"])
            if row is None:
                raise ValueError("board %s: no channel for sensor type %r"
                                 % (board.get("name"), o["type"]))
            chans.append(row[4](o, i2c, open_serial, sleep_ms))
    finally:
        if not held:
            drop("sensors")
    return chans


class Pick:
    """A driver whose read() gives more than a channel takes: these fields."""

    def __init__(self, driver, fields):
        self.driver = driver
        self.fields = fields

    def read(self):
        r = self.driver.read()
        return tuple([r[i] for i in self.fields])
