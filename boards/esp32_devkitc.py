# ESP32-DevKitC (ESP32-WROOM-32, the classic ESP32) under MicroPython: the
# compressor set of sensors plus an ADXL345 on the motor mount for vibration.
#   I2C0 on GPIO21 (SDA) / GPIO22 (SCL), 400 kHz, 4.7 kohm pull-ups to 3V3.
#   UART2 on GPIO17 (TX) / GPIO16 (RX) to an auto-direction RS-485 transceiver
#   (MAX13487 or a "TTL to RS485" module without a DE pin) for the SDM120.
# Left alone: GPIO1/3 (UART0: the REPL over the USB bridge, what mpremote
# talks to), GPIO6-11 (SPI flash), the strapping pins 0, 2, 5, 12, 15, and
# GPIO34-39, which are input-only (an RX could go there, never SDA, SCL or TX).
BOARD = {
    "name": "esp32-devkitc",
    "mcu": "esp32",
    "buses": {
        "i2c0": {"kind": "i2c", "id": 0, "sda": 21, "scl": 22, "freq": 400000},
        "rs485": {"kind": "uart", "id": 2, "tx": 17, "rx": 16, "baud": 2400},
    },
    "sensors": [
        {"type": "ina219", "bus": "i2c0", "addr": 0x40, "shunt_milliohm": 100},
        {"type": "sht3x", "bus": "i2c0", "addr": 0x44},
        {"type": "adxl345", "bus": "i2c0", "addr": 0x53},
        {"type": "sdm120", "bus": "rs485", "slave": 1},
    ],
}
