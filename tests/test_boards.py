"""Boards are data, checked before a bus is opened (boards/check.py)."""
import copy

import pytest

import boards
from boards.sensors import SENSORS
from hil.harness.pytest_plugin import load_board


def board(name):
    return copy.deepcopy(boards.load(name).BOARD)


@pytest.mark.parametrize("name", boards.BOARDS)
def test_every_board_is_valid(name):
    b = boards.load(name).BOARD
    assert b["name"] == name
    assert boards.validate(b) is b


def test_known_drivers():
    assert sorted(SENSORS) == sorted(
        ["ina219", "ina226", "sht3x", "sht4x", "bme280", "adxl345", "bh1750", "sdm120", "sdm630", "pms5003", "pulse"])


def test_serial_settings_come_from_the_bus():
    b = board("rpi4")
    sdm = b["sensors"][2]
    assert boards.settings(b, sdm) == {"type": "sdm120", "bus": "rs485", "slave": 1,
                                       "port": "/dev/ttyUSB0", "baud": 2400}
    assert boards.settings(b, b["sensors"][0]) == b["sensors"][0]


def _set(b, path, value):
    *head, last = path
    for k in head:
        b = b[k]
    if value is KeyError:
        del b[last]
    elif isinstance(b, list) and last == len(b):
        b.append(value)
    else:
        b[last] = value


# (board, [(path, value)...], words the message must contain)
BAD = [
    ("esp32-devkitc", [(("buses", "rs485", "tx"), 21)], "rs485.tx: GPIO21 is already used by i2c0.sda"),
    ("esp32-devkitc", [(("buses", "rs485", "tx"), 35)], "rs485.tx: GPIO35 is input-only on esp32"),
    ("esp32-devkitc", [(("buses", "i2c0", "scl"), 39)], "i2c0.scl: GPIO39 is input-only"),
    ("esp32-devkitc", [(("buses", "i2c0", "sda"), 7)], "i2c0.sda: GPIO7 is wired to the SPI flash"),
    ("esp32-devkitc", [(("buses", "rs485", "tx"), 1)], "rs485.tx: GPIO1 is UART0"),
    ("esp32-devkitc", [(("buses", "i2c0", "sda"), 24)], "GPIO24 does not exist on esp32"),
    ("esp32-devkitc", [(("buses", "rs485", "id"), 0)], "UART id 0 does not exist on esp32 (ids: 1, 2)"),
    ("esp32-devkitc", [(("buses", "i2c1",), {"kind": "i2c", "id": 0, "sda": 18, "scl": 19})],
     "bus i2c1: I2C id 0 is already bus i2c0"),
    ("esp32-devkitc", [(("buses", "i2c0", "scl"), KeyError)], "bus i2c0: missing key 'scl'"),
    ("esp32-devkitc", [(("buses", "i2c0", "freq"), 4000000)], "freq 4000000 Hz"),
    ("esp32-devkitc", [(("buses", "i2c0", "speed"), 1)], "bus i2c0 (i2c) has unknown key 'speed'"),
    ("esp32-devkitc", [(("buses", "rs485", "port"), "/dev/ttyS1")], "'port' is a serial device path"),
    ("esp32-devkitc", [(("buses", "rs485", "baud"), KeyError)], "bus rs485: missing key 'baud'"),
    ("esp32-devkitc", [(("sensors", 1, "bus"), "i2c9")],
     "sensors[1] (sht3x) is on unknown bus 'i2c9' (buses: i2c0, rs485, flow)"),
    ("esp32-devkitc", [(("sensors", 1, "bus"), "rs485")], "sensors[1] (sht3x) needs an I2C bus, and bus rs485 is UART"),
    ("esp32-devkitc", [(("sensors", 3, "bus"), "i2c0")], "sensors[3] (sdm120) needs a UART bus, and bus i2c0 is I2C"),
    ("esp32-devkitc", [(("sensors", 1, "addr"), 0x80)], "addr 0x80 is not a 7-bit I2C address"),
    ("esp32-devkitc", [(("sensors", 1, "addr"), 0x50)], "addr 0x50 is not an address the sht3x can take (0x44, 0x45)"),
    ("esp32-devkitc", [(("sensors", 1, "type"), "bmp180")], "sensors[1]: unknown driver 'bmp180' (known: "),
    ("esp32-devkitc", [(("sensors", 1, "addr"), KeyError)], "sensors[1] (sht3x): missing or non-integer 'addr'"),
    ("esp32-devkitc", [(("sensors", 1, "gain"), 2)], "sensors[1] (sht3x) has unknown key 'gain'"),
    ("esp32-devkitc", [(("sensors", 3, "slave"), 0)], "slave 0 is not a Modbus slave id"),
    ("esp32-devkitc", [(("sensors", 3, "baud"), 9600)], "'baud' belongs on its bus rs485"),
    ("esp32-s3-devkitc", [(("sensors", 0, "addr"), 0x44)],
     "sensors[1] (sht4x): addr 0x44 on bus i2c0 is already sensors[0] (ina226)"),
    ("esp32-s3-devkitc", [(("sensors", 6), {"type": "sdm630", "bus": "pms", "slave": 3})],
     "sensors[6] (sdm630): bus pms belongs to sensors[5] (pms5003), which needs a UART of its own"),
    ("esp32-s3-devkitc", [(("buses", "i2c0", "sda"), 27)], "GPIO27 is wired to the SPI flash and PSRAM"),
    ("esp32-s3-devkitc", [(("buses", "pms", "tx"), 20)], "GPIO20 is USB D+"),
    ("esp32-s3-devkitc", [(("sensors", 5, "bus"), "rs485")],
     "sensors[5] (pms5003) needs a UART of its own, and bus rs485 already has sensors[4] (sdm630)"),
    ("esp32-s3-devkitc", [(("sensors", 4, "bus"), "pms")],
     "sensors[5] (pms5003) needs a UART of its own, and bus pms already has sensors[4] (sdm630)"),
    ("esp32-s3-devkitc", [(("buses", "pms", "baud"), 115200)], "talks at 9600 baud, and bus pms is set to 115200"),
    ("rpi4", [(("buses", "rs485", "port"), KeyError)], "bus rs485: missing key 'port'"),
    ("rpi4", [(("buses", "rs485", "id"), 0)], "a serial line on bcm2711 is a 'port'"),
    ("rpi4", [(("buses", "i2c1", "sda"), 0)], "GPIO0 is the HAT ID EEPROM bus"),
    ("rpi4", [(("i2c_bus",), 0)], "'i2c_bus' 0 (the bus tally run opens) is not the id of an I2C bus"),
    ("rpi4", [(("mcu",), "bcm2835")], "mcu 'bcm2835' is not one of"),
    ("rpi4", [(("buses",), {})], "'buses' must be a table"),
    ("rpi4", [(("sensors",), KeyError)], "board rpi4: missing key 'sensors'"),
]


