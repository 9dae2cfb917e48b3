# Raspberry Pi 4: I2C bus 1 (GPIO2 SDA, GPIO3 SCL), an RS-485 USB adapter for
# the Modbus meter. Addresses are the chips' defaults.
BOARD = {
    "name": "rpi4",
    "mcu": "bcm2711",
    "i2c_bus": 1,
    "buses": {
        # /dev/i2c-1 on header pins 3 (GPIO2, SDA) and 5 (GPIO3, SCL); the clock is
        # set in /boot/firmware/config.txt (dtparam=i2c_arm_baudrate=100000), not here
        "i2c1": {"kind": "i2c", "id": 1, "sda": 2, "scl": 3, "freq": 100000},
        "rs485": {"kind": "uart", "port": "/dev/ttyUSB0", "baud": 2400},
    },
    "sensors": [
        {"type": "ina219", "bus": "i2c1", "addr": 0x40, "shunt_milliohm": 100},
        {"type": "sht3x", "bus": "i2c1", "addr": 0x44},
        {"type": "sdm120", "bus": "rs485", "slave": 1},
    ],
}
