"""`tally bench ring|payload|sync|soak|drivers|footprint|hostile`: dispatch
to the benchmark runners in hil/ and print their figures (or --json)."""
import json
import sys

from agent.cli.common import err


def _print_goals(title, goals):
    print(title)
    for g, ok in goals.items():
        print("  [%s] %s" % ("met" if ok else "NOT met", g))


def _bench_footprint(a):
    from hil.bench import bench_footprint
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    r = bench_footprint(intervals=a.intervals, progress=progress)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    print("tally bench footprint (MicroPython: bytes of heap unless named)")
    for group, n in sorted(r["bundle_mpy_bytes"].items()):
        print("  bundle, %-32s %7d B of .mpy (xtensawin)" % (group, n))
    s = r.get("steady_loop")
    if not isinstance(s, dict):
        print("  steady loop: %s" % (s or r.get("micropython")))
        return 0
    cols = [("unix64 files", s), ("unix64 ROMFS", r.get("steady_loop_romfs")),
            ("wasm32 files", r.get("wasm32")), ("wasm32 ROMFS", r.get("wasm32_romfs"))]
    cols = [(h, c) for h, c in cols if isinstance(c, dict)]
    rows = (("heap for code: all of it", "heap_code"), ("  of it the device's modules", "heap_code_device"),
            ("  of it the emulation's (not on a board)", "heap_code_emulation"),
            ("heap for data after setup", "heap_data_after_setup"),
            ("heap for data in the steady loop (peak)", "heap_data_peak"),
            ("time per interval (12 samples, 4 sensors, log, sync), us", "us_per_interval"),
            ("heap free at idle in a 256K heap (unix64)", "heap_free_idle"))
    print("  %-58s" % "" + "".join(" %13s" % h for h, _ in cols))
    for label, k in rows:
        print("  %-58s" % label + "".join(" %13s" % c.get(k, "-") for _, c in cols))
    print("  %-58s %13d %13s" % ("smallest heap a simulated day runs in, KiB (capped)", r["smallest_heap_for_a_day_kib"],
                                  r.get("smallest_heap_for_a_day_romfs_kib", "-")))
    if isinstance(r.get("wasm32"), str):
        print("  32-bit figures: %s" % r["wasm32"])
    print("  heap data growth over %d intervals: %d B; ROMFS image %d B"
          % (s["intervals"], r["heap_data_growth_bytes"], r.get("romfs_image_bytes", 0)))
    print("  unix64: the MicroPython unix port, 64-bit (object slots and GC blocks twice an ESP32's);")
    print("  wasm32: the WebAssembly port, 32-bit like an ESP32; it collects only between intervals,")
    print("  so its figures are live heap measured there, not a capped run")
    _print_goals('goals (issue 7):', r["goals"])
    return 0


def _bench_drivers(a):
    from hil.bench import bench_drivers
    r = bench_drivers()
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    cp, mp = r["cpython"], r["micropython"] or {}
    print("tally bench drivers: reads through the emulated buses (median of 5 runs of 200)")
    print("  %-10s %14s %18s %14s" % ("driver", "CPython r/s", "MicroPython r/s", "bus tx/read"))
    for name in cp:
        c, m = cp[name], mp.get(name, {})
        print("  %-10s %14s %18s %14s" % (
            name, c.get("reads_per_s", c.get("error")),
            m.get("reads_per_s", m.get("error", "n/a" if not r["micropython"] else "-")),
            c.get("transactions_per_read", "-")))
    if r.get("micropython_error"):
        print("MicroPython run failed: %s" % r["micropython_error"])
    elif r["micropython"] is None:
        print("(micropython unix port not found: only CPython measured)")
    return 0


