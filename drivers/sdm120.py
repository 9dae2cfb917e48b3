# Eastron SDM120 single-phase energy meter over Modbus RTU (input registers,
# each value an IEEE-754 binary32, big-endian, over 2 registers):
#   0x0000 voltage (V)   0x0006 current (A)   0x000C active power (W)
#   0x0156 total active energy (kWh)
#
# read() -> (voltage_dV, current_mA, power_W, energy_Wh), ints, in two
# transactions (0x0000 x14, 0x0156 x2); decoding and range checks are
# drivers/regmap.py's. RangeError on: NaN/inf, |value| >= 2**40, negative
# voltage or energy, voltage > 1000 V, |current| > 200 A, |power| > 100 kW.

from drivers.regmap import RegisterMap, f32_scaled  # noqa: F401  (f32_scaled: re-exported)

REG_VOLTAGE = 0x0000
REG_ENERGY = 0x0156


class SDM120(RegisterMap):
    MODEL = "SDM120"
    BLOCKS = (
        (0x04, REG_VOLTAGE, 14, (
            (0x0000, "voltage", 10, 0, 10000),                  # dV
            (0x0006, "current", 1000, -200000, 200000),         # mA
            (0x000C, "power", 1, -100000, 100000),              # W
        )),
        (0x04, REG_ENERGY, 2, (
            (0x0156, "energy", 1000, 0, 1 << 60),               # Wh
        )),
    )
