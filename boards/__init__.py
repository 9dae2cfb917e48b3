# Boards are data: which buses, which sensors at which addresses. One builder
# turns a board plus a bus and a serial opener into agent channels, so the
# emulated board and a real Pi run the same code from the driver up.

BOARDS = ("emulated", "rpi4", "rpi-zero2w", "esp32-devkitc", "esp32-s3-devkitc")
# the boards `tally run` drives (CPython); the ESP32 boards run MicroPython
HOST_BOARDS = ("emulated", "rpi4", "rpi-zero2w")

# sensor type (driver name) -> the settings a board entry or a config
# override may give it; boards/check.py knows each driver's bus and addresses
SENSOR_KEYS = {
    "ina219": ("addr", "shunt_milliohm", "run_threshold_mA", "flow_lpm"),
    "ina226": ("addr", "shunt_milliohm", "current_lsb_ua", "run_threshold_mA", "flow_lpm"),
    "sht3x": ("addr", "hot_cC"),
    "sht4x": ("addr", "hot_cC"),
    "bme280": ("addr", "hot_cC"),
    "adxl345": ("addr", "window", "alert_mg"),
    "bh1750": ("addr", "lit_mlux"),
    "sdm120": ("port", "baud", "slave"),
    "sdm630": ("port", "baud", "slave"),
    "pms5003": (),
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
    import sys
    from boards import check as mod
    try:
        return mod.check(board)
    finally:
        sys.modules.pop("boards.check", None)
        import boards
        if "check" in boards.__dict__:
            del boards.__dict__["check"]


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
    a port object for the Modbus master. overrides: {sensor type: {key: value}}."""
    from agent.channels import PowerChannel, ClimateChannel, MainsChannel
    overrides = overrides or {}
    chans = []
    for s in board["sensors"]:
        o = settings(board, s)
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
        elif o["type"] == "ina226":
            from drivers.ina226 import INA226
            d = INA226(i2c, o.get("addr", 0x40), shunt_milliohm=o.get("shunt_milliohm", 100),
                       current_lsb_ua=o.get("current_lsb_ua", 25))
            _init(d)
            chans.append(PowerChannel(d, o.get("run_threshold_mA", 500), o.get("flow_lpm", 0)))
        elif o["type"] == "sht4x":
            from drivers.sht4x import SHT4x
            chans.append(ClimateChannel(SHT4x(i2c, o.get("addr", 0x44), sleep_ms=sleep_ms),
                                        o.get("hot_cC", 4500)))
        elif o["type"] == "bme280":
            from drivers.bme280 import BME280
            d = BME280(i2c, o.get("addr", 0x76), sleep_ms=sleep_ms)
            # (temperature, pressure, humidity): the climate channel takes t and RH
            chans.append(ClimateChannel(Pick(d, (0, 2)), o.get("hot_cC", 4500)))
        elif o["type"] == "adxl345":
            from agent.channels import VibrationChannel
            from drivers.adxl345 import ADXL345, Vibration
            d = ADXL345(i2c, o.get("addr", 0x53), sleep_ms=sleep_ms)
            _init(d)
            chans.append(VibrationChannel(Vibration(d, o.get("window", 16)), o.get("alert_mg", 250)))
        elif o["type"] == "bh1750":
            from agent.channels import LightChannel
            from drivers.bh1750 import BH1750
            d = BH1750(i2c, o.get("addr", 0x23), sleep_ms=sleep_ms)
            _init(d)
            chans.append(LightChannel(d, o.get("lit_mlux", 50000)))
        elif o["type"] == "sdm630":
            from drivers.modbus import ModbusRTU
            from drivers.sdm630 import SDM630
            port = open_serial(o.get("port"), o.get("baud", 9600))
            # phase-1 voltage, phase-1 current, total power, import energy
            chans.append(MainsChannel(Pick(SDM630(ModbusRTU(port), o.get("slave", 1)), (0, 3, 9, 11))))
        elif o["type"] == "pms5003":
            from agent.channels import ParticulateChannel
            from drivers.pms5003 import PMS5003
            d = PMS5003(open_serial(o.get("port"), o.get("baud", 9600)))
            _init(d)
            chans.append(ParticulateChannel(d))
        else:
            raise ValueError("board %s: no channel for sensor type %r"
                             % (board.get("name"), o["type"]))
    return chans


def _init(d):
    try:
        d.init()
    except OSError:
        pass   # counted when sampling fails; the drivers re-init a reset chip


class Pick:
    """A driver whose read() gives more than a channel takes: these fields."""

    def __init__(self, driver, fields):
        self.driver = driver
        self.fields = fields

    def read(self):
        r = self.driver.read()
        return tuple([r[i] for i in self.fields])
