"""`tally bench ring|payload|sync|soak|drivers|footprint|hostile|life|value|ota`: check the
arguments, call the benchmark's runner and hand its result to the printer of
the same module in hil/bench/ (`report(result)`), or with --json print the
result itself."""
import sys

from agent.cli.common import err


def _show(report, r, a, ok=True):
    """--json: the result as one JSON object; else the benchmark's own table.
    The exit code: 1 only where the benchmark says it failed (ok False)."""
    if a.json:
        from hil.bench import print_json
        print_json(r)
        return 0 if ok else 1
    return report(r)


def _progress(a):
    return None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))


def _ring(a):
    from hil.bench import ring
    if a.cuts < 1 or a.days <= 0 or a.damage < 1:
        return err("bench: --cuts, --damage and --days must be positive")
    return _show(ring.report, ring.bench_ring(cuts=a.cuts, days=a.days, progress=_progress(a), damage=a.damage), a)


def _payload(a):
    from hil.bench import payload
    if not a.hours > 0:
        return err("bench: --hours must be positive")
    return _show(payload.report, payload.bench_payload(hours=a.hours), a)


def _sync(a):
    from hil.bench import sync
    from hil.harness.mosquitto import Mosquitto, find_mosquitto
    m = None
    broker = a.broker
    if not broker and find_mosquitto():
        m = Mosquitto().start()          # a private broker on a free loopback port
        broker = m.url
    try:
        r = sync.bench_sync(broker=broker, db=a.db, quick=a.quick, progress=_progress(a))
    finally:
        if m:
            m.close()
    return _show(sync.report, r, a)


def _soak(a):
    from hil.bench import soak
    from hil.harness.mosquitto import find_mosquitto
    if not find_mosquitto():
        return err("bench soak: mosquitto is not installed (apt-get install mosquitto)")
    if a.devices < 1 or a.seconds <= 0 or a.workers < 1:
        return err("bench soak: --devices, --seconds and --workers must be positive")
    if a.db:
        # a ledger that cannot be opened stops here (main says which), not in
        # the collector workers after the devices have run
        from agent.collector.store import Collector
        Collector(a.db, keys=lambda d: None).close()
    r = soak.bench_soak(devices=a.devices, seconds=a.seconds, speed=a.speed, workers=a.workers,
                        db=a.db, seed=a.seed, fault_every=a.fault_every, progress=_progress(a))
    return _show(soak.report, r, a, r["reconciled"])


def _drivers(a):
    from hil.bench import drivers
    return _show(drivers.report, drivers.bench_drivers(), a)


def _footprint(a):
    from hil.bench import footprint
    if a.only == "heap":
        return _show(footprint.report_heap, footprint.bench_heap(intervals=a.intervals, progress=_progress(a)), a)
    return _show(footprint.report, footprint.bench_footprint(intervals=a.intervals, progress=_progress(a)), a)


def _hostile(a):
    from hil.bench import hostile
    if a.count is not None and a.count < 1:
        return err("bench hostile: --count must be positive")
    r = hostile.bench_hostile(count=a.count or 100000, seed=a.seed, progress=_progress(a))
    return _show(hostile.report, r, a)


def _life(a):
    from hil.bench import life
    if a.assets < 1:
        return err("bench life: --assets must be positive")
    r = life.bench_life(assets=100 if a.quick else a.assets, runs=1 if a.quick else 3, progress=_progress(a))
    return _show(life.report, r, a)


def _value(a):
    from hil.bench import value
    return _show(value.report, value.bench_value(repeat=a.repeat, progress=_progress(a)), a)


def _ota(a):
    from hil.bench import ota
    from hil.harness.mosquitto import find_mosquitto
    if not find_mosquitto():
        return err("bench ota: mosquitto is not installed (apt-get install mosquitto)")
    return _show(ota.report, ota.bench_ota(progress=_progress(a)), a)


def _console(a):
    from hil.bench import console
    if a.fleet < 1 or a.days <= 0:
        return err("bench console: --fleet and --days must be positive")
    r = console.bench_console(devices=a.fleet, days=a.days, shots=a.shots or None, progress=_progress(a))
    return _show(console.report, r, a)



RUN = {"ring": _ring, "payload": _payload, "sync": _sync, "soak": _soak, "drivers": _drivers,
       "footprint": _footprint, "hostile": _hostile, "life": _life, "value": _value, "ota": _ota,
       "console": _console}


def run(a):
    return RUN[a.what](a)


