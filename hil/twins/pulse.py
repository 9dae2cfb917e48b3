# Twin of a pulse-output flow or water meter behind a counter: value() is the
# pulses a meter of ml_per_pulse would have given for the volume its source
# says has passed (source() -> millilitres, cumulative), as a PCNT unit or a
# GPIO edge counter would count them. Faults: `stuck = True` (the reed stuck,
# the cable cut: the count stays flat while the water or air still flows),
# `stuck = False` again resumes from what has passed since. Portable: the
# emulated SoC's machine.Counter counts through it on MicroPython.


class PulseModel:
    def __init__(self, source, ml_per_pulse=1000):
        self.source = source
        self.ml_per_pulse = ml_per_pulse
        self.stuck = False
        self._lost = 0        # pulses the meter did not give while stuck
        self._at = 0          # pulses given when it stuck

    def _passed(self):
        return self.source() // self.ml_per_pulse

    def value(self):
        n = self._passed()
        if self.stuck:
            self._lost = n - self._at
            return self._at
        self._at = n - self._lost
        return self._at

    def silent_reset(self):
        """A counter re-opened under the driver: it starts from zero again."""
        self._lost = self._passed()
        self._at = 0


def of_asset(scenario, board):
    """The twin of board's pulse meter, counting what the scenario's asset
    delivers (true_air_mL for an air meter, true_litres_mL for water); None
    when the board has none."""
    for s in board["sensors"]:
        if s["type"] == "pulse":
            field = "true_air_mL" if s.get("medium") == "air" else "true_litres_mL"

            def source():
                scenario.advance()
                return getattr(scenario, field)
            return PulseModel(source, s.get("ml_per_pulse", 1000))
    return None
