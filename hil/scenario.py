# Asset scenarios on the virtual clock. Integer arithmetic only, seeded
# xorshift noise, so a run gives bit-identical readings on CPython and on
# MicroPython (whose ESP32 floats are single precision).
#
# Compressor: a small oil-free compressor whose 24 V DC motor supply is
# watched by an INA219, whose head temperature and the room humidity by an
# SHT3x, and whose mains input by an SDM120 energy meter. It cycles on and off
# (on 4-12 min, off 3-20 min); the head warms toward 65 C while running and
# cools toward a room temperature that swings +-3 C over the day.

from hil.rng import Rng

DAY_MS = 86400000


class Compressor:
    RUN_MA = 2800
    IDLE_MA = 40
    BUS_MV = 24000
    HOT_MC = 65000
    TAU_MS = 600000
    PSU_EFF_PCT = 88
    STANDBY_W = 4

    def __init__(self, clock, seed=1, meter_start_Wh=1234567):
        self.clock = clock
        self.rng = Rng(seed)
        self.noise = Rng(seed + 7919)
        self._t = clock.world_ms()
        self.running = False
        self._seg_end = self._t + self._duration()
        self.temp_mC = self._ambient(self._t)
        self.mains_mWs = meter_start_Wh * 3600000   # the meter's register, in mW*s
        # ground truth, for reports
        self.true_run_ms = 0
        self.true_cycles = 0

    def _duration(self):
        if self.running:
            return (240 + self.rng.below(481)) * 1000
        return (180 + self.rng.below(1021)) * 1000

    def _ambient(self, t):
        ph = t % DAY_MS
        half = DAY_MS // 2
        tri = ph if ph < half else DAY_MS - ph            # 0..half..0
        return 19000 + (6000 * tri) // half                # 19 C at midnight, 25 C at noon

    def _dc_mW(self):
        return (self.BUS_MV - 150) * self.RUN_MA // 1000 if self.running else self.BUS_MV * self.IDLE_MA // 1000

    def _mains_mW(self):
        return self._dc_mW() * 100 // self.PSU_EFF_PCT + self.STANDBY_W * 1000

    def _step(self, dt):
        target = self.HOT_MC if self.running else self._ambient(self._t)
        self.temp_mC += (target - self.temp_mC) * dt // (self.TAU_MS + dt)
        self.mains_mWs += self._mains_mW() * dt // 1000
        if self.running:
            self.true_run_ms += dt
        self._t += dt

    def advance(self):
        """Move the model to the clock's current world time (never backwards)."""
        now = self.clock.world_ms()
        while self._t < now:
            end = min(now, self._seg_end, self._t + 5000)
            self._step(end - self._t)
            if self._t == self._seg_end:
                self.running = not self.running
                if self.running:
                    self.true_cycles += 1
                self._seg_end = self._t + self._duration()

    def _jit(self, n):
        return self.noise.below(2 * n + 1) - n

    # sources for the emulated chips -------------------------------------------

    def ina219(self):
        self.advance()
        if self.running:
            return self.BUS_MV - 150 + self._jit(20), self.RUN_MA + self._jit(60)
        return self.BUS_MV + self._jit(20), self.IDLE_MA + self._jit(5)

    def sht3x(self):
        self.advance()
        t = self.temp_mC // 10 + self._jit(3)
        rh = 4500 - (self.temp_mC - 20000) // 40 + self._jit(20)
        return t, rh

    def sdm120(self):
        self.advance()
        w = self._mains_mW() / 1000
        v = 230.0 + self._jit(15) / 10
        return v, w / v, w, self.mains_mWs / 3600000000
