"""`tally bench ring`: the ring log on emulated NOR (appends/s on both
interpreters, power cuts, wear, a month of the agent) and the heap opening a
log needs per MiB on MicroPython."""
import os
import statistics
import subprocess
import tempfile
import time

from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector.store import Collector
from agent.log import RingLog, file_log, read_bound
from boards.emulated import Emulation
from hil.bench import print_goals
from hil.harness import mpbuild
from hil import powercut as P
from hil.nor import EmulatedNOR
from hil.loopback import Hub


MIB_SECTORS = 256          # 1 MiB of 4 KiB sectors
NOR_CYCLES = 100000


def _median_rate(fn, runs=5):
    rates = []
    for _ in range(runs):
        n, dt = fn()
        rates.append(n / dt)
    return statistics.median(rates)


def _append_loop(log, n, values):
    t0 = time.perf_counter()
    for i in range(n):
        log.append(7, 1, i * 60000, 0, 0, 60000, values)
        if i % 60 == 59:
            log.ack(log.epoch, log.next_seq - 1)
    return n, time.perf_counter() - t0


def _values():
    # a realistic record: the emulated compressor's 31 metrics
    clock = VirtualClock()
    w = Emulation(clock)
    ag = Agent("b", w.channels(), RingLog(EmulatedNOR(4096, 8), "b"), clock).start()
    for _ in range(13):
        clock.advance_ms(5000)
        ag.tick()
    return list(ag.log.last[10])


MP_APPEND = """
import time
from agent.log import RingLog
from hil.nor import EmulatedNOR
vals = %r
best = []
for run in range(5):
    log = RingLog(EmulatedNOR(4096, 8), "b").open()
    t0 = time.ticks_us()
    n = 300
    for i in range(n):
        log.append(7, 1, i * 60000, 0, 0, 60000, vals)
        if i %% 60 == 59:
            log.ack(log.epoch, log.next_seq - 1)
    best.append(n * 1000000 // time.ticks_diff(time.ticks_us(), t0))
best.sort()
print("RATE", best[2])
"""


def _mp_appends_per_s(values):
    mp = mpbuild.tool("micropython")
    if not mp:
        return None
    with tempfile.TemporaryDirectory() as d:
        mpbuild.build(d)
        r = subprocess.run([mp, "-X", "heapsize=256K", "-c", MP_APPEND % (values,)], cwd=d,
                           env=dict(os.environ, MICROPYPATH=d), capture_output=True, text=True,
                           timeout=300)
    for line in r.stdout.splitlines():
        if line.startswith("RATE "):
            return int(line.split()[1])
    return None


def _agent_month(days):
    """The emulated compressor, one record a minute, for `days` on a 1 MiB
    ring with acks flowing: write amplification and wear."""
    clock = VirtualClock()
    world = Emulation(clock, seed=9)
    dev = EmulatedNOR(4096, MIB_SECTORS)
    log = RingLog(dev, "bench")
    key = bytes(16)
    hub = Hub(Collector(keys={"bench": key}.get))
    ag = Agent("bench", world.channels(), log, clock, transport=hub.transport("bench"),
               interval_ms=60000, sample_ms=60000, uplink_opts={"key": key}).start()
    for _ in range(int(days * 1440)):
        clock.advance_ms(60000)
        ag.tick()
    return dev, log, ag


MP_OPEN = """
import gc
from agent.log import file_log
gc.collect()
log = file_log(%r, None, capacity=%d, durable=False).open()
print("OPEN", log.next_seq, log.depth())
"""


def _fill_log(path, mib):
    """A ring log file of `mib` MiB, wrapped and coalescing: records of 31 values."""
    log = file_log(path, "heap", capacity=mib << 20, durable=False).open()
    vals = [1000000 + i * 37 for i in range(31)]
    n = 0
    while log.compactions < 4:
        log.append(7, 1, n * 60000, 0, 0, 60000, vals)
        n += 1
    log.close()
    return n


