# One row per sensor type (the driver name a board's sensor gives as "type"):
# the bus it needs, the addresses it can take, the settings a board entry or a
# config override may give it, and the factory that builds its agent channel.
# boards/check.py checks a board against these rows, boards.make_channels
# builds from them, agent/cli/toml_config.py checks [sensor] overrides with them.
# Loaded at boot and dropped again (boards.validate, boards.make_channels):
# on a device the table would otherwise hold heap for good. Portable.
#
# A new sensor is one row here, its driver, its twin and its tests: the recipe
# is in docs/drivers-i2c.md, and tests/test_sensor_table.py fails while the
# test-side tables (twins, bench rows, contract rows) do not name it too.
#
# name -> (bus, addresses, baud, keys, make)
#   bus        "i2c"; "modbus" (Modbus RTU on a UART, several slaves per line,
#              addressed by "slave"); "uart" (a device that streams on a UART
#              of its own); "counter" (a pulse input: a GPIO with an edge
#              counter, the ESP32's PCNT; one sensor per input)
#   addresses  the I2C addresses its address pins can select; None off I2C
#   baud       the only baud rate it talks at; None when the bus decides
#   keys       the settings it takes ("addr"/"slave" among them; "port" and
#              "baud" come from its bus)
#   make       make(o, i2c, open_serial, sleep_ms) -> channel; o is the
#              board entry with its overrides and its bus's port and baud
#              (its pin and unit for a counter, whose opened counter comes
#              in place of i2c)


def _r(a, b):
    return tuple(range(a, b + 1))


def _init(d):
    try:
        d.init()
    except OSError:
        pass   # counted when sampling fails; the drivers re-init a reset chip
    return d


def _rating(ch, o):
    ch.rated_w = o.get("rated_w", 0)      # the asset's rated power: stress load bins (agent/stress.py)
    return ch


def _ina219(o, i2c, open_serial, sleep_ms):
    from agent.channels import PowerChannel
    from drivers.ina219 import INA219
    d = _init(INA219(i2c, o.get("addr", 0x40), shunt_milliohm=o.get("shunt_milliohm", 100)))
    return _rating(PowerChannel(d, o.get("run_threshold_mA", 500), _rated(o, 11)), o)


def _ina226(o, i2c, open_serial, sleep_ms):
    from agent.channels import PowerChannel
    from drivers.ina226 import INA226
    d = _init(INA226(i2c, o.get("addr", 0x40), shunt_milliohm=o.get("shunt_milliohm", 100),
                     current_lsb_ua=o.get("current_lsb_ua", 25)))
    return _rating(PowerChannel(d, o.get("run_threshold_mA", 500), _rated(o, 0)), o)


def _rated(o, default):
    # air = "rated": air billed as flow_lpm x run time; "measured": by the
    # board's pulse flow meter (medium "air"), so not here
    return 0 if o.get("air") == "measured" else o.get("flow_lpm", default)


def _sht3x(o, i2c, open_serial, sleep_ms):
    from agent.channels import ClimateChannel
    from drivers.sht3x import SHT3x
    return ClimateChannel(SHT3x(i2c, o.get("addr", 0x44), sleep_ms=sleep_ms), o.get("hot_cC", 4500))


def _sht4x(o, i2c, open_serial, sleep_ms):
    from agent.channels import ClimateChannel
    from drivers.sht4x import SHT4x
    return ClimateChannel(SHT4x(i2c, o.get("addr", 0x44), sleep_ms=sleep_ms), o.get("hot_cC", 4500))


def _bme280(o, i2c, open_serial, sleep_ms):
    from agent.channels import ClimateChannel
    from boards import Pick
    from drivers.bme280 import BME280
    d = BME280(i2c, o.get("addr", 0x76), sleep_ms=sleep_ms)
    # (temperature, pressure, humidity): the climate channel takes t and RH
    return ClimateChannel(Pick(d, (0, 2)), o.get("hot_cC", 4500))


