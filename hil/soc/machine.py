# machine, as the ESP32 port has it, for the emulated SoC (hil/soc/__init__.py):
# Pin refuses GPIOs the chip lacks like the real one ("invalid pin"); I2C and
# UART are the emulated asset's buses (boards/emulated.py; the compressor's
# INA219 and SHT3x on I2C, an SDM120 behind every UART, unless soc.json
# names another asset); deepsleep records the request
# and ends the run (the next run wakes with DEEPSLEEP_RESET), as reset does
# (SOFT_RESET, what an ESP32 reports after machine.reset); WDT counts feeds.
# Counter (the PCNT unit, MicroPython >= 1.27) counts the emulated asset's
# pulse meter (hil/twins/pulse.py; soc.json "asset" and "air" pick the
# world); with soc.json "counter": false the port has no Counter and a Pin
# IRQ counts instead: the edges that passed are delivered to its handler
# before each bus transaction, as interrupts between the loop's reads.
# The asset's wear parts carry their ID EEPROM tags (boards/tags.py) unless
# soc.json "tags" is false.
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
    PULL_UP = 1
    IRQ_RISING = 1

    def __init__(self, gpio, *args, **kw):
        if gpio not in _PINS:
            raise ValueError("invalid pin")
        self.gpio = gpio

    def init(self, *args, **kw):
        pass

    def irq(self, handler=None, trigger=IRQ_RISING):
        _irqs.append([self, handler, _pulses()])


_irqs = []      # [pin, handler, edges delivered]


def _pulses():
    p = _the_world().pulse
    return p.value() if p is not None else 0


def _deliver():
    for irq in _irqs:
        n = _pulses()
        while irq[2] < n:
            irq[2] += 1
            irq[1](irq[0])


class _Counter:
    RISING = 1
    FALLING = 2

    def __init__(self, id, src=None, edge=RISING, filter_ns=0):
        if not 0 <= id <= 7:
            raise ValueError("Counter(%d) doesn't exist" % id)
        if not isinstance(src, Pin):
            raise TypeError("src must be a Pin")
        self._base = _pulses()

    def value(self):
        return _pulses() - self._base


if CFG.get("counter", True):
    Counter = _Counter


class _Fast:
    """The asset's world at soc.json "speed" times real time (a pump that
    starts once an hour shows its pulses in a test of seconds)."""

    def __init__(self, clock, k):
        self.clock = clock
        self.k = k

    def world_ms(self):
        return self.clock.world_ms() * self.k


def _the_world():
    global _world
    if _world is None:
        from agent.clock import RealClock
        from boards.emulated import Emulation
        clock = RealClock()
        if CFG.get("speed"):
            clock = _Fast(clock, CFG["speed"])
        _world = Emulation(clock, seed=CFG.get("seed", 1), profile=CFG.get("asset", "compressor"),
                           air=CFG.get("air", "rated"), tags=CFG.get("tags", True))
    return _world


class _FaultyI2C:
    """The emulated bus, pending pulse IRQs delivered before each
    transaction; with n, a controller fault after n transactions."""

    def __init__(self, bus, n=None):
        self.bus = bus
        self.n = n

    def __getattr__(self, name):
        op = getattr(self.bus, name)

        def call(*a, **kw):
            if _irqs:
                _deliver()
            if self.n is not None:
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
    return _FaultyI2C(_the_world().i2c, CFG.get("i2c_fault_after"))


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