def _bench_soak(a):
    from hil.harness.mosquitto import find_mosquitto
    from hil.harness.soak import soak
    if not find_mosquitto():
        return err("bench soak: mosquitto is not installed (apt-get install mosquitto)")
    if a.devices < 1 or a.seconds <= 0 or a.workers < 1:
        return err("bench soak: --devices, --seconds and --workers must be positive")
    if a.db:
        # a ledger that cannot be opened stops here (main says which), not in
        # the collector workers after the devices have run
        from agent.collector.store import Collector
        Collector(a.db, keys=lambda d: None).close()
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    r = soak(devices=a.devices, seconds=a.seconds, speed=a.speed, workers=a.workers,
             db=a.db, seed=a.seed, fault_every=a.fault_every, progress=progress)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0 if r["reconciled"] else 1
    print("tally bench soak: %d devices at %gx time, %d collector workers, %gs of faults"
          % (r["devices"], r["speed"], r["workers"], r["seconds"]))
    for k, n in sorted(r["faults"].items()):
        print("  fault %-16s %d" % (k, n))
    print("  worker kills inside a transaction  %d of %d"
          % (r["worker_kills_inside_a_transaction"], r["faults"]["worker_kill"]))
    print("  duplicates injected    %d" % r["duplicates_injected"])
    print("  records logged         %d" % r["records"])
    print("  lost                   %d" % r["lost"])
    print("  counted twice          %d" % r["counted_twice"])
    print("  duplicates ignored     %d" % r["duplicates_ignored"])
    for d in r["per_device"]:
        print("  %s  boots %d  logged %d  in ledger %d  gaps %d (coalesced %d, dropped %d)  %s"
              % (d["device_id"], d["boots"], d["records_logged"], d["intervals_in_ledger"],
                 d["gaps_unexplained"], d["gap_records_coalesced"], d["gap_records_dropped"],
                 "reconciled" if d["reconciled"] else "NOT reconciled: %s" % d["mismatches"]))
    print("reconciled: %s" % ("yes" if r["reconciled"] else "NO"))
    return 0 if r["reconciled"] else 1


def _bench_hostile(a):
    from hil.harness.hostile import bench_hostile
    if a.count is not None and a.count < 1:
        return err("bench hostile: --count must be positive")
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    r = bench_hostile(count=a.count or 100000, seed=a.seed, progress=progress)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    print("tally bench hostile: %d hostile messages through Collector.handle, SQLite, seed %d, %.0f s"
          % (r["tried"], r["seed"], r["seconds"]))
    print("  %-10s %8s %8s %8s %10s %10s %10s" % ("class", "tried", "signed", "escapes", "median ms",
                                                   "max ms", "max MB"))
    for cls, c in r["per_class"].items():
        print("  %-10s %8d %8d %8d %10.3f %10.1f %10.2f" % (cls, c["tried"], c["authenticated"], c["escapes"],
                                                          c["median_ms_per_message"], c["max_ms_per_message"],
                                                          c["max_mb_per_message"]))
    rows = [("escapes", r["escapes"]), ("rows per unauthenticated message", r["rows_per_unauthenticated"]),
            ("alarm rows per message (most)", r["alarm_rows_per_message"]),
            ("time per message, median / max", "%.3f / %.1f ms" % (r["median_ms_per_message"],
                                                                   r["max_ms_per_message"])),
            ("CPU per message, median / max", "%.3f / %.1f ms" % (r["median_cpu_ms_per_message"],
                                                                 r["max_cpu_ms_per_message"])),
            ("time per message of the median size (%d B) or less, max" % r["median_message_bytes"],
             "%.1f ms (CPU %.1f ms)" % (r["max_ms_per_message_up_to_median_size"],
                                        r["max_cpu_ms_per_message_up_to_median_size"])),
            ("memory per message, max (tracemalloc sample, RSS)", "%.2f MB" % r["max_mb_per_message"]),
            ("peak RSS growth over rest", "%.1f MB" % r["peak_rss_growth_mb"]),
            ("honest device's batches acked", r["honest_batches_acked"]),
            ("slowest", r["slowest"]), ("largest", r["largest"])]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print("  %-*s  %s" % (w, k, v))
    for e in r["escape_examples"][:10]:
        print("  escape: " + e)
    for e in r["unauthenticated_row_examples"][:5] + r["alarm_examples"][:5]:
        print("  " + e)
    print("  (how: %s)" % r["method"])
    _print_goals('goals (issue 11):', r["goals"])
    return 0


