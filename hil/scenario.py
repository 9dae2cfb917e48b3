# Asset scenarios on the virtual clock. Integer arithmetic only, seeded
# xorshift noise, so a run gives bit-identical readings on CPython and on
# MicroPython (whose ESP32 floats are single precision).
#
# Compressor: a small oil-free compressor whose 24 V DC motor supply is
# watched by an INA219, whose head temperature and the room humidity by an
# SHT3x, and whose mains input by an SDM120 energy meter. It cycles on and off
# (on 4-12 min, off 3-20 min; at night light duty, off 20-60 min; now and
# then a short-cycle, off under a minute); the motor works harder in the
# afternoon; the head warms toward 65 C while running and cools toward a room
# temperature that swings from 17 C before dawn to 31 C on a hot afternoon.
#
# Stress (agent/stress.py) comes from the same physics in every profile: the
# air's dew point gives the RH a sensor reads at its own temperature (humid
# nights: a cold, idle head or heat sink sits within 2 K of the dew point and
# condenses), loads vary over the day, the pump's bearing wears and shakes
# more, and the luminaire's LEDs lose lumens per watt as they burn.
#
# Sites and duty (the fleet simulation, hil/harness/fleet.py): every profile
# takes an optional `site` (low, high, dew cap) in mC, the room's daily swing
# and the most humid its air gets, and `duty` in percent of the normal work
# (the compressor's off-times, the luminaire's light level and hours, the
# pump's draw-off); the pump a `bearing` (healthy wear in ppm per running
# hour, the world time a fault starts, the wear per running hour after it).
# Left out, each profile is exactly as before.
#
# The motor draws about 67 W while running; at the board's rated 11 L/min of
# free air (boards/sensors.py) that is about 0.1 kWh per m3, as for a real
# compressor.

from hil.rng import Rng

DAY_MS = 86400000


def rh_at(t_mC, dew_mC):
    """RH (0.01 %) of air of dew point dew_mC at a surface at t_mC: halving
    every 10.6 K of T - Td (Magnus near room temperature), linear between
    halvings (within 3 %RH), integer-exact on both runtimes."""
    dd = t_mC - dew_mC
    if dd <= 0:
        return 10000
    k = dd // 10600
    r = dd - k * 10600
    rh = 10000 >> k if k < 14 else 0
    return rh - rh * r // 21200


def room_mC(t, low=17000, high=31000):
    """A room's temperature over the day: low at 04:00, high at 16:00."""
    ph = (t - 4 * 3600000) % DAY_MS
    half = DAY_MS // 2
    tri = ph if ph < half else DAY_MS - ph
    return low + (high - low) * tri // half


class Compressor:
    RUN_MA = 2800
    IDLE_MA = 40
    BUS_MV = 24000
    HOT_MC = 65000
    TAU_MS = 600000
    PSU_EFF_PCT = 88
    STANDBY_W = 4
    FAD_LPM = 10             # free air delivered while running (rated 11 L/min, a worn unit)

    def __init__(self, clock, seed=1, meter_start_Wh=1234567, site=None, duty=None):
        self.clock = clock
        self.site = site
        self.duty = duty
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
        self.true_air_mL = 0

    def _duration(self):
        if self.running:
            return (240 + self.rng.below(481)) * 1000
        if self.rng.below(25) == 0:
            return (20 + self.rng.below(31)) * 1000       # a short-cycle: restarts within a minute
        if (self._t % DAY_MS) < 6 * 3600000:
            off = (1200 + self.rng.below(2401)) * 1000    # light duty at night
        else:
            off = (180 + self.rng.below(1021)) * 1000
        return off if self.duty is None else off * 100 // self.duty   # heavier duty: shorter rests

    def _ambient(self, t):
        if self.site is not None:
            return room_mC(t, self.site[0], self.site[1])
        return room_mC(t)                                 # 17 C at 04:00, 31 C at 16:00

    def dew_mC(self, t):
        """The room air's dew point: humid nights, 1.5 K under the cold room."""
        return min(self._ambient(t) - 1500, 15500 if self.site is None else self.site[2])

    def run_mA(self):
        """Motor current while running: heavier in the afternoon (up to 3.3 A)."""
        ph = (self._t - 4 * 3600000) % DAY_MS
        half = DAY_MS // 2
        tri = ph if ph < half else DAY_MS - ph
        return self.RUN_MA - 500 + 1000 * tri // half

    def _dc_mW(self):
        return (self.BUS_MV - 150) * self.run_mA() // 1000 if self.running else self.BUS_MV * self.IDLE_MA // 1000

    def _mains_mW(self):
        return self._dc_mW() * 100 // self.PSU_EFF_PCT + self.STANDBY_W * 1000

    def _step(self, dt):
        target = self.HOT_MC if self.running else self._ambient(self._t)
        self.temp_mC += (target - self.temp_mC) * dt // (self.TAU_MS + dt)
        self.mains_mWs += self._mains_mW() * dt // 1000
        if self.running:
            self.true_run_ms += dt
            self.true_air_mL += self.FAD_LPM * dt // 60
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
        if self.faults is not None:
            self.faults.due(now)

    faults = None             # a FaultSchedule, when the board gives one (part swaps)
    SWAPS = (("sht3x", 20, 8),)   # the head-temperature sensor is replaced on the first day
    # The wear parts, each with an ID EEPROM tag (boards/tags.py) holding its
    # passport: slot -> (part number, rated hours, rated cycles). The part
    # number is the one a life card lists (agent/collector/life/cards/): the
    # motor's bearing (ISO 281 from the load histogram: the afternoon's
    # heavier current), its winding (run hours and starts: every cycle above
    # is a start) and the contactor (electrical life by breaking current: each
    # start breaks nothing, each stop breaks the running current).
    PARTS = {"motor-bearing": ("6204-2Z", 20000, 0), "motor-winding": ("TL-MOT-24V-70W", 20000, 1000000),
             "contactor": ("TL-KM-AC3-9A", 0, 1100000)}

    def swaps(self, seed):
        return _Profile.swaps(self, seed)

    def _jit(self, n):
        return self.noise.below(2 * n + 1) - n

    # sources for the emulated chips -------------------------------------------

    def ina219(self):
        self.advance()
        if self.running:
            return self.BUS_MV - 150 + self._jit(20), self.run_mA() + self._jit(60)
        return self.BUS_MV + self._jit(20), self.IDLE_MA + self._jit(5)

    def sht3x(self):
        self.advance()
        t = self.temp_mC // 10 + self._jit(3)
        rh = rh_at(self.temp_mC, self.dew_mC(self._t)) + self._jit(20)
        return t, min(rh, 10000)

    def sdm120(self):
        self.advance()
        w = self._mains_mW() / 1000
        v = 230.0 + self._jit(15) / 10
        return v, w / v, w, self.mains_mWs / 3600000000


