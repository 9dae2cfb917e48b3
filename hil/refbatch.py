# The reference batch for `tally bench payload`: 60 one-minute records of a
# compressor with 12 metrics, plausibly evolving, from a seeded generator.
# Integer-only and portable, so the MicroPython encode timing uses the same
# records. The metric set is the one named in issue 4.

from agent.meter import schema_hash
from hil.rng import Rng

METRICS = [
    # name, unit, scale, kind
    ("run_seconds", "s", 0, "odometer"),
    ("cycles", "count", 0, "odometer"),
    ("energy_mWh", "Wh", -3, "odometer"),
    ("outcome_units", "count", 0, "odometer"),
    ("temp_max_cC", "Cel", -2, "gauge:max"),
    ("temp_min_cC", "Cel", -2, "gauge:min"),
    ("vib_rms_mg", "g", -3, "gauge:mean"),
    ("i2c_errors", "count", 0, "odometer"),
    ("serial_errors", "count", 0, "odometer"),
    ("reboots", "count", 0, "odometer"),
    ("uptime_s", "s", 0, "gauge:last"),
    ("free_mem_bytes", "By", 0, "gauge:min"),
]
T0 = 1767225600          # 2026-01-01T00:00:00Z, first record's start
SCHEMA_ID = schema_hash([list(m) for m in METRICS])   # as the birth carries it (docs/wire.md)


def records(seed=42, n=60):
    """List of rows: [values...] per minute, in METRICS order."""
    r = Rng(seed)
    run_s, cycles, energy, outcome = 52000, 3100, 10000000, 1000000
    i2c, serial, reboots = 3, 1, 2
    uptime = 86400 * 3
    temp = 4200
    running = True
    left = 7
    rows = []
    for _ in range(n):
        if left == 0:
            running = not running
            left = 4 + r.below(10)
            if running:
                cycles += 1
        left -= 1
        if running:
            run_s += 60
            energy += 18000 + r.below(700)           # about 1.1 kW for a minute
            outcome += 280 + r.below(40)
            temp += r.below(60)
            tmax, tmin = temp + r.below(40), temp - r.below(40)
            vib = 250 + r.below(80)
        else:
            energy += 60 + r.below(10)               # standby
            temp -= r.below(50)
            tmax, tmin = temp + r.below(10), temp - r.below(30)
            vib = 4 + r.below(4)
        if r.below(40) == 0:
            i2c += 1
        if r.below(90) == 0:
            serial += 1
        uptime += 60
        free = 98000 - r.below(2500)
        rows.append([run_s, cycles, energy, outcome, tmax, tmin, vib, i2c, serial, reboots, uptime, free])
    return rows


def log_records(rows, epoch=0x5EED, seq0=1000, boot=3):
    """The rows as the log's DATA records (see agent.log), for batch.encode."""
    out = []
    for i, v in enumerate(rows):
        s = seq0 + i
        out.append([s, s, 0, epoch, SCHEMA_ID, boot, 86400000 * 3 + i * 60000, T0 + i * 60, 2, 60000, v])
    return out
