# ESP32-DevKitC (ESP32-WROOM-32, the classic ESP32) under MicroPython, one
# sensor set per asset (the config's asset = "..." picks it).
#   I2C0 on GPIO21 (SDA) / GPIO22 (SCL), 400 kHz, 4.7 kohm pull-ups to 3V3.
#   UART2 on GPIO17 (TX) / GPIO16 (RX) to an auto-direction RS-485 transceiver
#   (MAX13487 or a "TTL to RS485" module without a DE pin) for the meter.
#   A pulse input on GPIO27, counted in hardware by PCNT unit 0 (the meter's
#   reed or open-collector output to GND, a 10 kohm pull-up to 3V3).
# Left alone: GPIO1/3 (UART0: the REPL over the USB bridge, what mpremote
# talks to), GPIO6-11 (SPI flash), the strapping pins 0, 2, 5, 12, 15, and
# GPIO34-39, which are input-only (an RX could go there, never SDA, SCL or TX).
BUSES = {
    "i2c0": {"kind": "i2c", "id": 0, "sda": 21, "scl": 22, "freq": 400000},
    "rs485": {"kind": "uart", "id": 2, "tx": 17, "rx": 16, "baud": 2400},
    "flow": {"kind": "counter", "id": 0, "pin": 27},
}


def _board(sensors, asset, baud=2400):
    # the asset's wear parts carry ID EEPROM tags on the I2C bus (boards/tags.py)
    from boards import asset_tags
    b = {"name": "esp32-devkitc", "mcu": "esp32",
         "buses": {k: dict(v) for k, v in BUSES.items()}, "sensors": sensors, "tags": asset_tags("i2c0", asset)}
    b["buses"]["rs485"]["baud"] = baud
    return b


# a compressor sold as air, plus an ADXL345 on the motor mount for vibration
BOARD = _board([
    {"type": "ina219", "bus": "i2c0", "addr": 0x40, "shunt_milliohm": 100},
    {"type": "sht3x", "bus": "i2c0", "addr": 0x44},
    {"type": "adxl345", "bus": "i2c0", "addr": 0x53},
    {"type": "sdm120", "bus": "rs485", "slave": 1},
], "compressor")
ASSETS = {
    "compressor": BOARD,
    # a luminaire: LED driver supply (48 V, 10 mohm shunt), light, heat sink
    "luminaire": _board([
        {"type": "ina226", "bus": "i2c0", "addr": 0x40, "shunt_milliohm": 10, "current_lsb_ua": 200,
         "run_threshold_mA": 100},
        {"type": "bh1750", "bus": "i2c0", "addr": 0x23},
        {"type": "sht4x", "bus": "i2c0", "addr": 0x44, "hot_cC": 7000},
    ], "luminaire"),
    # a booster pump: SDM630 (9600 baud) on its supply, a 10 L/pulse water
    # meter, bearing vibration, cabinet climate
    "pump": _board([
        {"type": "sdm630", "bus": "rs485", "slave": 1, "run_threshold_W": 1000},
        {"type": "pulse", "bus": "flow", "ml_per_pulse": 10000, "medium": "water"},
        {"type": "adxl345", "bus": "i2c0", "addr": 0x53},
        {"type": "bme280", "bus": "i2c0", "addr": 0x76, "hot_cC": 4000},
    ], "pump", baud=9600),
}
# a compressor's air meter (air = "measured"): 1 L of free air per pulse
AIR_METER = {"type": "pulse", "bus": "flow", "ml_per_pulse": 1000, "medium": "air"}
