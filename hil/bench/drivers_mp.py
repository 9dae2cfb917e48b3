# Driver read rates through the emulated buses, and bus transactions per
# reading. Portable: `tally bench drivers` runs it on CPython and, compiled,
# on the MicroPython unix port (main() prints one line per driver).
#
# Each row builds a twin on an emulated bus and the driver over it, and
# returns (read, transactions): a reading, and the bus's running count of
# transactions (I2C transfers, or serial request frames).

try:
    from time import ticks_us, ticks_diff
except ImportError:                                   # CPython
    from time import perf_counter

    def ticks_us():
        return int(perf_counter() * 1000000)

    def ticks_diff(a, b):
        return a - b


def _i2c(addr, model):
    from hil.buses.i2c import EmulatedI2C
    bus = EmulatedI2C()
    bus.attach(addr, model)
    return bus


def _ina219():
    from hil.twins.ina219 import INA219Model
    from drivers.ina219 import INA219
    bus = _i2c(0x40, INA219Model(lambda: (24000, 1500)))
    d = INA219(bus)
    d.init()
    return d.read, lambda: bus.transactions


def _sht3x():
    from hil.twins.sht3x import SHT3xModel
    from drivers.sht3x import SHT3x
    bus = _i2c(0x44, SHT3xModel(lambda: (2345, 4567)))
    d = SHT3x(bus, sleep_ms=lambda ms: None)
    return d.read, lambda: bus.transactions


class _Frames:
    """A serial port wrapper that counts request frames written."""

    def __init__(self, port):
        self.port = port
        self.frames = 0

    def write(self, buf):
        self.frames += 1
        return self.port.write(buf)

    def __getattr__(self, name):
        return getattr(self.port, name)


def _sdm120():
    from hil.twins.sdm120 import SDM120Model, LoopbackPort
    from drivers.modbus import ModbusRTU
    from drivers.sdm120 import SDM120
    port = _Frames(LoopbackPort(SDM120Model(lambda: (230.1, 4.35, 1000.0, 1234.5))))
    d = SDM120(ModbusRTU(port))
    return d.read, lambda: port.frames


def _ina226():
    from hil.twins.ina226 import INA226Model
    from drivers.ina226 import INA226
    bus = _i2c(0x40, INA226Model(lambda: (48000, 3100), shunt_milliohm=10))
    d = INA226(bus, shunt_milliohm=10, current_lsb_ua=200)
    d.init()
    return d.read, lambda: bus.transactions


def _sht4x():
    from hil.twins.sht4x import SHT4xModel
    from drivers.sht4x import SHT4x
    bus = _i2c(0x44, SHT4xModel(lambda: (2345, 4567)))
    d = SHT4x(bus, sleep_ms=lambda ms: None)
    return d.read, lambda: bus.transactions


def _bme280():
    from hil.twins.bme280 import BME280Model
    from drivers.bme280 import BME280
    bus = _i2c(0x76, BME280Model(lambda: (2345, 101325, 4567)))
    d = BME280(bus, sleep_ms=lambda ms: None)
    d.init()
    return d.read, lambda: bus.transactions


def _adxl345():
    from hil.twins.adxl345 import ADXL345Model
    from drivers.adxl345 import ADXL345
    bus = _i2c(0x53, ADXL345Model(lambda: (120, 0, 1000)))
    d = ADXL345(bus, sleep_ms=lambda ms: None)
    d.init()
    return d.read, lambda: bus.transactions


def _bh1750():
    from hil.twins.bh1750 import BH1750Model
    from drivers.bh1750 import BH1750
    bus = _i2c(0x23, BH1750Model(lambda: 456000))
    d = BH1750(bus, sleep_ms=lambda ms: None)
    d.init()
    return d.read, lambda: bus.transactions


def _sdm630():
    from hil.twins.sdm630 import SDM630Model
    from hil.buses.serial_loop import LoopbackPort
    from drivers.modbus import ModbusRTU
    from drivers.sdm630 import SDM630
    src = ((230.0, 231.0, 229.0), (8.0, 8.1, 7.9), 5500.0, 1234.5)
    port = _Frames(LoopbackPort(SDM630Model(lambda: src)))
    d = SDM630(ModbusRTU(port))
    return d.read, lambda: port.frames


# name -> builder; a new driver is one row (ADXL345: one sample; the
# vibration channel reads a window of them)
ROWS = [("ina219", _ina219), ("ina226", _ina226), ("sht3x", _sht3x), ("sht4x", _sht4x),
        ("bme280", _bme280), ("adxl345", _adxl345), ("bh1750", _bh1750),
        ("sdm120", _sdm120), ("sdm630", _sdm630)]


def measure(build, n=200, runs=5):
    """(median reads/s over `runs` runs of n reads, transactions per read)."""
    read, tx = build()
    read()
    t0 = tx()
    read()
    per = tx() - t0
    rates = []
    for _ in range(runs):
        t = ticks_us()
        for _ in range(n):
            read()
        dt = ticks_diff(ticks_us(), t)
        rates.append(n * 1000000 // (dt if dt > 0 else 1))
    rates.sort()
    return rates[len(rates) // 2], per


def main(n=200):
    for name, build in ROWS:
        try:
            rate, per = measure(build, n)
            print("DRV", name, rate, per)
        except Exception as e:                        # a row that cannot run here says why
            print("DRV", name, "error", repr(e))
