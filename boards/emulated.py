# The emulated board: the compressor scenario behind chip-level models on an
# emulated I2C bus and a Modbus meter on a serial line (in-process loopback,
# or a real pseudo-terminal opened with pyserial on CPython).

BOARD = {
    "name": "emulated",
    "mcu": "emulated",
    "buses": {
        "i2c": {"kind": "i2c", "id": 0},
        "rs485": {"kind": "uart", "port": "emulated", "baud": 9600},
    },
    "sensors": [
        {"type": "ina219", "bus": "i2c", "addr": 0x40, "shunt_milliohm": 100},
        {"type": "sht3x", "bus": "i2c", "addr": 0x44},
        {"type": "sdm120", "bus": "rs485", "slave": 1},
    ],
}


class Emulation:
    """The world around an emulated device: scenario, bus models, serial."""

    def __init__(self, clock, seed=1, serial="loopback"):
        from hil.i2c import EmulatedI2C
        from hil.ina219 import INA219Model
        from hil.sht3x import SHT3xModel
        from hil.sdm120 import SDM120Model
        from hil.scenario import Compressor
        self.scenario = Compressor(clock, seed)
        self.i2c = EmulatedI2C()
        self.ina219 = INA219Model(self.scenario.ina219)
        self.sht3x = SHT3xModel(self.scenario.sht3x)
        self.sdm120 = SDM120Model(self.scenario.sdm120)
        self.i2c.attach(0x40, self.ina219)
        self.i2c.attach(0x44, self.sht3x)
        self.serial = serial
        self._pty = None
        self._ser = None

    def open_serial(self, port, baud):
        if self.serial == "pty":
            import serial as pyserial
            from hil.pty_serial import PtyServer
            self._pty = PtyServer(self.sdm120)
            self._pty.start()
            self._ser = pyserial.Serial(self._pty.port, baud, timeout=0.2)
            return self._ser
        from hil.sdm120 import LoopbackPort
        return LoopbackPort(self.sdm120)

    def channels(self, overrides=None):
        import boards
        return boards.make_channels(BOARD, self.i2c, self.open_serial,
                                    sleep_ms=lambda ms: None, overrides=overrides)

    def close(self):
        if self._ser is not None:
            self._ser.close()
        if self._pty is not None:
            self._pty.stop()
