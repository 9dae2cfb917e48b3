"""The mixed fleet (`tally simulate --fleet`): every profile at hot, mild and
cool sites under heavy, normal and light duty, through the same agent, log,
uplink and collector as `tally simulate`, with the events a year brings
and `tally life` reads back (docs/life.md, "The fleet simulation"):

- cmp-hot / cmp-cool: the same compressor in a hot and in a cool plant room;
  at 30 % of the run cmp-hot's head-temperature SHT3x is taken out (a new one
  goes in) and at 40 % that very part goes into cmp-cool, whose own SHT3x
  comes out: a part moved to another asset, with its history.
- lum-hot / lum-cool: the same luminaire in a hot and a cool hall; at 50 %
  lum-hot's heat-sink SHT4x fails: bus errors for two hours, then it stops
  answering (the device logs it removed, "vanished": a failure derived from
  the data) and a replacement is fitted three hours later.
- pump-heavy / pump-light: the same booster pump at one site under heavy
  and light draw-off; pump-worn: a normal one whose drive-end bearing starts
  to fail at 75 % of the run, its vibration climbing into ISO 10816 zones C
  and D.

Sites are a room's daily swing and the most humid its air gets (mC), duty
the percentage of the normal work (hil/scenario.py). Every device also has
its node (an `rpi-` id) as a part, and its wear parts their ID EEPROM tags
(boards/tags.py) with passports naming their life card.

Event times are fractions of the run, so a short run (the test) and a year
show the same story. A fleet run refuses a ledger that already holds its
device ids, as simulate does."""
import zlib

from hil.harness.sim import DAY_MS, SimDevice, simulate

# site -> (room low, room high, dew point cap), mC
SITES = {"hot": (24000, 38000, 24000), "mild": (14000, 24000, 17000), "cool": (6000, 16000, 11000)}
# duty -> percent of the normal work
DUTY = {"heavy": 180, "normal": 100, "light": 50}

# id, profile, site, duty
FLEET = (
    ("cmp-hot", "compressor", "hot", "normal"),
    ("cmp-cool", "compressor", "cool", "normal"),
    ("lum-hot", "luminaire", "hot", "normal"),
    ("lum-cool", "luminaire", "cool", "normal"),
    ("pump-heavy", "pump", "mild", "heavy"),
    ("pump-light", "pump", "mild", "light"),
    ("pump-worn", "pump", "mild", "normal"),
)

MOVE_OUT, MOVE_IN = 0.30, 0.40        # cmp-hot's SHT3x out, into cmp-cool
SENSOR_DIES = 0.50                    # lum-hot's SHT4x: errors, silence, a replacement
BEARING_FAULT = 0.75                  # pump-worn's bearing starts to fail
# bearing wear, ppm per running hour: healthy, and once failing (1 mg of
# vibration per 2000 ppm: zone C within hours of running, D within a day)
WEAR_OK_PPM_H = 10
WEAR_FAULT_PPM_H = 80000

# the luminaires' LEDs lose 30 % of their light in 50,000 h lit (L70), not the
# 2 % per 100 h that lets a simulated week show it
LED_FADE_MS = 600000

def node_id(dev_id):
    """A Raspberry Pi's id (16 hex digits of its CPU serial) for a fleet device."""
    return "rpi-%08x%08x" % (zlib.crc32(dev_id.encode()), zlib.crc32(b"node-" + dev_id.encode()))


