# Boards are data: which buses, which sensors at which addresses. One builder
# turns a board plus a bus and a serial opener into agent channels, so the
# emulated board and a real Pi run the same code from the driver up.

# board name -> its module in boards/: adding a board is its file and one line here
MODULES = {
    "emulated": "emulated",
    "rpi4": "rpi4",
    "rpi-zero2w": "rpi_zero2w",
    "esp32-devkitc": "esp32_devkitc",
    "esp32-s3-devkitc": "esp32_s3_devkitc",
}
BOARDS = tuple(MODULES)
# the boards `tally run` drives (CPython); the ESP32 boards run MicroPython
HOST_BOARDS = ("emulated", "rpi4", "rpi-zero2w")
# The asset a board is installed on picks its sensors: a board file has
# ASSETS = {asset: board} and BOARD, the set load() checks (the compressor's;
# the S3's bench wiring), and may have AIR_METER, the pulse flow meter a
# compressor bills measured air from (air = "measured"). docs/assets.md
ASSETS = ("compressor", "luminaire", "pump")


def asset_tags(bus, asset):
    """The asset's ID EEPROM tag slots on the board's I2C bus `bus` (the
    table in boards/tags.py), as a board's "tags" list. An ESP32 bundle built
    with parts off leaves that table out (nothing reads tags): none then."""
    try:
        from boards import tags
    except ImportError:
        return []
    return tags.on(bus, asset)

# What each sensor type needs (bus, addresses, settings, channel factory):
# one row per sensor in boards/sensors.py.


class BoardError(ValueError):
    pass


def load(name):
    """The board's module, its BOARD checked."""
    import sys
    if name not in MODULES:
        raise BoardError("board: unknown board %r (known: %s)" % (name, ", ".join(BOARDS)))
    full = "boards." + MODULES[name]
    __import__(full)
    mod = sys.modules[full]
    validate(mod.BOARD)
    return mod


def board(name, asset="compressor", overrides=None, air="rated"):
    """The board `name` as installed on `asset`, with the config's sensor
    settings (overrides: {sensor type: {key: value}}) and the air source
    applied and checked: boards/install.py, loaded for the call and dropped
    again (on a device it runs once at boot). The board file's own dict when
    nothing is applied: copy it before changing it."""
    held = loaded("install")
    from boards import install as mod
    try:
        return mod.board(name, asset, overrides, air)
    finally:
        if not held:
            drop("install")


def validate(board):
    """Check a board (pins, buses, addresses, drivers): BoardError names what is wrong.
    The checker is dropped again afterwards: on a device it runs once at boot
    and its tables would otherwise hold heap for good. A flashed ESP32 bundle
    has no checker: tally flash checked the board as installed when it built
    the bundle (hil/harness/mpbuild.py), so here it passes unchecked."""
    held = loaded("sensors")
    try:
        from boards import check as mod
    except ImportError:
        return None
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
    """A sensor's entry with its serial bus's port and baud (a counter's
    pin and unit id) filled in."""
    o = {}
    bus = board["buses"].get(sensor.get("bus"), {})
    if bus.get("kind") in ("uart", "counter"):
        for k in ("port", "baud", "pin", "id"):
            if k in bus:
                o[k] = bus[k]
    o.update(sensor)
    return o


def make_channels(board, i2c, open_serial, sleep_ms=None, overrides=None, open_counter=None):
    """Channels for every sensor of the board. open_serial(port, baud) returns
    a port object for the Modbus master; open_counter(settings) a pulse
    counter (value() -> pulses) for a sensor on a counter bus, which its
    factory gets in place of i2c. overrides: {sensor type: {key: value}}.
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
            bus = i2c
            if row[0] == "counter" and open_counter is not None:
                bus = open_counter(o)
            chans.append(row[4](o, bus, open_serial, sleep_ms))
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