def run(a):
    if a.what == "hostile":
        return _bench_hostile(a)
    if a.what == "payload":
        return _bench_payload(a)
    if a.what == "sync":
        return _bench_sync(a)
    if a.what == "soak":
        return _bench_soak(a)
    if a.what == "drivers":
        return _bench_drivers(a)
    if a.what == "footprint":
        return _bench_footprint(a)
    from hil.bench import bench_ring
    progress = None if a.json else (lambda s: print("  " + s, file=sys.stderr, flush=True))
    if a.cuts < 1 or a.days <= 0 or a.damage < 1:
        return err("bench: --cuts, --damage and --days must be positive")
    r = bench_ring(cuts=a.cuts, days=a.days, progress=progress, damage=a.damage)
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    mp = r["appends_per_s_micropython_emulated"]
    rows = [
        ("cut points tested (double cuts)", "%d (%d) over %d workloads, %.0f s"
         % (r["cut_points"], r["double_cuts"], r["cut_workloads"], r["cut_seconds"])),
        ("invariant violations", r["violations"]),
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
    _print_goals('goals:', r["goals"])
    for v in r["violation_examples"] + r["damage_violation_examples"]:
        print("  violation: " + v)
    return 0


def _bench_sync(a):
    from hil.bench import bench_sync
    from hil.harness.mosquitto import Mosquitto, find_mosquitto
    m = None
    broker = a.broker
    if not broker and find_mosquitto():
        m = Mosquitto().start()          # a private broker on a free loopback port
        broker = m.url
    try:
        r = bench_sync(broker=broker, db=a.db, quick=a.quick, progress=None if a.json else
                       (lambda s: print("  " + s, file=sys.stderr, flush=True)))
    finally:
        if m:
            m.close()
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
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
    _print_goals('goals (issue 5):', r["goals"])
    return 0


def _bench_payload(a):
    from hil.bench import bench_payload
    r = bench_payload()
    if a.json:
        print(json.dumps(r, indent=2, sort_keys=True))
        return 0
    names = [("ours_bare", "ours, bare batch"), ("ours_cose_mac0", "ours + COSE_Mac0 (HMAC 256/64)"),
             ("ours_cose_mqtt", "ours + COSE + MQTT 3.1.1 PUBLISH, QoS 1, topic"),
             ("senml_cbor", "SenML-CBOR, integer labels, base name/time"),
             ("senml_json", "SenML JSON"), ("sparkplug_b_ddata_aliases", "Sparkplug B DDATA, aliases"),
             ("plain_json", "plain JSON")]
    print("tally bench payload: reference batch of %d one-minute records x %d metrics"
          % (r["records"], r["metrics"]))
    print("  %-48s %10s %8s" % ("encoding", "B/record", "x ours"))
    for k, label in names:
        v = r["bytes_per_record"][k]
        print("  %-48s %10s %8s" % (label, "-" if v is None else "%.2f" % v,
                                     "-" if v is None else "%.1f" % r["ratio_to_ours_end_to_end"][k]))
    print("  (x ours: against ours end to end, MAC and MQTT framing included)")
    mp = r["encode_us_per_batch_micropython"]
    print("  encode + MAC per batch: %d us CPython, %s MicroPython unix port (medians)"
          % (r["encode_us_per_batch_cpython"], "%d us" % mp if mp else "micropython not found"))
    _print_goals('goals:', r["goals"])
    return 0


def add(sub):
    b = sub.add_parser("bench", help="benchmarks that print figures (tally bench ring|payload|sync|soak|drivers|footprint|hostile)",
                       description="Measure and print figures; nothing is asserted. "
                       "ring: power-cut and silent-damage points and violations, appends/s on CPython and the "
                       "MicroPython unix port, write amplification, wear spread, projected flash "
                       "life, recovery reads, capacity. payload: bytes per record of our signed batches "
                       "against SenML-CBOR, SenML JSON, Sparkplug B and plain JSON, and encode times. "
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
                       "installed, the 32-bit WebAssembly port (see docs/firmware.md).")
    b.add_argument("what", choices=("ring", "payload", "sync", "soak", "drivers", "footprint", "hostile"),
                   help="what to measure")
    b.add_argument("--broker", help="sync: a broker to drain through (default: start a private mosquitto)")
    b.add_argument("--db", help="sync: also measure collector ingest into this PostgreSQL database "
                   "(a URL; use a scratch database); soak: the ledger (SQLite path or "
                   "postgresql:// URL; default a fresh SQLite file)")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--quick", action="store_true",
                   help="sync: one run of each and a one-day backlog (checks that it runs; "
                   "the figures are not medians)")
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
    b.add_argument("--cuts", type=int, default=100000, help="power-cut points to test (default 100000)")
    b.add_argument("--damage", type=int, default=100000,
                   help="ring: silent-damage points to test (default 100000)")
    b.add_argument("--days", type=float, default=60, help="simulated days of the agent on 1 MiB (default 60)")
    b.set_defaults(func=run)