# Faults scheduled in a scenario ----------------------------------------------

class FaultSchedule:
    """Faults at world times: (at_ms, kind, target, duration_ms). The board
    registers what each (kind, target) does (start() and end() callables);
    due() runs the starts and ends the clock has passed, in time order.
    Kinds the board does not know are counted in `unknown`, not raised."""

    def __init__(self, events=()):
        self.events = sorted(events)
        self.actions = {}
        self.fired = []           # (at_ms, kind, target) as started
        self.unknown = 0
        self._next = 0
        self._ends = []           # (end_ms, kind, target)

    def on(self, kind, target, start, end=None):
        self.actions[(kind, target)] = (start, end)

    def due(self, now_ms):
        ev = self.events
        while self._next < len(ev) and ev[self._next][0] <= now_ms:
            at, kind, target, dur = ev[self._next]
            self._next += 1
            act = self.actions.get((kind, target))
            if act is None:
                self.unknown += 1
                continue
            act[0]()
            self.fired.append((at, kind, target))
            if dur and act[1]:
                self._ends.append((at + dur, kind, target))
                self._ends.sort()
        while self._ends and self._ends[0][0] <= now_ms:
            _, kind, target = self._ends.pop(0)
            self.actions[(kind, target)][1]()


class _Profile:
    """Common to the asset profiles: a world clock, seeded noise, stepping.
    SWAPS: the parts replaced during a run, (sensor type, earliest hour,
    window in hours): swaps() gives one (at_ms, "swap", type, 0) each, at a
    seeded moment inside its window (the board swaps the twin's serial)."""
    STEP_MS = 5000
    SWAPS = ()

    def swaps(self, seed):
        r = Rng(seed + 4242)                # its own stream: the readings stay as they were
        t0 = self.clock.world_ms()
        return [(t0 + h0 * 3600000 + r.below(win * 3600) * 1000, "swap", target, 0)
                for target, h0, win in self.SWAPS]

    def __init__(self, clock, seed, site=None, duty=None):
        self.clock = clock
        self.site = site
        self.duty = duty
        self.rng = Rng(seed)
        self.noise = Rng(seed + 7919)
        self._t = clock.world_ms()
        self.faults = FaultSchedule()

    def _jit(self, n):
        return self.noise.below(2 * n + 1) - n

    def advance(self):
        now = self.clock.world_ms()
        while self._t < now:
            end = min(now, self._t + self.STEP_MS)
            self._step(end - self._t)
            self._t = end
        self.faults.due(now)


# Luminaire: lighting as a service -------------------------------------------

