# Channels only some assets need, in a module of their own: only a board
# with a pulse meter, or a mains meter that says when the asset runs, loads
# it (a device's heap holds the code of every module it imports). Portable.

from agent.channels import Channel, MainsChannel


class RunMainsChannel(MainsChannel):
    """A mains meter that also says when the asset runs (a pump, whose
    supply nothing else watches): it runs while it draws at least
    run_threshold_W. Read every sample, not once per interval: run_time and
    cycles (starts) as PowerChannel meters them from a DC supply."""
    metrics = MainsChannel.metrics + [("run_time", "s", 0, "odo"), ("cycles", "count", 0, "odo")]
    per_interval = False

    def __init__(self, driver, run_threshold_W, max_step_Wh=100000):
        MainsChannel.__init__(self, driver, max_step_Wh)
        self.threshold = run_threshold_W
        self.running = False
        self._run = 0
        self._last = None

    def _bind(self, m):
        self.i_wh, self.i_w, self.i_v, self.i_reg, self.i_run, self.i_cyc = [
            m.index(x[0]) for x in self.metrics]

    def update(self, m, now_ms, dt_ms, r):
        MainsChannel.update(self, m, now_ms, dt_ms, r)
        last = self._last
        if last is not None and self.running:
            self._run += now_ms - last
            m.add(self.i_run, self._run // 1000)
            self._run %= 1000
        on = r[2] >= self.threshold
        if on and not self.running:
            m.add(self.i_cyc, 1)
        self.running = on
        self._last = now_ms


class FlowChannel(Channel):
    """A pulse-output flow or water meter (drivers/pulse.py): the volume
    measured, billed as the medium it names ("water" for a pump, "air" for a
    compressor billing measured air), and the highest flow seen between two
    samples. driver.read() -> (pulses, mL) since the counter opened.

    A meter that stops pulsing while the asset runs (its reed stuck, its
    cable cut) is a health event: where the board meters a run time
    (run_time, from the supply), stall_s seconds of run time without a pulse
    count one `flow_stalls` and say so in one line; the meter is read on, and
    the next pulse ends the stall. A counter that goes back is counted under
    err_range and counted on from."""
    per_interval = False

    def __init__(self, driver, medium="water", stall_s=120):
        Channel.__init__(self, driver)
        self.medium = medium
        self.stall_s = stall_s
        self.metrics = [
            (medium, "m3", -3, "odo"),                 # litres
            (medium + "_flow_max", "l/s", -3, "max"),      # mL/s (SenML has no L/min)
            ("flow_stalls", "count", 0, "odo"),
        ]
        self._mL = None       # the counter's volume at the last reading
        self._part = 0        # mL not yet a whole litre
        self._run_at = None   # run_time when the last pulse was seen
        self.stalled = False

    def _bind(self, m):
        self.i_vol, self.i_flow, self.i_stall = [m.index(x[0]) for x in self.metrics]
        try:
            self.i_run = m.index("run_time")
        except KeyError:
            self.i_run = None           # nothing says when the asset runs: no stall check

    def update(self, m, now_ms, dt_ms, r):
        mL = r[1]
        last = self._mL
        self._mL = mL
        run = m.values[self.i_run] if self.i_run is not None else 0
        if last is None:
            self._run_at = run
            return
        d = mL - last
        if d < 0:
            # the counter went back (re-opened under us): a range event, and
            # counting carries on from its new value
            m.add(self._err["range"], 1)
            return
        if d > 0:
            self._part += d
            m.add(self.i_vol, self._part // 1000)
            self._part %= 1000
            if dt_ms > 0:
                m.observe(self.i_flow, d * 1000 // dt_ms)
            self._run_at = run
            if self.stalled:
                self.stalled = False
                print("tally: %s: pulses again; the stall is over" % self.driver.where)
            return
        m.observe(self.i_flow, 0)
        if self.i_run is not None and not self.stalled and run - self._run_at >= self.stall_s:
            self.stalled = True
            m.add(self.i_stall, 1)
            print("tally: %s: no pulse in %d s of run time: the %s meter is stuck or cut "
                  "(counted in flow_stalls); metering goes on" % (self.driver.where, run - self._run_at,
                                                                  self.medium))
