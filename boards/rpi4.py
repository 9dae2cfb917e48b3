# Raspberry Pi 4: I2C bus 1 (GPIO2 SDA, GPIO3 SCL), an RS-485 USB adapter for
# the Modbus meter, and a pulse input on GPIO17 (header pin 11; the meter's
# reed or open-collector output to GND, the Pi's pull-up, an edge counter on
# /dev/gpiochip0). Addresses are the chips' defaults. One sensor set per
# asset (boards/__init__.py board()): the config's asset = "..." picks it.
BUSES = {
    # /dev/i2c-1 on header pins 3 (GPIO2, SDA) and 5 (GPIO3, SCL); the clock is
    # set in /boot/firmware/config.txt (dtparam=i2c_arm_baudrate=100000), not here
    "i2c1": {"kind": "i2c", "id": 1, "sda": 2, "scl": 3, "freq": 100000},
    "rs485": {"kind": "uart", "port": "/dev/ttyUSB0", "baud": 2400},
    "flow": {"kind": "counter", "pin": 17},
}


def _board(sensors, asset):
    # the asset's wear parts carry ID EEPROM tags on the I2C bus (boards/tags.py)
    from boards import asset_tags
    return {"name": "rpi4", "mcu": "bcm2711", "i2c_bus": 1,
            "buses": {k: dict(v) for k, v in BUSES.items()}, "sensors": sensors, "tags": asset_tags("i2c1", asset)}


# a compressor sold as air: motor supply, head climate, mains meter
BOARD = _board([
    {"type": "ina219", "bus": "i2c1", "addr": 0x40, "shunt_milliohm": 100},
    {"type": "sht3x", "bus": "i2c1", "addr": 0x44},
    {"type": "sdm120", "bus": "rs485", "slave": 1},
], "compressor")
ASSETS = {
    "compressor": BOARD,
    # a luminaire sold as lux-hours: its 48 V LED driver's supply (150 W is
    # 3.1 A: a 10 mohm shunt, 200 uA LSB reads to 6.5 A), the light under it,
    # the driver's heat sink (derates above 70 C)
    "luminaire": _board([
        {"type": "ina226", "bus": "i2c1", "addr": 0x40, "shunt_milliohm": 10, "current_lsb_ua": 200,
         "run_threshold_mA": 100},
        {"type": "bh1750", "bus": "i2c1", "addr": 0x23},
        {"type": "sht4x", "bus": "i2c1", "addr": 0x44, "hot_cC": 7000},
    ], "luminaire"),
    # a booster pump sold as water: a three-phase meter on its supply (runs
    # above 1 kW), a 10 L/pulse water meter on its outlet, bearing vibration,
    # cabinet climate
    "pump": _board([
        {"type": "sdm630", "bus": "rs485", "slave": 1, "run_threshold_W": 1000},
        {"type": "pulse", "bus": "flow", "ml_per_pulse": 10000, "medium": "water"},
        {"type": "adxl345", "bus": "i2c1", "addr": 0x53},
        {"type": "bme280", "bus": "i2c1", "addr": 0x76, "hot_cC": 4000},
    ], "pump"),
}
# a compressor's air meter (air = "measured"): 1 L of free air per pulse
AIR_METER = {"type": "pulse", "bus": "flow", "ml_per_pulse": 1000, "medium": "air"}