class Luminaire(_Profile):
    """An LED high-bay luminaire on a 48 V DC driver (INA226), a BH1750 under
    it measuring the light delivered, and an SHT4x on the driver's heat sink.
    Dimming schedule over the day: off 22:00-05:30, a ramp to full by 07:00,
    100 % to 17:00, 30 % in the evening; occupancy lifts the evening level to
    80 % for a few minutes at random. Light = dimming x 900 lux at full, plus
    daylight through the roof lights around noon. The heat sink warms with
    the power drawn; above 70 C the driver derates the output by a quarter.
    The outcome billed is lux-hours delivered (ground truth: true_lux_ms)."""
    FULL_MW = 150000          # electrical power at 100 %
    SWAPS = (("sht4x", 30, 12),)  # the heat-sink sensor is replaced on the second day
    # wear parts with ID EEPROM tags (see Compressor.PARTS): the LED engine
    # (TM-21 over lit hours, its lux per watt falling with maint_ppm()) and
    # the driver, whose bulk electrolytic capacitor sits on the heat sink
    # (Arrhenius over the sink's temperature histogram)
    PARTS = {"led-engine": ("TL-LED-150W", 60000, 0), "led-driver": ("TL-DRV-150W-48V", 2000, 0)}
    BUS_MV = 48000
    FULL_LUX = 900
    DERATE_MC = 70000

    def __init__(self, clock, seed=1, site=None, duty=None, fade_ms=18000):
        _Profile.__init__(self, clock, seed, site, duty)
        self.fade_ms = fade_ms    # ms lit per ppm of light lost
        self.level = 0            # dimming, per mille
        self.occupied_until = 0
        self.sink_mC = 22000
        self.true_lux_ms = 0
        self.true_on_ms = 0

    def maint_ppm(self):
        """Lumen maintenance: the LEDs lose 2 % of their light per 100 hours
        lit (fast, so a simulated week shows lux per watt falling; fade_ms
        600000 is 30 % in 50,000 h, a real LED's L70, for long runs); never
        below nothing."""
        return max(1000000 - self.true_on_ms // self.fade_ms, 0)

    def _light_mlux(self):
        return self.FULL_LUX * self.level * (self.maint_ppm() // 1000) // 1000

    def hall_mC(self, t):
        if self.site is not None:
            return room_mC(t, self.site[0], self.site[1])
        return room_mC(t, 20000, 30000)                      # a hot hall in the afternoon

    def dew_mC(self, t):
        return min(self.hall_mC(t) - 1000, 19500 if self.site is None else self.site[2])   # humid nights

    def _schedule(self, t):
        if self.duty is not None:
            lvl = self._schedule0(t) * self.duty // 100
            if lvl == 0 and self.duty >= 150:
                return 300                                  # round the clock: the night at 30 %
            return min(lvl, 1000)
        return self._schedule0(t)

    def _schedule0(self, t):
        m = (t % DAY_MS) // 60000                         # minute of the day
        if m < 330 or m >= 1320:
            return 0
        if m < 420:
            return (m - 330) * 1000 // 90                   # dawn ramp
        if m < 1020:
            return 1000
        return 300

    def _daylight(self, t):
        m = (t % DAY_MS) // 60000
        if m < 480 or m >= 1080:
            return 0
        tri = m - 480 if m < 780 else 1080 - m
        return 250 * tri // 300                             # up to 250 lux at 13:00

    def _derated(self):
        return self.sink_mC >= self.DERATE_MC

    def _step(self, dt):
        t = self._t
        lvl = self._schedule(t)
        if 0 < lvl < 800:
            if t < self.occupied_until:
                lvl = 800
            elif self.rng.below(720) == 0:                  # someone walks in
                self.occupied_until = t + (120 + self.rng.below(480)) * 1000
        if self._derated():
            lvl = lvl * 3 // 4
        self.level = lvl
        p = self.FULL_MW * lvl // 1000
        target = self.hall_mC(t) + p * 267 // 1000           # +40 C at full power
        self.sink_mC += (target - self.sink_mC) * dt // (1200000 + dt)
        lux = self._light_mlux() // 1000 + self._daylight(t)
        self.true_lux_ms += lux * dt
        if lvl:
            self.true_on_ms += dt

    def ina226(self):
        self.advance()
        p = self.FULL_MW * self.level // 1000
        ma = p * 1000 // self.BUS_MV
        return self.BUS_MV + self._jit(30), (ma + self._jit(5)) if ma else 0

    def bh1750(self):
        """Illuminance at the sensor, in milli-lux."""
        self.advance()
        mlux = self._light_mlux() + self._daylight(self._t) * 1000
        return mlux + self._jit(500) if mlux else 0

    def sht4x(self):
        self.advance()
        rh = rh_at(self.sink_mC, self.dew_mC(self._t)) + self._jit(30)
        return self.sink_mC // 10 + self._jit(3), min(rh, 10000)


# Pump: water by the cubic metre ---------------------------------------------

class BoosterPump(_Profile):
    """A three-phase booster pump (SDM630 on its supply) filling a tank: on
    when the tank is at 20 %, off at 90 %, draw-off varying over the day. An
    ADXL345 on the bearing housing: vibration RMS grows slowly with bearing
    wear (health) and spikes while the pump starts; a BME280 in the cabinet
    gives temperature, humidity and air pressure. Outcome: m3 pumped, from
    its water meter's pulses (ground truth: true_litres_mL)."""
    RATED_LPM = 400
    RUN_W = 5500
    SWAPS = (("sdm630", 40, 6),)  # the meter is exchanged on the second day
    # wear parts with ID EEPROM tags (see Compressor.PARTS): the drive-end
    # bearing (ISO 281 over the load histogram; its wear drives the vibration
    # the ADXL345 reads, the zone collar), the motor (run hours, starts) and
    # the mechanical seal (run hours, starts: dry running at each start)
    PARTS = {"pump-bearing": ("6204-2Z", 20000, 0), "pump-motor": ("TL-PMP-MOT-5K5", 40000, 500000),
             "pump-seal": ("TL-SEAL-25MM", 20000, 100000)}
    TANK_L = 20000

    def __init__(self, clock, seed=1, meter_start_Wh=500000, site=None, duty=None, bearing=None):
        _Profile.__init__(self, clock, seed, site, duty)
        self.bearing = bearing                              # (ppm/h healthy, fault from world ms, ppm/h after)
        self._wear_acc = 0                                  # ppm x ms/h, with a bearing given
        self.level_l = self.TANK_L // 2
        self.running = False
        self.started_at = 0
        self.wear = 0                                       # bearing wear, parts per million
        self.mains_mWs = meter_start_Wh * 3600000
        self.cab_mC = 24000
        self.true_litres_mL = 0
        self.true_run_ms = 0
        self.true_starts = 0

    def _draw_lpm(self, t):
        h = (t % DAY_MS) // 3600000
        lpm = 120 if 6 <= h < 22 else 30
        return lpm if self.duty is None else lpm * self.duty // 100

    def _step(self, dt):
        t = self._t
        self.level_l -= self._draw_lpm(t) * dt // 60000
        if self.running:
            pumped = self.RATED_LPM * dt // 60000
            self.level_l += pumped
            self.true_litres_mL += self.RATED_LPM * dt // 60
            self.true_run_ms += dt
            self.mains_mWs += self.RUN_W * dt
            if self.bearing is None:
                self.wear += dt // 1000                     # 1 ppm per running second
            else:
                b = self.bearing
                self._wear_acc += dt * (b[2] if t >= b[1] else b[0])
                self.wear = min(self._wear_acc // 3600000, 1000000)
        else:
            self.mains_mWs += 15 * dt                          # controls on standby
        if not self.running and self.level_l <= self.TANK_L // 5:
            self.running = True
            self.started_at = t
            self.true_starts += 1
        elif self.running and self.level_l >= self.TANK_L * 9 // 10:
            self.running = False
        if self.site is None:
            target = 26000 if self.running else 22000
        else:                                               # the site's room, warmer while it runs
            target = room_mC(t, self.site[0], self.site[1]) + (4000 if self.running else 0)
        self.cab_mC += (target - self.cab_mC) * dt // (900000 + dt)

    def sdm630(self):
        """(volts per phase, amps per phase, total W, import kWh) like the meter."""
        self.advance()
        w = self.RUN_W if self.running else 15
        v = 230.0 + self._jit(20) / 10
        a = w / 3 / v
        return (v, v, v), (a, a, a), float(w + self._jit(10) if self.running else w), \
            self.mains_mWs / 3600000000

    def vibration_mg(self):
        """RMS vibration at the bearing housing, milli-g."""
        self.advance()
        if not self.running:
            return 3 + self.noise.below(3)
        base = 120 + self.wear // 2000                      # +1 mg per 2000 ppm of wear
        if self._t - self.started_at < 10000:
            base *= 3                                       # starting transient
        return base + self._jit(8)

    def bme280(self):
        """(temperature cC, pressure Pa, RH cP) in the cabinet, as the BME280 twin takes them."""
        self.advance()
        if self.site is None:
            dew = min(room_mC(self._t, 14000, 24000) - 3000, 17000)     # damper at night
        else:
            dew = min(room_mC(self._t, self.site[0], self.site[1]) - 3000, self.site[2])
        rh = rh_at(self.cab_mC, dew) + self._jit(40)
        return self.cab_mC // 10 + self._jit(3), 101325 + self._jit(30), min(rh, 10000)

    def adxl345(self):
        """One acceleration sample (x, y, z mg): gravity on z and a vibration on x
        whose RMS over an even window is vibration_mg()."""
        a = self.vibration_mg()
        self._sign = -getattr(self, "_sign", 1)
        return a * self._sign, 0, 1000
