# An emulated ESP32 SoC for the MicroPython unix port: file modules named
# like the ESP32 port's own, `machine`, `network` and `esp32`, so the firmware
# entry (agent/device_main.py) runs its ESP32 path unchanged on a PC. The SoC
# is the edge of the world: everything above it is the real device code.
#
# Use: put this directory at the front of MICROPYPATH (a file module shadows
# the unix port's built-in `machine`: it is an extensible built-in in
# MicroPython 1.28), and script the SoC with soc.json in the working
# directory (tests/test_device_boot.py):
#   {"pins": [...],                       GPIOs the chip has (default: a classic
#                                         ESP32: 0-39 minus 20, 24, 28-31)
#    "wifi": {"ssid": "bench", "password": "pw",
#             "fail": 2,                  the first attempts that find no AP
#             "join_ms": 200,             how long an attempt takes
#             "drop_after_ms": 0},        the link drops once, this long after joining
#    "partition": {"label": "tallylog", "sectors": 64},   absent: no partition
#    "seed": 1,                           the emulated asset on the buses:
#    "asset": "pump", "air": "rated",     which one (default the compressor),
#    "speed": 1,                          its world this many times faster than real time
#    "counter": true}                     false: no machine.Counter (a Pin IRQ counts pulses)
# What persists across a deep sleep (a new process): soc_flash.bin (the
# partition) and soc_state.json (the wake cause).
import json

STATE = "soc_state.json"


def config():
    try:
        with open("soc.json") as f:
            return json.load(f)
    except OSError:
        return {}


CFG = config()
