# ESP32-S3-DevKitC-1 under MicroPython (the ESP32_GENERIC_S3 build, REPL on the
# native USB port). BOARD: every kind of chip the board can carry at once (the
# bench wiring the test plugin reads: supply, two climate chips, light and air
# quality on one I2C bus, a three-phase SDM630 on RS-485 and a PMS5003); two
# climate chips meter the same metrics, so an installation is one of ASSETS,
# the sensor set per asset (the config's asset = "..." picks it).
#   I2C0 on GPIO8 (SDA) / GPIO9 (SCL), 400 kHz.
#   UART1 on GPIO17 (TX) / GPIO18 (RX) to an auto-direction RS-485 transceiver.
#   UART2 on GPIO15 (TX) / GPIO16 (RX) to the PMS5003 (9600 baud, its own line).
#   A pulse input on GPIO4, counted by PCNT unit 0 (internal pull-up).
# Left alone: GPIO19/20 (native USB), GPIO26-32 (SPI flash and PSRAM; on
# N8R8/N16R8 modules the octal PSRAM also takes GPIO33-37), GPIO43/44
# (UART0), the strapping pins 0, 3, 45, 46, and the RGB LED (GPIO48 on v1.0
# boards, GPIO38 on v1.1).
BOARD = {
    "name": "esp32-s3-devkitc",
    "mcu": "esp32s3",
    "buses": {
        "i2c0": {"kind": "i2c", "id": 0, "sda": 8, "scl": 9, "freq": 400000},
        "rs485": {"kind": "uart", "id": 1, "tx": 17, "rx": 18, "baud": 9600},
        "pms": {"kind": "uart", "id": 2, "tx": 15, "rx": 16, "baud": 9600},
        "flow": {"kind": "counter", "id": 0, "pin": 4},
    },
    "sensors": [
        {"type": "ina226", "bus": "i2c0", "addr": 0x40},
        {"type": "sht4x", "bus": "i2c0", "addr": 0x44},
        {"type": "bme280", "bus": "i2c0", "addr": 0x76},
        {"type": "bh1750", "bus": "i2c0", "addr": 0x23},
        {"type": "sdm630", "bus": "rs485", "slave": 1},
        {"type": "pms5003", "bus": "pms"},
    ],
}


def _board(sensors, asset):
    # the asset's wear parts carry ID EEPROM tags on the I2C bus (boards/tags.py)
    from boards import asset_tags
    return {"name": BOARD["name"], "mcu": BOARD["mcu"],
            "buses": {k: dict(v) for k, v in BOARD["buses"].items()}, "sensors": sensors,
            "tags": asset_tags("i2c0", asset)}


ASSETS = {
    # a compressor sold as air: motor supply, head climate, motor vibration,
    # single-phase mains meter (an SDM120 at the bus's 9600 baud)
    "compressor": _board([
        {"type": "ina219", "bus": "i2c0", "addr": 0x40, "shunt_milliohm": 100},
        {"type": "sht3x", "bus": "i2c0", "addr": 0x44},
        {"type": "adxl345", "bus": "i2c0", "addr": 0x53},
        {"type": "sdm120", "bus": "rs485", "slave": 1},
    ], "compressor"),
    # a luminaire: LED driver supply (48 V, 10 mohm shunt), light, heat sink
    "luminaire": _board([
        {"type": "ina226", "bus": "i2c0", "addr": 0x40, "shunt_milliohm": 10, "current_lsb_ua": 200,
         "run_threshold_mA": 100},
        {"type": "bh1750", "bus": "i2c0", "addr": 0x23},
        {"type": "sht4x", "bus": "i2c0", "addr": 0x44, "hot_cC": 7000},
    ], "luminaire"),
    # a booster pump: SDM630 on its supply, a 10 L/pulse water meter,
    # bearing vibration, cabinet climate
    "pump": _board([
        {"type": "sdm630", "bus": "rs485", "slave": 1, "run_threshold_W": 1000},
        {"type": "pulse", "bus": "flow", "ml_per_pulse": 10000, "medium": "water"},
        {"type": "adxl345", "bus": "i2c0", "addr": 0x53},
        {"type": "bme280", "bus": "i2c0", "addr": 0x76, "hot_cC": 4000},
    ], "pump"),
}
# a compressor's air meter (air = "measured"): 1 L of free air per pulse
AIR_METER = {"type": "pulse", "bus": "flow", "ml_per_pulse": 1000, "medium": "air"}
