# Channels turn one sensor's readings into metrics. Each declares the metrics
# it owns (schema entries), binds to the meter once, then samples in the loop.
# A bus error never escapes a channel: it is counted by kind (err_nack,
# err_crc, err_timeout, err_range) and the loop carries on. A sensor that
# fails FAIL_LIMIT times in a row is backed off: not read for 5 s, then 10 s,
# doubling to 5 minutes, retried after each wait (counted in `backoffs`), so
# a dead or timing-out sensor costs the loop a read every few minutes, not
# every sample.

ERROR_METRICS = [
    ("err_nack", "count", 0, "odo"),
    ("err_crc", "count", 0, "odo"),
    ("err_timeout", "count", 0, "odo"),
    ("err_range", "count", 0, "odo"),
    ("backoffs", "count", 0, "odo"),
]
FAIL_LIMIT = 3
BACKOFF_MIN_MS = 5000
BACKOFF_MAX_MS = 300000


class Channel:
    metrics = []
    # Reading this sensor once per interval is enough (an energy meter's
    # register is itself an odometer); otherwise it is read every sample.
    per_interval = False

    def __init__(self, driver):
        self.driver = driver
        self.errors = 0
        self.fails = 0          # failures in a row
        self._retry_at = 0
        self.reading = None
        self.read_ms = -1

    def bind(self, meter):
        self._err = {}
        for kind in ("nack", "crc", "timeout", "range"):
            self._err[kind] = meter.index("err_" + kind)
        self._i_backoff = meter.index("backoffs")
        self._bind(meter)

    def _bind(self, meter):
        pass

    def restore(self, meter):
        """Called once after the meter got its odometers back from the log."""
        pass

    def sample(self, meter, now_ms, dt_ms):
        if self.fails >= FAIL_LIMIT and now_ms < self._retry_at:
            return False                        # backed off: not read now
        try:
            r = self.driver.read()
        except OSError as e:
            self.errors += 1
            kind = getattr(e, "kind", "nack")
            meter.add(self._err.get(kind, self._err["nack"]), 1)
            self.fails += 1
            if self.fails >= FAIL_LIMIT:
                k = self.fails - FAIL_LIMIT
                wait = BACKOFF_MIN_MS << (k if k < 6 else 6)
                self._retry_at = now_ms + (wait if wait < BACKOFF_MAX_MS else BACKOFF_MAX_MS)
                meter.add(self._i_backoff, 1)
            return False
        self.fails = 0
        self.reading = r                    # for agent/stress.py: what was read, and when
        self.read_ms = now_ms
        self.update(meter, now_ms, dt_ms, r)
        return True

    def backed_off(self, now_ms):
        return self.fails >= FAIL_LIMIT and now_ms < self._retry_at


