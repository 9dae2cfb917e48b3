# Eastron SDM630 three-phase energy meter over Modbus RTU: input registers
# (fc 0x04), each value an IEEE-754 binary32, big-endian, over 2 registers
# (Eastron "SDM630 Modbus protocol": 30001-style register N is address N-30001;
# the meter reads register pairs only, at most 80 registers a request):
#   0x0000 0x0002 0x0004  phase 1/2/3 line-to-neutral voltage (V)
#   0x0006 0x0008 0x000A  phase 1/2/3 current (A)
#   0x000C 0x000E 0x0010  phase 1/2/3 active power (W)
#   0x0034 total system power (W)     0x0046 frequency (Hz)
#   0x0048 total import (kWh)         0x004A total export (kWh)
#   0x0156 total active energy (kWh, import + export)
#
# read() -> (v1, v2, v3 dV, i1, i2, i3 mA, p1, p2, p3 W, power W, freq mHz,
# import Wh, export Wh, energy Wh), ints, in two transactions (0x0000 x76,
# 0x0156 x2); the registers between the fields are read and ignored. Units
# match drivers/sdm120.py (dV, mA, W, Wh). Ranges cover the CT-connected
# SDM630MCT too: |current| <= 10 kA, |phase power| <= 10 MW, |total| <= 30 MW.

from drivers.regmap import RegisterMap


class SDM630(RegisterMap):
    MODEL = "SDM630"
    BLOCKS = (
        (0x04, 0x0000, 0x4C, (
            (0x0000, "v1", 10, 0, 10000),
            (0x0002, "v2", 10, 0, 10000),
            (0x0004, "v3", 10, 0, 10000),
            (0x0006, "i1", 1000, -10000000, 10000000),
            (0x0008, "i2", 1000, -10000000, 10000000),
            (0x000A, "i3", 1000, -10000000, 10000000),
            (0x000C, "p1", 1, -10000000, 10000000),
            (0x000E, "p2", 1, -10000000, 10000000),
            (0x0010, "p3", 1, -10000000, 10000000),
            (0x0034, "power", 1, -30000000, 30000000),
            (0x0046, "freq", 1000, 0, 100000),
            (0x0048, "import", 1000, 0, 1 << 60),
            (0x004A, "export", 1000, 0, 1 << 60),
        )),
        (0x04, 0x0156, 2, (
            (0x0156, "energy", 1000, 0, 1 << 60),
        )),
    )
