"""`tally simulate`: emulated devices on a virtual clock, the ledger reconciled."""
import json
import sys

from agent.cli.common import err, scaled

USAGE_HIDE = {"err_nack", "err_crc", "err_timeout", "err_range", "sync_ok", "sync_tries",
              "fail_conn", "fail_pub", "republished", "bad_acks", "bad_configs", "bytes_sent", "overruns",
              "log_errors", "coalesced", "dropped", "backoffs"}


def run(a):
    from hil.harness.sim import simulate
    progress = None if a.json or a.quiet else (lambda s: print("  " + s, file=sys.stderr))
    if a.fleet:
        return _fleet(a, progress)
    a.days = 1.0 if a.days is None else a.days
    a.interval = 60 if a.interval is None else a.interval
    a.sample = 5 if a.sample is None else a.sample
    try:
        rep = simulate(devices=a.devices, days=a.days, broker=a.broker, loss=a.loss, seed=a.seed,
                       interval_s=a.interval, sample_s=a.sample, reboot_every_h=a.reboot_every, outage_h=a.outage,
                       log_kib=a.log_kib, db=a.db or ":memory:", serial=a.serial,
                       durable=a.durable, progress=progress, profile=a.profile)
    except (ValueError, ConnectionError, OSError) as e:
        return err("simulate: %s" % e)
    if a.json:
        print(json.dumps(rep, indent=2, sort_keys=True))
    else:
        _print_sim(rep)
    return 0 if rep["reconciled"] else 1


FLEET_DAYS = 365.0


def _fleet(a, progress):
    """The mixed fleet (hil/harness/fleet.py) into a ledger that `tally life` reads."""
    import time
    from hil.harness import fleet
    if not a.db:
        return err("simulate: --fleet needs --db FILE (the ledger `tally life --db FILE` reads afterwards)")
    if a.broker or a.loss or a.outage or a.reboot_every:
        return err("simulate: --fleet runs embedded, without --broker, --loss, --outage or --reboot-every")
    days = FLEET_DAYS if a.days is None else a.days
    t0 = time.monotonic()
    if progress:
        tick = progress
        progress = lambda s: tick("%s (%.0f s)" % (s, time.monotonic() - t0))   # noqa: E731
    try:
        rep = fleet.run(days=days, db=a.db, seed=a.seed, interval_s=3600 if a.interval is None else a.interval,
                        sample_s=60 if a.sample is None else a.sample, progress=progress, serial=a.serial)
    except (ValueError, OSError) as e:
        return err("simulate: %s" % e)
    if a.json:
        print(json.dumps({k: rep[k] for k in ("reconciled", "fleet", "events", "devices", "part_events",
                                              "elapsed_s", "simulated_days")}, indent=2, sort_keys=True))
        return 0 if rep["reconciled"] else 1
    print("Tally fleet simulation: %d assets x %g days, %.1f s" % (len(rep["fleet"]), days, rep["elapsed_s"]))
    print()
    ok = {d["device_id"]: d["reconciled"] for d in rep["devices"]}
    _table(["asset", "profile", "site", "duty", "ledger"],
           [[f["id"], f["profile"], f["site"], f["duty"], "OK" if ok.get(f["id"]) else "MISMATCH"]
            for f in rep["fleet"]])
    print("\nWhat happened")
    for e in rep["events"]:
        print("  day %6.2f  %s" % (e["day"], e["what"]))
    print("\nComponent events in the ledger (part_events)")
    _table(["device", "wall_s", "event", "slot", "component"], rep["part_events"])
    print("\n" + ("All devices reconcile." if rep["reconciled"] else "NOT RECONCILED."))
    print("Life consumed, remaining life and next use: tally life --db %s" % a.db)
    return 0 if rep["reconciled"] else 1