@pytest.mark.parametrize("name, changes, words", BAD, ids=[w for _, _, w in BAD])
def test_a_bad_board_is_refused_naming_what(name, changes, words):
    b = board(name)
    for path, value in changes:
        _set(b, path, value)
    with pytest.raises(boards.BoardError) as ei:
        boards.validate(b)
    assert words in str(ei.value)
    assert str(ei.value).startswith("board %s: " % name)


def test_uart_rx_may_use_an_input_only_pin():
    b = board("esp32-devkitc")
    b["buses"]["rs485"]["rx"] = 34
    boards.validate(b)


TOML = """
name = "bench-pi"
mcu = "bcm2711"

[buses.i2c1]
kind = "i2c"
id = 1
sda = 2
scl = 3

[buses.rs485]
kind = "uart"
port = "/dev/ttyUSB0"
baud = 9600

[[sensors]]
type = "ina219"
bus = "i2c1"
addr = 0x41
shunt_milliohm = 10

[[sensors]]
type = "sdm630"
bus = "rs485"
slave = 2
"""


def test_board_files_toml_and_py(tmp_path):
    t = tmp_path / "bench.toml"
    t.write_text(TOML)
    b = load_board(str(t))
    assert b["sensors"][0] == {"type": "ina219", "bus": "i2c1", "addr": 0x41, "shunt_milliohm": 10}
    t.write_text(TOML.replace("addr = 0x41", "addr = 0x41\ngain = 8"))
    with pytest.raises(boards.BoardError, match="unknown key 'gain'"):
        load_board(str(t))
    t.write_text("name = [")
    with pytest.raises(boards.BoardError, match="not valid TOML"):
        load_board(str(t))
    assert load_board("boards/esp32_devkitc.py")["name"] == "esp32-devkitc"
    assert load_board(None)["name"] == "emulated"
    p = tmp_path / "nothing.py"
    p.write_text("X = 1\n")
    with pytest.raises(boards.BoardError, match="defines no BOARD"):
        load_board(str(p))
    with pytest.raises(boards.BoardError, match="not a board name"):
        load_board("esp8266")


def test_the_sensor_table_and_the_checker_are_dropped_after_use():
    # a device builds its board once, at boot: the tables give their heap back
    import sys
    for m in ("boards.check", "boards.sensors"):
        sys.modules.pop(m, None)
    b = board("rpi4")
    boards.validate(b)
    assert "boards.check" not in sys.modules and "boards.sensors" not in sys.modules
    from hil.buses.serial_loop import LoopbackPort
    from hil.twins.sdm120 import SDM120Model
    from hil.twins import i2c_buses
    i2c = i2c_buses(b)["i2c1"]
    chans = boards.make_channels(b, i2c, lambda port, baud: LoopbackPort(SDM120Model(lambda: (230.0, 1.0, 230.0, 0.0))))
    assert len(chans) == 3
    assert "boards.sensors" not in sys.modules and not hasattr(boards, "sensors")


def test_a_caller_holding_the_sensor_table_keeps_it():
    import sys
    from boards import sensors
    b = board("rpi4")
    b["sensors"] = b["sensors"][1:2]                   # the SHT3x alone
    boards.validate(b)
    from hil.twins import i2c_buses
    boards.make_channels(b, i2c_buses(b)["i2c1"], None)
    assert sys.modules["boards.sensors"] is sensors
    boards.drop("sensors")
    assert "boards.sensors" not in sys.modules


def test_an_unknown_sensor_type_has_no_channel():
    b = board("rpi4")
    b["sensors"] = [{"type": "tmp117", "bus": "i2c1", "addr": 0x48}]
    with pytest.raises(ValueError, match="board rpi4: no channel for sensor type 'tmp117'"):
        boards.make_channels(b, None, None)
