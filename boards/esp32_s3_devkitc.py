# ESP32-S3-DevKitC-1 under MicroPython (the ESP32_GENERIC_S3 build, REPL on the
# native USB port): a luminaire cabinet with supply, climate, light and air
# quality on one I2C bus, a three-phase SDM630 on RS-485 and a PMS5003.
#   I2C0 on GPIO8 (SDA) / GPIO9 (SCL), 400 kHz.
#   UART1 on GPIO17 (TX) / GPIO18 (RX) to an auto-direction RS-485 transceiver.
#   UART2 on GPIO15 (TX) / GPIO16 (RX) to the PMS5003 (9600 baud, its own line).
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
