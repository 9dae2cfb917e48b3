# machine, as the ESP32 port has it, for the emulated SoC (hil/soc/__init__.py):
# Pin refuses GPIOs the chip lacks like the real one ("invalid pin"); I2C and
# UART are the emulated compressor's buses (boards/emulated.py: INA219 and
# SHT3x on I2C, an SDM120 behind every UART); deepsleep records the request
# and ends the run (the next run wakes with DEEPSLEEP_RESET), as reset does
# (SOFT_RESET, what an ESP32 reports after machine.reset); WDT counts feeds.
# soc.json "i2c_fault_after": N makes the I2C controller raise what no driver
# expects (RuntimeError) after N transactions: a firmware bug to crash on.
import json

from hil.soc import CFG, STATE

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
BROWNOUT_RESET = 6

_PINS = CFG.get("pins") or [g for g in range(40) if g not in (20, 24, 28, 29, 30, 31)]
_cause = PWRON_RESET
try:
    with open(STATE) as f:
        _last = json.load(f)
    if _last.get("slept_ms"):
        _cause = DEEPSLEEP_RESET
    elif _last.get("reset"):
        _cause = SOFT_RESET
    import os
    os.remove(STATE)
except (OSError, ValueError):
    pass
_world = None


def reset_cause():
    return _cause


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"


class Pin:
    IN = 1
    OUT = 3

    def __init__(self, gpio, *args, **kw):
        if gpio not in _PINS:
            raise ValueError("invalid pin")
        self.gpio = gpio


def _the_world():
    global _world
    if _world is None:
        from agent.clock import RealClock
        from boards.emulated import Emulation
        _world = Emulation(RealClock(), seed=CFG.get("seed", 1))
    return _world


class _FaultyI2C:
    def __init__(self, bus, n):
        self.bus = bus
        self.n = n

    def __getattr__(self, name):
        op = getattr(self.bus, name)

        def call(*a, **kw):
            self.n -= 1
            if self.n < 0:
                raise RuntimeError("I2C controller fault (emulated)")
            return op(*a, **kw)
        return call


def I2C(id, scl=None, sda=None, freq=400000):
    if id not in (0, 1):
        raise ValueError("I2C(%d) doesn't exist" % id)
    if not (isinstance(scl, Pin) and isinstance(sda, Pin)):
        raise TypeError("scl and sda must be Pins")
    n = CFG.get("i2c_fault_after")
    return _the_world().i2c if n is None else _FaultyI2C(_the_world().i2c, n)


def UART(id, baudrate=115200, tx=None, rx=None, timeout=0, timeout_char=0):
    if id not in (0, 1, 2):
        raise ValueError("UART(%d) doesn't exist" % id)
    return _the_world().open_serial(None, baudrate)


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0

    def feed(self):
        self.feeds += 1


def deepsleep(ms=0):
    with open(STATE, "w") as f:
        json.dump({"slept_ms": ms}, f)
    print("soc: deepsleep %d ms" % ms)
    raise SystemExit(0)


def reset():
    with open(STATE, "w") as f:
        json.dump({"reset": True}, f)
    print("soc: reset")
    raise SystemExit(0)
