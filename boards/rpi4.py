# Raspberry Pi 4: I2C bus 1 (GPIO2 SDA, GPIO3 SCL), an RS-485 USB adapter for
# the Modbus meter. Addresses are the chips' defaults.
BOARD = {
    "name": "rpi4",
    "i2c_bus": 1,
    "sensors": [
        {"type": "ina219", "addr": 0x40, "shunt_milliohm": 100},
        {"type": "sht3x", "addr": 0x44},
        {"type": "sdm120", "port": "/dev/ttyUSB0", "baud": 2400, "slave": 1},
    ],
}
