# Boards are data: which buses, which sensors at which addresses. One builder
# turns a board plus a bus and a serial opener into agent channels, so the
# emulated board and a real Pi run the same code from the driver up.

BOARDS = ("emulated", "rpi4", "rpi-zero2w")

SENSOR_KEYS = {
    "ina219": ("addr", "shunt_milliohm", "run_threshold_mA", "flow_lpm"),
    "sht3x": ("addr", "hot_cC"),
    "sdm120": ("port", "baud", "slave"),
}


class BoardError(ValueError):
    pass


def load(name):
    if name == "emulated":
        from boards import emulated as mod
    elif name == "rpi4":
        from boards import rpi4 as mod
    elif name == "rpi-zero2w":
        from boards import rpi_zero2w as mod
    else:
        raise BoardError("board: unknown board %r (known: %s)" % (name, ", ".join(BOARDS)))
    validate(mod.BOARD)
    return mod


def validate(board):
    for key in ("name", "sensors"):
        if key not in board:
            raise BoardError("board: missing key %r" % key)
    for i, s in enumerate(board["sensors"]):
        kind = s.get("type")
        if kind not in SENSOR_KEYS:
            raise BoardError("board %s: sensors[%d].type %r is not one of %s"
                             % (board["name"], i, kind, ", ".join(SENSOR_KEYS)))
        for k in s:
            if k != "type" and k not in SENSOR_KEYS[kind]:
                raise BoardError("board %s: sensors[%d] (%s) has unknown key %r"
                                 % (board["name"], i, kind, k))
        addr = s.get("addr")
        if addr is not None and not (0x08 <= addr <= 0x77):
            raise BoardError("board %s: sensors[%d].addr 0x%x is not a 7-bit I2C address"
                             % (board["name"], i, addr))


def make_channels(board, i2c, open_serial, sleep_ms=None, overrides=None):
    """Channels for every sensor of the board. open_serial(port, baud) returns
    a port object for the Modbus master. overrides: {sensor type: {key: value}}."""
    from agent.channels import PowerChannel, ClimateChannel, MainsChannel
    overrides = overrides or {}
    chans = []
    for s in board["sensors"]:
        o = dict(s)
        o.update(overrides.get(s["type"], {}))
        if o["type"] == "ina219":
            from drivers.ina219 import INA219
            d = INA219(i2c, o.get("addr", 0x40), shunt_milliohm=o.get("shunt_milliohm", 100))
            try:
                d.init()
            except OSError:
                pass   # counted when sampling fails; the driver re-inits on a reset chip
            chans.append(PowerChannel(d, o.get("run_threshold_mA", 500), o.get("flow_lpm", 250)))
        elif o["type"] == "sht3x":
            from drivers.sht3x import SHT3x
            d = SHT3x(i2c, o.get("addr", 0x44), sleep_ms=sleep_ms)
            chans.append(ClimateChannel(d, o.get("hot_cC", 4500)))
        elif o["type"] == "sdm120":
            from drivers.modbus import ModbusRTU
            from drivers.sdm120 import SDM120
            port = open_serial(o.get("port"), o.get("baud", 9600))
            chans.append(MainsChannel(SDM120(ModbusRTU(port), o.get("slave", 1))))
    return chans