class PowerChannel(Channel):
    """INA219 on the motor supply: energy, run time, start/stop cycles, and the
    outcome (litres of free air, from run time and the rated flow)."""
    metrics = [
        ("run_time", "s", 0, "odo"),
        ("cycles", "count", 0, "odo"),
        ("energy", "Wh", -3, "odo"),
        ("air", "m3", -3, "odo"),
        ("vbus_min", "V", -3, "min"),
        ("i_max", "A", -3, "max"),
    ]

    def __init__(self, driver, run_threshold_mA=500, flow_lpm=11):
        Channel.__init__(self, driver)
        self.threshold = run_threshold_mA
        self.flow_lpm = flow_lpm
        if not flow_lpm:
            # no flow outcome on this asset (a luminaire bills light instead)
            self.metrics = [x for x in PowerChannel.metrics if x[0] != "air"]
        self.running = False
        self._e = 0      # mW*ms not yet a whole mWh
        self._run = 0    # ms not yet a whole second
        self._air = 0    # ms*L/min not yet a whole litre
        self._last = None

    def _bind(self, m):
        self.i_run, self.i_cyc, self.i_e, self.i_v, self.i_i = [
            m.index(x) for x in ("run_time", "cycles", "energy", "vbus_min", "i_max")]
        self.i_air = m.index("air") if self.flow_lpm else None

    def update(self, m, now_ms, dt_ms, r):
        bus_mV, cur_mA, p_mW = r
        # Integrate over the time since the previous good reading using the
        # power and state seen then (left Riemann sum; exact for step loads
        # sampled faster than they change).
        last = self._last
        if last is not None:
            dt = now_ms - last[0]
            if last[1] > 0:
                self._e += last[1] * dt
                m.add(self.i_e, self._e // 3600000)
                self._e %= 3600000
            if last[2]:
                self._run += dt
                m.add(self.i_run, self._run // 1000)
                self._run %= 1000
                if self.i_air is not None:
                    self._air += dt * self.flow_lpm
                    m.add(self.i_air, self._air // 60000)
                    self._air %= 60000
        on = cur_mA >= self.threshold
        if on and not self.running:
            m.add(self.i_cyc, 1)
        self.running = on
        self._last = (now_ms, p_mW, on)
        m.observe(self.i_v, bus_mV)
        m.observe(self.i_i, cur_mA)


class ClimateChannel(Channel):
    """SHT3x: temperature and humidity, time above a hot threshold and thermal
    cycles (each crossing above the threshold after having cooled below it)."""
    metrics = [
        ("temp_min", "Cel", -2, "min"),
        ("temp_max", "Cel", -2, "max"),
        ("temp_mean", "Cel", -2, "mean"),
        ("rh_mean", "%RH", -2, "mean"),
        ("hot_time", "s", 0, "odo"),
        ("thermal_cycles", "count", 0, "odo"),
    ]

    def __init__(self, driver, hot_cC=4500, hysteresis_cC=500):
        Channel.__init__(self, driver)
        self.hot = hot_cC
        self.hyst = hysteresis_cC
        self.is_hot = False
        self._hot_ms = 0
        self._last = None

    def _bind(self, m):
        self.i_min, self.i_max, self.i_mean, self.i_rh, self.i_hot, self.i_cyc = [
            m.index(x[0]) for x in self.metrics]

    def update(self, m, now_ms, dt_ms, r):
        t, rh = r
        if self._last is not None and self.is_hot:
            self._hot_ms += now_ms - self._last
            m.add(self.i_hot, self._hot_ms // 1000)
            self._hot_ms %= 1000
        if not self.is_hot and t >= self.hot:
            self.is_hot = True
            m.add(self.i_cyc, 1)
        elif self.is_hot and t < self.hot - self.hyst:
            self.is_hot = False
        self._last = now_ms
        m.observe(self.i_min, t)
        m.observe(self.i_max, t)
        m.observe(self.i_mean, t)
        m.observe(self.i_rh, rh)


class MainsChannel(Channel):
    """SDM120-style energy meter on Modbus: our own mains odometer advances by
    the meter's register deltas, so it starts at zero with the epoch and
    survives a meter swap; a register that goes back is a range event."""
    metrics = [
        ("mains_energy", "Wh", 0, "odo"),
        ("mains_power_max", "W", 0, "max"),
        ("mains_voltage_min", "V", -1, "min"),
        ("mains_register", "Wh", 0, "last"),   # the meter's own register, to resume after a reboot
    ]
    per_interval = True

    def __init__(self, driver, max_step_Wh=100000):
        Channel.__init__(self, driver)
        self.max_step = max_step_Wh
        self._reg = None

    def _bind(self, m):
        self.i_wh, self.i_w, self.i_v, self.i_reg = [m.index(x[0]) for x in self.metrics]

    def restore(self, m):
        # Energy the machine used while the agent was down is still billable:
        # resume from the register value logged last.
        reg = m.last_value(self.i_reg)
        if reg > 0:
            self._reg = reg

    def update(self, m, now_ms, dt_ms, r):
        v_dV, i_mA, p_W, e_Wh = r
        if self._reg is not None:
            d = e_Wh - self._reg
            if 0 <= d <= self.max_step:
                m.add(self.i_wh, d)
            else:
                m.add(self._err["range"], 1)
        self._reg = e_Wh
        m.observe(self.i_reg, e_Wh)
        m.observe(self.i_w, p_W)
        m.observe(self.i_v, v_dV)


class LightChannel(Channel):
    """An illuminance sensor (BH1750) under a luminaire: the outcome billed in
    lighting as a service, lux-hours delivered, plus time lit and the light
    level. driver.read() -> illuminance in milli-lux."""
    metrics = [
        ("light_exposure", "lx.h", 0, "odo"),
        ("lit_time", "s", 0, "odo"),
        ("illuminance_mean", "lx", 0, "mean"),
        ("illuminance_max", "lx", 0, "max"),
    ]

    def __init__(self, driver, lit_mlux=50000):
        Channel.__init__(self, driver)
        self.lit = lit_mlux
        self._acc = 0    # mlux*ms not yet a whole lux-hour
        self._lit = 0    # ms lit not yet a whole second
        self._last = None

    def _bind(self, m):
        self.i_luxh, self.i_lit, self.i_mean, self.i_max = [m.index(x[0]) for x in self.metrics]

    def update(self, m, now_ms, dt_ms, mlux):
        last = self._last
        if last is not None:
            dt = now_ms - last[0]
            self._acc += last[1] * dt
            m.add(self.i_luxh, self._acc // 3600000000)
            self._acc %= 3600000000
            if last[1] >= self.lit:
                self._lit += dt
                m.add(self.i_lit, self._lit // 1000)
                self._lit %= 1000
        self._last = (now_ms, mlux)
        m.observe(self.i_mean, mlux // 1000)
        m.observe(self.i_max, mlux // 1000)


class VibrationChannel(Channel):
    """An accelerometer (ADXL345) on a bearing housing: vibration RMS for
    health (it grows with wear), and the time spent above an alert level.
    driver.read() -> RMS vibration over the driver's window, in milli-g; the
    metrics are in mm/s2 (m/s2 at scale -3: 1 g is 9.80665 m/s2 by
    definition), as "mg" would read as milligrams and g has no SenML unit."""
    metrics = [
        ("vib_mean", "m/s2", -3, "mean"),
        ("vib_max", "m/s2", -3, "max"),
        ("vib_high_time", "s", 0, "odo"),
    ]

    def __init__(self, driver, alert_mg=250):
        Channel.__init__(self, driver)
        self.alert = alert_mg
        self._high = 0
        self._last = None

    def _bind(self, m):
        self.i_mean, self.i_max, self.i_high = [m.index(x[0]) for x in self.metrics]

    def update(self, m, now_ms, dt_ms, rms_mg):
        last = self._last
        if last is not None and last[1] >= self.alert:
            self._high += now_ms - last[0]
            m.add(self.i_high, self._high // 1000)
            self._high %= 1000
        self._last = (now_ms, rms_mg)
        # milli-g -> mm/s2: x 9.80665 as x 40168 / 4096 (within 2 ppm), which
        # stays a small int on an ESP32 up to the ADXL345's 16 g
        mms2 = rms_mg * 40168 >> 12
        m.observe(self.i_mean, mms2)
        m.observe(self.i_max, mms2)


class ParticulateChannel(Channel):
    """A particulate sensor (PMS5003) in the asset's air intake: filter and
    environment health. driver.read() -> the 12 frame values; PM2.5 and PM10
    (atmospheric, ug/m3) are the 5th and 6th."""
    metrics = [
        ("pm2_5_mean", "ug/m3", 0, "mean"),
        ("pm2_5_max", "ug/m3", 0, "max"),
        ("pm10_mean", "ug/m3", 0, "mean"),
    ]

    def _bind(self, m):
        self.i_mean, self.i_max, self.i_10 = [m.index(x[0]) for x in self.metrics]

    def update(self, m, now_ms, dt_ms, r):
        m.observe(self.i_mean, r[4])
        m.observe(self.i_max, r[4])
        m.observe(self.i_10, r[5])