def _mp_smallest_open_heap(d, path, mib, mp, lo=16, hi=1024):
    """Smallest heap (KiB, to 2 KiB) in which MicroPython recovers the log."""
    def ok(k):
        r = subprocess.run([mp, "-X", "heapsize=%dK" % k, "-c", MP_OPEN % (path, mib << 20)], cwd=d,
                           env=dict(os.environ, MICROPYPATH=d), capture_output=True, text=True,
                           timeout=120)
        return r.returncode == 0 and "OPEN" in r.stdout
    if not ok(hi):
        return None
    while hi - lo > 2:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def ring_heap(sizes=(1, 4)):
    """Heap MicroPython needs to recover a full log of each size (code
    included, loaded from .mpy files): the slope is bytes per MiB of log."""
    mp = mpbuild.tool("micropython")
    if not mp:
        return None
    out = {}
    with tempfile.TemporaryDirectory() as d:
        mpbuild.build(d)
        for mib in sizes:
            p = os.path.join(d, "r%d.bin" % mib)
            _fill_log(p, mib)
            out[mib] = _mp_smallest_open_heap(d, p, mib, mp)
    return out


def bench_ring(cuts=100000, days=60, progress=None, damage=100000):
    say = progress or (lambda s: None)
    out = {}
    # 1. power cuts: every op of seeded workloads, every tear, until `cuts`
    res = P.Result()
    seed = 0
    t0 = time.perf_counter()
    while res.cuts < cuts:
        seed += 1
        P.run_snapshots(geometry=(512, 8), n=300, seed=seed, res=res)
        say("power cuts: %d of %d cut points, %d violations" % (res.cuts, cuts, len(res.violations)))
    out["cut_points"] = res.cuts
    out["double_cuts"] = res.double
    out["cut_hist_snapshots"] = res.hists       # T_HIST records written by the cut workloads
    out["cut_workloads"] = seed
    out["violations"] = len(res.violations)
    out["violation_examples"] = res.violations[:5]
    out["cut_seconds"] = round(time.perf_counter() - t0, 1)
    # 1b. silent damage: one bit or byte at a time at every offset of every
    #     class in every sector position of seeded workloads' images
    dres = P.DamageResult()
    seed = 0
    t0 = time.perf_counter()
    while dres.points < damage:
        seed += 1
        P.run_damage(geometry=(512, 8), n=300, seed=seed, res=dres)
        say("silent damage: %d of %d points, %d violations" % (dres.points, damage, len(dres.violations)))
    out["damage_points"] = dres.points
    out["damage_workloads"] = seed
    out["damage_classes"] = dict(sorted(dres.classes.items()))      # "newest hist": T_HIST records
    out["damage_corrected"] = dres.corrected
    out["damage_gap_records"] = dres.gaps
    out["damage_violations"] = len(dres.violations)
    out["damage_violation_examples"] = dres.violations[:5]
    out["damage_seconds"] = round(time.perf_counter() - t0, 1)
    # 2. appends per second
    vals = _values()
    say("appends per second (CPython, MicroPython)")
    out["appends_per_s_cpython_emulated"] = round(_median_rate(
        lambda: _append_loop(RingLog(EmulatedNOR(4096, 64), "b").open(), 3000, vals)))
    with tempfile.TemporaryDirectory() as d:
        def filed():
            p = os.path.join(d, "r.bin")
            if os.path.exists(p):
                os.remove(p)
            log = file_log(p, "b", capacity=1 << 20).open()
            r = _append_loop(log, 300, vals)
            log.close()
            return r
        out["appends_per_s_cpython_file_fsync"] = round(_median_rate(filed))
    out["appends_per_s_micropython_emulated"] = _mp_appends_per_s(vals)
    # 3-5. an agent writing one record a minute on 1 MiB, acks flowing
    say("agent on a 1 MiB ring for %d simulated days" % days)
    dev, log, ag = _agent_month(days)
    out["record_payload_bytes"] = round(log.data_bytes / max(1, ag.records), 1)
    out["write_amplification"] = round(dev.bytes_programmed / max(1, log.data_bytes), 3)
    ec = dev.erase_counts
    out["wraps"] = round(sum(ec) / len(ec), 2)
    out["erase_min"], out["erase_max"] = min(ec), max(ec)
    out["erase_spread"] = max(ec) - min(ec)
    per_day = sum(ec) / len(ec) / days
    out["projected_life_years_1mib_100k_cycles"] = round(NOR_CYCLES / per_day / 365) if per_day else None
    # 6. recovery of a full region
    dev.reset_counters()
    again = RingLog(dev, "bench").open()
    out["recovery_reads"] = again.recovery_reads
    out["recovery_bytes"] = dev.bytes_read
    out["recovery_read_bound"] = read_bound(4096, MIB_SECTORS)
    # 6b. heap MicroPython needs to recover a full 1 and 4 MiB log
    say("MicroPython heap to recover 1 and 4 MiB logs")
    heaps = ring_heap()
    if heaps and heaps.get(1) and heaps.get(4):
        out["recovery_heap_kib_1mib_micropython"] = heaps[1]
        out["recovery_heap_kib_4mib_micropython"] = heaps[4]
        out["recovery_heap_bytes_per_mib_micropython"] = round((heaps[4] - heaps[1]) * 1024 / 3)
    else:
        out["recovery_heap_bytes_per_mib_micropython"] = None
    # 7. capacity of 1 MiB before anything is coalesced
    fresh = RingLog(EmulatedNOR(4096, MIB_SECTORS), "cap").open()
    n = 0
    while fresh.compactions == 0:
        fresh.append(7, 1, n * 60000, 0, 0, 60000, vals)
        n += 1
    out["capacity_records_1mib"] = n - 1
    out["capacity_days_at_1_per_min"] = round((n - 1) / 1440, 1)
    out["goals"] = {
        "zero violations over >= 100,000 cut points": out["violations"] == 0 and res.cuts >= 100000,
        "zero rewinds and zero intact records lost over >= 100,000 silent-damage points":
            out["damage_violations"] == 0 and dres.points >= 100000,
        "write amplification <= 1.25": out["write_amplification"] <= 1.25,
        "erase counts within 1": out["erase_spread"] <= 1,
        "projected life >= 50 years": (out["projected_life_years_1mib_100k_cycles"] or 0) >= 50,
        "recovery reads headers + one sector": out["recovery_reads"] <= out["recovery_read_bound"],
    }
    return out