def add(sub):
    b = sub.add_parser("bench", help="benchmarks that print figures (tally bench ring|payload|sync|soak|drivers|footprint|hostile|life|value|ota|console)",
                       description="Measure and print figures; nothing is asserted. "
                       "ring: power-cut and silent-damage points and violations, appends/s on CPython and the "
                       "MicroPython unix port, write amplification, wear spread, projected flash "
                       "life, recovery reads, capacity. payload: bytes per record every shipped profile "
                       "(compressor, luminaire, pump) sends at its default settings, and of our signed "
                       "reference batch against SenML-CBOR, SenML JSON, Sparkplug B and plain JSON, "
                       "and encode times. "
                       "sync: collector ingest rate, backlog drain rate, bytes per device-day. "
                       "soak: device and collector processes through a real mosquitto under "
                       "broker restarts, link cuts, SIGKILLs and duplicates, then the ledger "
                       "reconciled with every device's log (exit 1 if it is not). "
                       "drivers: reads/s per driver through the emulated buses on CPython and the "
                       "MicroPython unix port, and bus transactions per reading. "
                       "hostile: hostile messages by class (unsigned, signed with a device's own key, "
                       "oversized, replay) through the collector: escapes, rows written by "
                       "unauthenticated messages, alarm rows per message, time and memory per message. "
                       "footprint: bundle size for the ESP32, heap for code (device and emulation "
                       "apart) and data, data growth, time per interval (median of 100-interval "
                       "stretches) and the smallest capped heap a day runs in, with the code from "
                       "files and from a ROMFS image, on the 64-bit unix port and, when node is "
                       "installed, the 32-bit WebAssembly port; and with the code frozen on the 32-bit "
                       "unix port built from the vendored MicroPython source, with the smallest heap "
                       "for a day through mosquitto (see docs/firmware.md). "
                       "life: re-evaluating every component of --assets assets x 2 years of hourly histograms "
                       "after a card change (reevaluate_s; see docs/life.md); "
                       "value: a signed statement (JSON, HTML, PDF) for a customer with 100 assets and a "
                       "price proposal for a contract of 1,000 assets (docs/contracts.md); "
                       "ota: a signed update of the whole unix bundle through mosquitto on loopback to "
                       "the MicroPython unix port: throughput, signature and hash verification time, "
                       "device heap beyond its steady loop (see docs/ota.md); "
                       "console: server time per web-console page (median) on a generated ledger of "
                       "--fleet devices x --days days of 15-minute records, and a PNG of each page "
                       "(headless Chromium) in --shots (docs/console.md).")
    b.add_argument("what", choices=tuple(RUN),
                   help="what to measure")
    b.add_argument("--broker", help="sync: a broker to drain through (default: start a private mosquitto)")
    b.add_argument("--db", help="sync: also measure collector ingest into this PostgreSQL database "
                   "(a URL; use a scratch database); soak: the ledger (SQLite path or "
                   "postgresql:// URL; default a fresh SQLite file)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--quick", action="store_true",
                   help="sync: one run of each and a one-day backlog; life: 100 assets, one run (checks "
                   "that it runs; the figures are not medians)")
    b.add_argument("--assets", type=int, default=1000, help="life: assets in the fleet (default 1000)")
    b.add_argument("--hours", type=float, default=24.0,
                   help="payload: simulated hours each profile runs (default 24)")
    b.add_argument("--devices", type=int, default=6, help="soak: device processes (default 6)")
    b.add_argument("--seconds", type=float, default=60, help="soak: seconds of faults (default 60)")
    b.add_argument("--speed", type=float, default=600,
                   help="soak: device time runs this many times real time (default 600)")
    b.add_argument("--workers", type=int, default=2, help="soak: collector worker processes (default 2)")
    b.add_argument("--fault-every", type=float, default=2.0,
                   help="soak: mean seconds between faults (default 2)")
    b.add_argument("--seed", type=int, default=1, help="soak: seed of the fault schedule; "
                   "hostile: seed of the messages")
    b.add_argument("--count", type=int, help="hostile: messages to send (default 100000)")
    b.add_argument("--intervals", type=int, default=10000,
                   help="footprint: intervals of the steady loop (default 10000)")
    b.add_argument("--only", choices=("heap",),
                   help="footprint: only the stress-histogram and identity heap rows (bare, stress, stress + "
                   "identity; unix64 files and wasm32 ROMFS)")
    b.add_argument("--cuts", type=int, default=100000, help="power-cut points to test (default 100000)")
    b.add_argument("--damage", type=int, default=100000,
                   help="ring: silent-damage points to test (default 100000)")
    b.add_argument("--repeat", type=int, default=3, help="value: runs of each (the median is quoted; default 3)")
    b.add_argument("--days", type=float, default=60, help="simulated days of the agent on 1 MiB (default 60)")
    b.add_argument("--fleet", type=int, default=200, help="console: devices in the generated ledger (default 200)")
    b.add_argument("--shots", default="console-shots",
                   help="console: folder for the screen captures (default console-shots; '' for none)")
    b.set_defaults(func=run)
