"""Fleet simulation on the virtual clock (CPython): N emulated compressors run
the real agent (drivers, meter, log, uplink) for D simulated days, syncing
either in-process to an embedded collector or through a real MQTT broker,
and the result is reconciled against the collector's ledger."""
import os
import shutil
import tempfile
import time

from agent import cose
from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector.store import Collector
from agent.log import file_log
from agent.sync import HEALTH
from boards.emulated import Emulation
from hil.loopback import Hub
from hil.rng import Rng

DAY_MS = 86400000


class SimDevice:
    def __init__(self, device_id, index, workdir, transport, seed, opts):
        self.id = device_id
        self.clock = VirtualClock()
        self.world = self.make_world(seed + index, opts)
        self.log_path = os.path.join(workdir, device_id + ".log")
        self.transport = transport
        self.opts = opts
        self.boots = 0
        self.agent = None
        self.records = 0
        self.sent = 0          # across boots
        self.republished = 0
        self._start("poweron")

    def _start(self, reason):
        o = self.opts
        log = file_log(self.log_path, self.id, capacity=o["log_capacity"], durable=o["durable"])
        chans = self.world.channels()
        if o.get("parts", True):
            from agent.parts import Parts
            chans.append(Parts(self.slots(chans)))
        self.agent = Agent(self.id, chans, log, self.clock,
                           transport=self.transport, interval_ms=o["interval_ms"],
                           sample_ms=o["sample_ms"], reason=reason, stress=o.get("stress"),
                           uplink_opts={"ack_timeout_ms": o["ack_timeout_ms"],
                                        "key": cose.device_key(o["master"], self.id)}).start()
        self.boots += 1

    def make_world(self, seed, opts):
        return Emulation(self.clock, seed=seed, serial=opts["serial"], profile=opts["profile"],
                         swaps=opts.get("parts", True), tags=opts.get("parts", True))

    def slots(self, chans):
        """The identity slots of the device's parts (agent/parts.py)."""
        from agent.parts import slots_for
        return slots_for(chans, self.world.tags())

    def reboot(self):
        self.records += self.agent.records
        self.sent += self.agent.uplink.sent_records
        self.republished += self.agent.uplink.h["republished"]
        self.agent.stop()
        self.transport.close()
        self.clock.reboot()
        self._start("deliberate")

    def close(self):
        self.records += self.agent.records
        self.agent.stop()
        self.transport.close()
        self.world.close()