def report(r):
    """Print bench_ring's figures: the table `tally bench ring` shows (--json prints the
    result itself)"""
    mp = r["appends_per_s_micropython_emulated"]
    rows = [
        ("cut points tested (double cuts)", "%d (%d) over %d workloads, %.0f s"
         % (r["cut_points"], r["double_cuts"], r["cut_workloads"], r["cut_seconds"])),
        ("stress snapshots (T_HIST) among the ops cut", r.get("cut_hist_snapshots", 0)),
        ("invariant violations (the newest T_HIST kept included)", r["violations"]),
        ("silent-damage points tested", "%d over %d workloads, %.0f s (%d repaired, %d gap records)"
         % (r["damage_points"], r["damage_workloads"], r["damage_seconds"], r["damage_corrected"],
            r["damage_gap_records"])),
        ("silent-damage violations (lost records, rewinds)", r["damage_violations"]),
        ("appends/s, CPython, emulated NOR (median of 5)", r["appends_per_s_cpython_emulated"]),
        ("appends/s, CPython, file + fsync (median of 5)", r["appends_per_s_cpython_file_fsync"]),
        ("appends/s, MicroPython unix, emulated NOR (median of 5)", mp if mp else "micropython not found"),
        ("record payload (agent, 31 metrics)", "%.1f B" % r["record_payload_bytes"]),
        ("write amplification (programmed / payload)", r["write_amplification"]),
        ("erase counts after %.1f wraps" % r["wraps"], "min %d, max %d, spread %d"
         % (r["erase_min"], r["erase_max"], r["erase_spread"])),
        ("projected life, 1 MiB, 100k-cycle NOR, 1 record/min",
         "%s years" % r["projected_life_years_1mib_100k_cycles"]),
        ("reads to recover a full 1 MiB region", "%d calls, %d bytes (bound %d calls)"
         % (r["recovery_reads"], r["recovery_bytes"], r["recovery_read_bound"])),
        ("MicroPython heap to recover a full 1 / 4 MiB log", "%s / %s KiB (%s B per MiB of log)"
         % (r.get("recovery_heap_kib_1mib_micropython"), r.get("recovery_heap_kib_4mib_micropython"),
            r["recovery_heap_bytes_per_mib_micropython"])),
        ("capacity of 1 MiB before coalescing", "%d records (%.1f days at 1/min)"
         % (r["capacity_records_1mib"], r["capacity_days_at_1_per_min"])),
    ]
    print("tally bench ring")
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print("  %-*s  %s" % (w, k, v))
    print_goals('goals:', r["goals"])
    for v in r["violation_examples"] + r["damage_violation_examples"]:
        print("  violation: " + v)
    return 0
