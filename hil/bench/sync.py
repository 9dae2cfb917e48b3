"""`tally bench sync`: collector ingest (one worker, two in parallel) and a
backlog drained through the uplink, in process or through a real broker."""
import os
import statistics
import subprocess
import tempfile
import time

from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector.store import Collector, is_postgres_url
from agent.log import file_log
from boards.emulated import Emulation
from hil.bench import print_goals
from hil.loopback import Hub

from hil.bench.ring import _median_rate
from hil.bench.payload import _mqtt_publish_len


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
        sent = up.h["bytes_sent"]
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


def report(r):
    """Print bench_sync's figures: the table `tally bench sync` shows (--json prints the
    result itself)"""
    print("tally bench sync")
    ing = r["ingest_records_per_s"]
    print("  collector ingest, records/s (medians; all workers together)")
    for label, k in (("SQLite, one worker", "sqlite_1_worker"), ("SQLite, two workers", "sqlite_2_workers"),
                     ("PostgreSQL, one worker", "postgres_1_worker"),
                     ("PostgreSQL, two workers", "postgres_2_workers")):
        print("    %-28s %s" % (label, ing.get(k, ing.get("postgres", "-"))))
    print("  backlog after %d days offline at 1 record/min         %d records"
          % (r["backlog_records"] // 1440, r["backlog_records"]))
    print("  drain, embedded collector, window 4                  %s records/s" % r["drain_records_per_s_embedded"])
    for w in (1, 4, 16):
        print("  drain, through mosquitto, window %-2d                  %s records/s"
              % (w, r.get("drain_records_per_s_mosquitto_window_%d" % w, "no broker")))
    print("  bytes per device-day (payload / with MQTT framing)   %d / %d"
          % (r["bytes_per_device_day_payload"], r["bytes_per_device_day_with_mqtt"]))
    print_goals('goals (issue 5):', r["goals"])
    return 0
