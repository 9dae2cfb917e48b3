# Pulse counters on MicroPython, in a module of its own: only a board with a
# pulse meter loads it (agent/port/micropython.py is loaded by every device).
#
# Pulse inputs (a flow or water meter's reed or open-collector output): a
# hardware counter where the port has one (machine.Counter: the ESP32's PCNT,
# MicroPython >= 1.27, counting edges with the CPU asleep or busy, a glitch
# filter against contact bounce), else a Pin IRQ that counts in software.
# Either gives value() -> pulses since it was opened (drivers/pulse.py).

FILTER_NS = 1000    # PCNT glitch filter: pulses shorter than 1 us are noise


class IrqCounter:
    """Rising edges on a pin counted by its IRQ handler (no allocation in
    the handler: a small int in a one-slot list)."""

    def __init__(self, pin):
        from machine import Pin
        self.n = [0]
        self.pin = pin
        pin.irq(self._edge, Pin.IRQ_RISING)

    def _edge(self, p):
        self.n[0] += 1

    def value(self):
        return self.n[0]


def open_counter(bus):
    """A pulse counter for a board's counter bus entry (boards/*.py: pin, the
    PCNT unit as id): machine.Counter where the port has it, else IrqCounter.
    ValueError names a pin the chip does not have."""
    import machine
    from agent.port.micropython import _pin
    pin = _pin(bus, "pin")
    try:
        pin.init(machine.Pin.IN, machine.Pin.PULL_UP)
    except (AttributeError, TypeError):
        pass
    counter = getattr(machine, "Counter", None)
    if counter is not None:
        return counter(bus.get("id", 0), pin, edge=counter.RISING, filter_ns=FILTER_NS)
    return IrqCounter(pin)
