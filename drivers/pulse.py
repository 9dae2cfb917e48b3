# A pulse-output flow or water meter (a reed or open-collector output: one
# pulse per fixed volume, e.g. 1 L, 10 L or 0.1 m3, printed on the meter), on
# a counter: an ESP32 PCNT unit (machine.Counter), a Pin IRQ where there is
# none (agent/port/micropython.py), a GPIO line's edge events on a Raspberry
# Pi (agent/port/linux_bus.py), or a twin (hil/twins/pulse.py). The counter is
# injected and gives value() -> pulses counted since it was opened; it never
# goes back.
#
# read() -> (pulses, millilitres) since the counter was opened: integer math,
# no allocation but the tuple, no bus transaction, never an error (a counter
# that went back, reset under us, is the channel's range event). A pulse
# meter has no identity of its own: ident() is its input.


class PulseMeter:
    def __init__(self, counter, ml_per_pulse=1000, where="pulse"):
        if ml_per_pulse <= 0:
            raise ValueError("pulse meter: ml_per_pulse must be positive")
        self.counter = counter
        self.ml = ml_per_pulse
        self.where = where

    def read(self):
        n = self.counter.value()
        return n, n * self.ml

    def ident(self):
        return "pulse input %s, %d mL per pulse" % (self.where, self.ml)