def simulate(devices=3, days=2.0, broker=None, loss=0.0, seed=1, interval_s=60,
             sample_s=5, reboot_every_h=0.0, outage_h=0.0, log_kib=256, db=":memory:", workdir=None,
             serial="loopback", durable=False, progress=None, drain_timeout_s=60.0, tls=None,
             profile="compressor", ids=None, make_device=None, on_step=None, progress_every_ms=DAY_MS // 2):
    """Run the fleet; returns the report dict (see reconcile()). With an
    mqtts:// broker, tls(name) gives the TLS settings of each device id and of
    "collector" (hil.harness.pki.TestPKI.tls_for). The mixed fleet
    (hil/harness/fleet.py) gives its own device ids, a make_device(id, index,
    workdir, transport, seed, opts) and on_step(t_ms, devices), called after
    each step."""
    if devices < 1 or days <= 0:
        raise ValueError("simulate: need at least one device and a positive number of days")
    own_dir = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="tally-sim-")
    master = b"tally-sim-master-%d" % seed      # the fleet's key material, for the simulation
    collector = Collector(db, keys=lambda dev: cose.device_key(master, dev))
    ids = ids or ["sim-%03d" % (i + 1) for i in range(devices)]
    held = sorted(set(ids) & set(collector.devices()))
    if held:
        # Their logs are new, so their records would be new keys: a second run
        # into the same ledger would bill these devices twice. Refuse instead.
        collector.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise ValueError("the ledger %s already holds %s from an earlier run: simulating again into it "
                         "would bill them twice; give a new --db" % (db, ", ".join(held)))
    service = None
    hub = None
    opts = {"serial": serial, "profile": profile, "log_capacity": log_kib * 1024, "durable": durable,
            "interval_ms": int(interval_s * 1000), "sample_ms": int(sample_s * 1000),
            "ack_timeout_ms": 30000, "master": master}
    if broker:
        from agent.collector.service import CollectorService
        from agent.port.mqtt_paho import PahoTransport
        service = CollectorService(broker, collector, tls=tls("collector") if tls else None)
        service.start()
        service.wait_ready(10)

        def make_transport(dev_id):
            return PahoTransport(dev_id, broker, tls=tls(dev_id) if tls else None)
    else:
        hub = Hub(collector, loss=loss, seed=seed)
        make_transport = hub.transport
    fleet = []
    t_start = time.monotonic()
    try:
        for i, dev_id in enumerate(ids):
            fleet.append((make_device or SimDevice)(dev_id, i, workdir, make_transport(dev_id), seed, opts))
        total = int(days * DAY_MS)
        step = opts["sample_ms"]
        rng = Rng(seed + 99)
        reboot_ms = int(reboot_every_h * 3600000)
        next_reboot = [rng.below(reboot_ms) + reboot_ms // 2 if reboot_ms else None for _ in fleet]
        next_report = 0
        # An uplink outage (embedded mode): the path to the collector is down
        # from a quarter of the run for outage_h hours; devices keep logging.
        out_from = total // 4
        out_to = out_from + int(outage_h * 3600000)
        t = 0
        while t < total:
            t += step
            if hub is not None and outage_h:
                hub.down = out_from <= t < out_to
            for k, d in enumerate(fleet):
                d.clock.advance_ms(step)
                d.agent.tick()
                if next_reboot[k] is not None and t >= next_reboot[k]:
                    d.reboot()
                    next_reboot[k] = t + reboot_ms // 2 + rng.below(reboot_ms)
            if on_step is not None:
                on_step(t, fleet)
            if service is not None:
                service.pump()
                _await_acks(fleet, service, 2.0)
            if progress and t >= next_report:
                progress("simulated %.1f of %g days" % (t / DAY_MS, days))
                next_report += progress_every_ms
        # Drain: log the partial interval, flush what is pending, wait for every ack.
        deadline = time.monotonic() + drain_timeout_s
        for d in fleet:
            d.agent.close_now()
            d.agent.uplink.flush = True
        while not all(d.agent.uplink.idle() for d in fleet) and time.monotonic() < deadline:
            for d in fleet:
                d.clock.advance_ms(1000)
                d.agent.uplink.step(d.clock.uptime_ms())
            if service is not None:
                service.pump()
                _await_acks(fleet, service, 0.5)
        report = reconcile(fleet, collector)
        report["elapsed_s"] = round(time.monotonic() - t_start, 2)
        report["simulated_days"] = days
        report["outage_h"] = outage_h
        report["mode"] = "broker " + broker if broker else "embedded"
        if hub is not None:
            report["messages_lost"] = hub.dropped
        report["ledger"] = collector.ledger()
        from agent.collector import parts as ledger_parts
        report["part_events"] = [[e["device"], e["wall_s"], e["kind"], e["slot"], e["component"]]
                                 for e in ledger_parts.history(collector._b)]
        report["units"] = _units(collector, fleet)
        report["stress"] = _stress(collector, fleet)
        return report
    finally:
        for d in fleet:
            d.close()
        if service is not None:
            service.stop()
        collector.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _await_acks(fleet, service, timeout):
    """With a real broker acks arrive in real time: give them a moment so the
    virtual clock does not race ahead into ack timeouts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = [d for d in fleet if d.agent.uplink.inflight and d.transport.connected()]
        if not waiting:
            return
        service.pump(0.002)
        for d in waiting:
            d.agent.uplink.step(d.clock.uptime_ms())


def _stress(collector, fleet):
    """Each device's stress histograms as the ledger has them (newest
    snapshot): {device: {"lines": readable lines, "hists": {name: {seq,
    counts}}, "device_matches": the device's newest acked snapshot agrees}}."""
    from agent.collector import stress as cs
    from agent.stress import DEFS
    out = {}
    for d in fleet:
        rows = cs.latest(collector, d.id)
        if not rows:
            continue
        hists = {r[0]: {"seq": r[7], "counts": r[8], "kind": r[1], "unit": r[2]} for r in rows}
        st = d.agent.stress
        snap = d.agent.log.hist
        match = None
        if st is not None and snap is not None and snap[0] <= d.agent.log.acked:
            match = True
            for h in st.on:
                o = st.off[h]
                dev = [int.from_bytes(snap[2][4 * j:4 * j + 4], "little") for j in range(o, o + DEFS[h][4])]
                led = hists.get(DEFS[h][0])
                if led is None or (led["seq"] <= snap[0] and led["counts"] != dev):
                    match = False
        out[d.id] = {"lines": cs.report(collector, d.id), "hists": hists, "device_matches": match}
    return out


def _units(collector, fleet):
    for d in fleet:
        s = collector.schema(d.id, d.agent.meter.id)
        if s:
            return {m[0]: [m[1], m[2]] for m in s if m[3] == "odometer"}
    return {}


# The uplink's own counters keep counting the acks of the final batches after
# the last record is logged; no record can carry that, so they are compared as
# of the last logged record. Every other odometer is compared live.
UPLINK_COUNTERS = HEALTH


def reconcile(fleet, collector):
    devs = []
    ok_all = True
    for d in fleet:
        m = d.agent.meter
        log = d.agent.log
        s = collector.summary(d.id)
        e = s["epochs"].get(log.epoch, {"totals": {}, "records": 0, "covered": 0, "gaps": 0,
                                          "coalesced": 0, "dropped": 0, "gap_ranges": []})
        odos = {}
        ok = True
        last = log.last[10] if log.last is not None else [0] * m.n
        for i, name in enumerate(m.names):
            if m.is_odometer(i):
                dev_v = last[i] if name in UPLINK_COUNTERS else m.values[i]
                led_v = e["totals"].get(name, 0)
                odos[name] = {"device": dev_v, "ledger": led_v, "ok": dev_v == led_v}
                ok = ok and dev_v == led_v
        logged = log.next_seq - log.epoch_seq0
        row = {
            "device_id": d.id, "epoch": log.epoch, "boots": log.boot,
            "records_logged": logged, "records_sent": d.sent + d.agent.uplink.sent_records,
            "republished": d.republished + d.agent.uplink.h["republished"],
            "records_in_ledger": e["records"], "intervals_covered": e["covered"],
            "duplicates_ignored": s["duplicates"], "rejected": s["rejected"],
            "coalesced": e["coalesced"], "dropped": e["dropped"], "gaps": e["gaps"],
            "unacked": log.depth(), "odometers": odos,
        }
        row["reconciled"] = ok and e["gaps"] == 0 and e["covered"] == logged and log.depth() == 0
        ok_all = ok_all and row["reconciled"]
        devs.append(row)
    return {"reconciled": ok_all, "devices": devs}