def _print_sim(rep):
    units = rep["units"]
    cols = [k for k in units if k not in USAGE_HIDE]
    print("Tally simulation: %d devices x %g days, %s collector, %.1f s"
          % (len(rep["devices"]), rep["simulated_days"], rep["mode"], rep["elapsed_s"]))
    print()
    print("Ledger: usage per device and UTC day")
    head = ["device", "day"] + ["%s[%s]" % (c, units[c][0]) for c in cols]
    rows = []
    for dev, days in sorted(rep["ledger"].items()):
        for day, use in sorted(days.items()):
            rows.append([dev, day] + [scaled(use.get(c, 0), units[c][1]) for c in cols])
    _table(head, rows)
    from agent.collector import labels
    legend = labels.legend(cols, units=False)
    if legend:
        print("  (%s)" % "; ".join(legend))
    print()
    print("Reconciliation: device odometers against ledger totals")
    head = ["device", "odometers", "logged", "sent", "in ledger", "dups ignored",
            "republished", "coalesced", "dropped", "gaps", "result"]
    rows = []
    for d in rep["devices"]:
        odo = d["odometers"]
        eq = sum(1 for v in odo.values() if v["ok"])
        rows.append([d["device_id"], "%d/%d equal" % (eq, len(odo)), d["records_logged"],
                     d["records_sent"], d["records_in_ledger"], d["duplicates_ignored"],
                     d["republished"], d["coalesced"], d["dropped"], d["gaps"],
                     "OK" if d["reconciled"] else "MISMATCH"])
    _table(head, rows)
    for d in rep["devices"]:
        for name, v in d["odometers"].items():
            if not v["ok"]:
                print("  %s %s: device %d, ledger %d" % (d["device_id"], name, v["device"], v["ledger"]))
    if rep.get("part_events"):
        print("\nComponent events in the ledger (part_events)")
        _table(["device", "wall_s", "event", "slot", "component"], rep["part_events"])
    if rep.get("stress"):
        print("\nStress histograms: the newest snapshot in the ledger (cumulative, per bin)")
        for dev, st in sorted(rep["stress"].items()):
            print("  %s%s" % (dev, "" if st["device_matches"] is not False else
                              "  (DIFFERS from the device's acked snapshot)"))
            for line in st["lines"]:
                print("  " + line)
    if "messages_lost" in rep:
        print("\nmessages lost in transit (injected): %d" % rep["messages_lost"])
    print("\n" + ("All devices reconcile." if rep["reconciled"] else "NOT RECONCILED."))


def _table(head, rows):
    w = [len(str(h)) for h in head]
    for r in rows:
        for i, c in enumerate(r):
            w[i] = max(w[i], len(str(c)))
    fmt = "  ".join("%%-%ds" % x for x in w)
    print(fmt % tuple(head))
    for r in rows:
        print(fmt % tuple(str(c) for c in r))


# -- run -------------------------------------------------------------------------------


def add(sub):
    s = sub.add_parser("simulate", help="run emulated devices on a virtual clock and reconcile the ledger",
                       description="Run N emulated compressors for D simulated days through the real "
                       "agent, log and collector; print the ledger and a reconciliation. Exit 1 if any "
                       "device does not reconcile.")
    s.add_argument("--devices", type=int, default=3, help="number of devices (default 3)")
    s.add_argument("--days", type=float, help="simulated days (default 1; with --fleet 365)")
    s.add_argument("--broker", help="MQTT broker URL, e.g. mqtt://127.0.0.1:1883; "
                   "default: an embedded in-process collector")
    s.add_argument("--json", action="store_true", help="print one JSON object with a top-level 'reconciled'")
    s.add_argument("--loss", type=float, default=0.0,
                   help="embedded mode: probability that a message or ack is lost (default 0)")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--interval", type=float, help="record interval in seconds (default 60; with --fleet 3600)")
    s.add_argument("--sample", type=float, help="sample period in seconds (default 5; with --fleet 60)")
    s.add_argument("--reboot-every", type=float, default=0.0, metavar="HOURS",
                   help="reboot each device about every HOURS simulated hours (default never)")
    s.add_argument("--outage", type=float, default=0.0, metavar="HOURS",
                   help="embedded mode: the uplink is down for HOURS from a quarter of the run; "
                   "devices store and forward (default 0)")
    s.add_argument("--log-kib", type=int, default=256, help="log capacity per device in KiB (default 256)")
    s.add_argument("--db", help="SQLite file for the ledger (default in memory); one that already holds "
                   "the simulated device ids (sim-001, ...) is refused, so a second run never bills them twice")
    s.add_argument("--profile", choices=("compressor", "luminaire", "pump"), default="compressor",
                   help="the asset on the emulated board: a compressor (air, m3), a luminaire "
                   "(light, lux-hours) or a booster pump (water, m3, from its water meter) (default compressor)")
    s.add_argument("--serial", choices=("loopback", "pty"), default="loopback",
                   help="Modbus line: in-process loopback (default) or a real pseudo-terminal")
    s.add_argument("--durable", action="store_true", help="fsync every log append (slower)")
    s.add_argument("--fleet", action="store_true",
                   help="the mixed fleet instead (docs/life.md): compressors, luminaires and pumps at hot, mild "
                   "and cool sites under heavy and light duty, a sensor that fails and is replaced, a part moved "
                   "to another asset, a failing bearing; needs --db; then `tally life --db` on it")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    s.set_defaults(func=run)