def _adxl345(o, i2c, open_serial, sleep_ms):
    from agent.channels import VibrationChannel
    from drivers.adxl345 import ADXL345, Vibration
    d = _init(ADXL345(i2c, o.get("addr", 0x53), sleep_ms=sleep_ms))
    ch = VibrationChannel(Vibration(d, o.get("window", 16)), o.get("alert_mg", 250))
    ch.vib_class = o.get("vib_class", 1)      # stress histogram zones (agent/stress.py)
    ch.vib_hz = o.get("vib_hz", 25)
    return ch


def _bh1750(o, i2c, open_serial, sleep_ms):
    from agent.channels import LightChannel
    from drivers.bh1750 import BH1750
    d = _init(BH1750(i2c, o.get("addr", 0x23), sleep_ms=sleep_ms))
    return LightChannel(d, o.get("lit_mlux", 50000))


def _sdm120(o, i2c, open_serial, sleep_ms):
    from drivers.modbus import ModbusRTU
    from drivers.sdm120 import SDM120
    port = open_serial(o.get("port"), o.get("baud", 9600))
    return _rating(_mains(o, SDM120(ModbusRTU(port), o.get("slave", 1))), o)


def _sdm630(o, i2c, open_serial, sleep_ms):
    from boards import Pick
    from drivers.modbus import ModbusRTU
    from drivers.sdm630 import SDM630
    port = open_serial(o.get("port"), o.get("baud", 9600))
    # phase-1 voltage, phase-1 current, total power, import energy
    return _rating(_mains(o, Pick(SDM630(ModbusRTU(port), o.get("slave", 1)), (0, 3, 9, 11))), o)


def _mains(o, d):
    # with run_threshold_W the meter also says when the asset runs (a pump)
    if o.get("run_threshold_W"):
        from agent.flow import RunMainsChannel
        return RunMainsChannel(d, o["run_threshold_W"])
    from agent.channels import MainsChannel
    return MainsChannel(d)


def _pms5003(o, i2c, open_serial, sleep_ms):
    from agent.channels import ParticulateChannel
    from drivers.pms5003 import PMS5003
    return ParticulateChannel(_init(PMS5003(open_serial(o.get("port"), o.get("baud", 9600)))))


def _pulse(o, counter, open_serial, sleep_ms):
    from agent.flow import FlowChannel
    from drivers.pulse import PulseMeter
    where = "GPIO%d" % o["pin"] if "pin" in o else "counter %d" % o.get("id", 0)
    return FlowChannel(PulseMeter(counter, o.get("ml_per_pulse", 1000), where),
                       o.get("medium", "water"), o.get("stall_s", 120))


# what a setting may be besides a non-negative integer: its allowed values
CHOICES = {"air": ("rated", "measured"), "medium": ("water", "air")}
_POWER = ("run_threshold_mA", "flow_lpm", "air", "rated_w")
_MAINS = ("port", "baud", "slave", "run_threshold_W", "rated_w")
SENSORS = {
    "ina219": ("i2c", _r(0x40, 0x4F), None, ("addr", "shunt_milliohm") + _POWER, _ina219),
    "ina226": ("i2c", _r(0x40, 0x4F), None, ("addr", "shunt_milliohm", "current_lsb_ua") + _POWER,
               _ina226),
    "sht3x": ("i2c", (0x44, 0x45), None, ("addr", "hot_cC"), _sht3x),
    "sht4x": ("i2c", (0x44, 0x45, 0x46), None, ("addr", "hot_cC"), _sht4x),
    "bme280": ("i2c", (0x76, 0x77), None, ("addr", "hot_cC"), _bme280),
    "adxl345": ("i2c", (0x1D, 0x53), None, ("addr", "window", "alert_mg", "vib_class", "vib_hz"), _adxl345),
    "bh1750": ("i2c", (0x23, 0x5C), None, ("addr", "lit_mlux"), _bh1750),
    "sdm120": ("modbus", None, None, _MAINS, _sdm120),
    "sdm630": ("modbus", None, None, _MAINS, _sdm630),
    "pms5003": ("uart", None, 9600, (), _pms5003),
    "pulse": ("counter", None, None, ("ml_per_pulse", "medium", "stall_s"), _pulse),
}