class FleetDevice(SimDevice):
    """A SimDevice whose world has its site, duty, faults and part tags."""

    def __init__(self, spec, index, workdir, transport, seed, opts):
        self.spec = spec
        SimDevice.__init__(self, spec["id"], index, workdir, transport, seed, opts)

    def make_world(self, seed, opts):
        from boards.emulated import Emulation
        sp = self.spec
        total = opts["total_ms"]
        t0 = self.clock.world_ms()
        physics = {"site": SITES[sp["site"]], "duty": DUTY[sp["duty"]]}
        if sp["profile"] == "luminaire":
            physics["fade_ms"] = LED_FADE_MS
        faults = []
        if sp["profile"] == "pump":
            fault_at = t0 + int(total * BEARING_FAULT) if sp["id"] == "pump-worn" else t0 + 100 * total
            physics["bearing"] = (WEAR_OK_PPM_H, fault_at, WEAR_FAULT_PPM_H)
        if sp["id"] == "lum-hot":
            at = t0 + int(total * SENSOR_DIES)
            # two hours of bus errors (a read refused every ten minutes), then
            # silence for three hours, and a new part answers after it
            faults += [(at - 7200000 + k * 600000, "nack", "sht4x", 0) for k in range(12)]
            faults += [(at, "absent", "sht4x", 3 * 3600000), (at + 60000, "swap", "sht4x", 0)]
        # the pump's vibration RMS over 4 readings, not 16: the twin's signal is
        # a square wave whose RMS any even window gives, at a quarter of the cost
        over = {"adxl345": {"window": 4}} if sp["profile"] == "pump" else None
        # the wear parts' ID EEPROM tag twins (boards/tags.py, hil/scenario.py PARTS)
        return Emulation(self.clock, seed=seed, serial=opts["serial"], profile=sp["profile"], faults=faults,
                         physics=physics, overrides=over, tags=True)

    def slots(self, chans):
        from agent import parts
        return parts.slots_for(chans, self.world.tags(), node=node_id(self.id))


class _Events:
    """The fleet's own events on the simulated clock: the SHT3x moved from
    cmp-hot to cmp-cool. Each done one is kept: (t_ms, what)."""

    def __init__(self, total_ms):
        self.plan = [(int(total_ms * MOVE_OUT), "move_out"), (int(total_ms * MOVE_IN), "move_in")]
        self.done = []
        self.moved = None

    def __call__(self, t, devices):
        while self.plan and t >= self.plan[0][0]:
            _, what = self.plan.pop(0)
            by = {d.id: d for d in devices}
            if what == "move_out":
                m = by["cmp-hot"].world.models["sht3x"]
                self.moved = m.serial
                m.serial = (m.serial * 1103515245 + 12345) & 0x7FFFFFFF or 1     # a new part goes in
                self.done.append((t, "cmp-hot: its SHT3x sht3x-%08x taken out, sht3x-%08x goes in"
                                  % (self.moved, m.serial)))
            else:
                m = by["cmp-cool"].world.models["sht3x"]
                old = m.serial
                m.serial = self.moved
                self.done.append((t, "cmp-cool: sht3x-%08x from cmp-hot goes in, sht3x-%08x comes out"
                                  % (self.moved, old)))


def run(days=365.0, db=":memory:", seed=1, interval_s=3600, sample_s=60, progress=None, serial="loopback",
        snapshot_h=6):
    """Run the fleet; returns simulate()'s report plus "fleet" (each asset's
    profile, site and duty) and "events" (what happened when)."""
    if days <= 0:
        raise ValueError("--fleet needs a positive number of --days")
    total = int(days * DAY_MS)
    specs = [{"id": i, "profile": p, "site": s, "duty": d} for i, p, s, d in FLEET]
    by_id = {sp["id"]: sp for sp in specs}
    events = _Events(total)
    # a stress snapshot every snapshot_h hours at most (the segments of parts
    # and the usage window are resolved to snapshots)
    every = max(1, int(snapshot_h * 3600 // interval_s))

    def make(dev_id, index, workdir, transport, seed_, opts):
        o = dict(opts, total_ms=total, stress={"every": every})
        return FleetDevice(by_id[dev_id], index, workdir, transport, seed_, o)

    rep = simulate(devices=len(specs), days=days, seed=seed, interval_s=interval_s, sample_s=sample_s, db=db,
                   serial=serial, progress=progress, ids=[sp["id"] for sp in specs], make_device=make,
                   on_step=events, progress_every_ms=max(DAY_MS // 2, total // 40))
    rep["fleet"] = specs
    ev = list(events.done)
    ev.append((int(SENSOR_DIES * total), "lum-hot: its SHT4x gives bus errors for 2 h, then is silent; "
                                         "a replacement answers 3 h later"))
    ev.append((int(BEARING_FAULT * total), "pump-worn: its drive-end bearing starts to fail"))
    rep["events"] = [{"day": round(t / DAY_MS, 2), "what": w} for t, w in sorted(ev)]
    return rep
