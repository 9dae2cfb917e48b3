"""`tally bench payload`: the bytes per record every shipped profile sends at
its default settings (the real agent on the emulated board, its messages as
published), and the reference batch: our CBOR/COSE batch against JSON, SenML
and Sparkplug B for the same records, and the encode time on both
interpreters."""
import os
import statistics
import subprocess
import tempfile
import time

from hil.bench import print_goals
from hil.harness import mpbuild


MP_ENCODE = """
import time
from hil import refbatch as R
from agent import batch, cose
recs = R.log_records(R.records())
key = b"k" * 16
t = []
for _ in range(15):
    t0 = time.ticks_us()
    cose.mac0(batch.encode(recs, R.METRICS), key, "compressor-0042")
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


PROFILES = ("compressor", "luminaire", "pump")


def defaults():
    """The settings a device runs when its config names none: interval and
    sample period as `tally run` and the firmware default them, the uplink's
    batch settings as agent/sync.py's Uplink defaults them."""
    import inspect
    from agent.cli.toml_config import defaults as run_defaults
    from agent.sync import Uplink
    d = run_defaults()
    p = inspect.signature(Uplink.__init__).parameters
    return {"interval_s": d["interval_s"], "sample_ms": d["sample_ms"],
            "batch_max": p["batch_max"].default, "max_latency_s": p["max_latency_ms"].default // 1000,
            "window": p["window"].default}


def _group(schema):
    """Each metric's group in the breakdown: sensor, error or system."""
    from agent.agent import SYSTEM_METRICS
    from agent.channels import ERROR_METRICS
    err = set(m[0] for m in ERROR_METRICS)
    sys_ = set(m[0] for m in SYSTEM_METRICS)
    return ["errors" if m[0] in err else "system" if m[0] in sys_ else "sensors" for m in schema]


def profile_payload(profile, hours=24.0, seed=1, settings=None, keep=None):
    """The real agent of one profile on the emulated board for `hours`
    simulated hours at the default settings, syncing to an embedded collector
    that acks; every data message as published is measured. Returns its
    figures: records, batches, bytes per record bare / COSE / MQTT, and where
    the bytes go per record (MQTT framing and topic, COSE, batch header, dt,
    sensor, error and system columns). keep: a list that gets every message
    the device published, (topic, bytes)."""
    import shutil
    import cbor2
    from agent import batch, cose
    from agent.agent import Agent
    from agent.clock import VirtualClock
    from agent.collector.store import Collector
    from agent.log import file_log
    from boards.emulated import Emulation
    from hil.loopback import Hub
    s = settings or defaults()
    device = profile + "-0042"
    master = b"tally-bench-payload-key"
    key = cose.device_key(master, device)
    collector = Collector(":memory:", keys=lambda dev: cose.device_key(master, dev))
    sent = []

    class Tap(Hub):
        def deliver(self, topic, payload):
            sent.append((topic, bytes(payload)))
            Hub.deliver(self, topic, payload)

    hub = Tap(collector)
    clock = VirtualClock()
    world = Emulation(clock, seed=seed, profile=profile)
    d = tempfile.mkdtemp(prefix="tally-payload-")
    try:
        log = file_log(os.path.join(d, "log.bin"), device, capacity=1 << 20, durable=False)
        ag = Agent(device, world.channels(), log, clock, transport=hub.transport(device),
                   interval_ms=s["interval_s"] * 1000, sample_ms=s["sample_ms"],
                   uplink_opts={"key": key, "batch_max": s["batch_max"],
                                "max_latency_ms": s["max_latency_s"] * 1000, "window": s["window"]}).start()
        schema = ag.meter.schema
        end = int(hours * 3600000)
        t = 0
        while t < end:
            t += s["sample_ms"]
            clock.advance_ms(s["sample_ms"])
            ag.tick()
        ag.stop()
    finally:
        world.close()
        collector.close()
        shutil.rmtree(d, ignore_errors=True)
    if keep is not None:
        keep.extend(sent)
    groups = _group(schema)
    where = {"mqtt": 0, "cose": 0, "header": 0, "dt": 0, "sensors": 0, "errors": 0, "system": 0, "ext": 0}
    recs = batches = bare = signed = mqtt = 0
    seen = set()
    sizes = []
    for topic, msg in sent:
        if not topic.endswith("/data"):
            continue
        inner = cose.verify(msg, key, device)
        obj, ext = batch.split_ext(cbor2.loads(inner), len(schema))
        rows = batch.decode(obj)
        batches += 1
        for r in rows:
            seen.add(r["seq"])
        recs += len(rows)
        sizes.append(len(rows))
        bare += len(inner)
        signed += len(msg)
        m = _mqtt_publish_len(topic, len(msg))
        mqtt += m
        where["mqtt"] += m - len(msg)
        where["cose"] += len(msg) - len(inner)
        if ext is not None:
            where["ext"] += len(cbor2.dumps(ext))       # stress histograms (1), component events (2)
        where["header"] += len(inner) - sum(len(cbor2.dumps(c)) for c in obj[12:]) - (
            len(cbor2.dumps(ext)) if ext is not None else 0)
        where["dt"] += len(cbor2.dumps(obj[12]))
        for j, c in enumerate(obj[13:]):
            where[groups[j]] += len(cbor2.dumps(c))
    if not recs:
        raise RuntimeError("bench payload: %s sent no data in %g simulated hours" % (profile, hours))
    sizes.sort()
    return {"metrics": len(schema), "records": recs, "unique_records": len(seen), "batches": batches,
            "records_per_batch_median": sizes[len(sizes) // 2], "device": device,
            "bare": round(bare / recs, 2), "cose_mac0": round(signed / recs, 2),
            "cose_mqtt": round(mqtt / recs, 2),
            "where": {k: round(v / recs, 2) for k, v in where.items()}}


def bench_payload(device="compressor-0042", hours=24.0, micropython=True):
    import json
    import cbor2
    from agent import batch, cose
    from hil import refbatch as R
    rows = R.records()
    recs = R.log_records(rows)
    n = len(rows)
    key = bytes(range(16))
    bare = batch.encode(recs, R.METRICS)
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
    out["identity"] = _identity_cost(recs, bare, n)
    ours = per["ours_cose_mqtt"]
    out["ratio_to_ours_end_to_end"] = {k: (round(v / ours, 1) if v else None) for k, v in per.items()}
    # the record content must survive: decode ours back
    assert [r["values"] for r in batch.decode(cbor2.loads(cose.verify(signed, key, device)))] == rows
    # encode time per batch (encode + MAC), medians
    ts = []
    for _ in range(101):
        t0 = time.perf_counter()
        cose.mac0(batch.encode(recs, R.METRICS), key, device)
        ts.append(time.perf_counter() - t0)
    out["encode_us_per_batch_cpython"] = round(statistics.median(ts) * 1e6)
    mp = mpbuild.tool("micropython") if micropython else None
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
    out["settings"] = defaults()
    out["hours"] = hours
    out["profiles"] = {}
    for p in PROFILES:
        f = out["profiles"][p] = profile_payload(p, hours)
        per[p] = f["cose_mqtt"]
    # stress histograms: what ext key 1 adds on the wire, per profile (no swap in these runs)
    out["hist_bytes_per_record_by_profile"] = {p: out["profiles"][p]["where"]["ext"] for p in PROFILES}
    out["hist_bytes_per_record"] = max(out["hist_bytes_per_record_by_profile"].values())
    out["goals"] = {
        "identity adds <= 2 B/record": out["identity"]["steady_B_per_record"] <= 2,
        "every shipped profile <= 16 B/record end to end at its defaults":
            all(per[p] <= 16 for p in PROFILES),
        "<= 16 B/record end to end (reference batch)": ours <= 16,
        "stress histograms <= 2 B/record (issue 15)": out["hist_bytes_per_record"] <= 2,
        ">= 7x smaller than SenML-CBOR": per["senml_cbor"] / ours >= 7,
        "stretch: <= 11 B/record": ours <= 11,
    }
    return out


def _identity_cost(recs, bare, n):
    """What component identity (agent/parts.py) adds to the reference batch:
    the part_faults odometer column (zero while nothing is wrong), and a
    batch that carries a swap (a removed and an installed event, ext key 2,
    with the asset's odometers)."""
    from agent import batch, cbor
    from agent.log import R_VALUES
    from hil import refbatch as R
    plus = []
    for r in recs:
        r = list(r)
        r[R_VALUES] = list(r[R_VALUES]) + [0]
        plus.append(r)
    steady = batch.encode(plus)
    odo = {m[0]: recs[-1][R_VALUES][j] for j, m in enumerate(R.METRICS) if m[3] in ("odo", "odometer")}
    seq = recs[0][0] + n // 2
    evs = [[seq, 0, "removed", "sht3x@0x44", "sht3x-1a2b3c4d", R.T0 + 1800, odo, "swap"],
           [seq, 1, "installed", "sht3x@0x44", "sht3x-5e6f7081", R.T0 + 1800, odo, "swap"]]
    swap = batch.encode(plus, ext=[(2, cbor.dumps(evs))])
    return {"steady_B_per_record": round((len(steady) - len(bare)) / n, 3),
            "swap_batch_extra_B": len(swap) - len(steady)}


WHERE = ("mqtt", "cose", "header", "dt", "sensors", "errors", "system", "ext")


def report(r):
    """Print bench_payload's figures: the table `tally bench payload` shows (--json prints the
    result itself)"""
    names = [("ours_bare", "ours, bare batch"), ("ours_cose_mac0", "ours + COSE_Mac0 (HMAC 256/64)"),
             ("ours_cose_mqtt", "ours + COSE + MQTT 3.1.1 PUBLISH, QoS 1, topic"),
             ("senml_cbor", "SenML-CBOR, integer labels, base name/time"),
             ("senml_json", "SenML JSON"), ("sparkplug_b_ddata_aliases", "Sparkplug B DDATA, aliases"),
             ("plain_json", "plain JSON")]
    st = r["settings"]
    print("tally bench payload: each shipped profile's schema, as the agent sends it at the defaults "
          "(interval %d s, sample %d ms, batch_max %d, max_latency %d s), %g simulated hours"
          % (st["interval_s"], st["sample_ms"], st["batch_max"], st["max_latency_s"], r["hours"]))
    print("  %-11s %7s %9s %7s %7s %7s  | where per record: %s" % (
        "profile", "metrics", "rec/batch", "bare", "+COSE", "+MQTT",
        " ".join("%6s" % k for k in WHERE)))
    for p, f in r["profiles"].items():
        print("  %-11s %7d %9d %7.2f %7.2f %7.2f  |                   %s" % (
            p, f["metrics"], f["records_per_batch_median"], f["bare"], f["cose_mac0"], f["cose_mqtt"],
            " ".join("%6.2f" % f["where"][k] for k in WHERE)))
    print("  (B/record; MQTT: PUBLISH framing and topic tally/v1/<profile>-0042/data, QoS 1)")
    print("tally bench payload: reference batch of %d one-minute records x %d metrics"
          % (r["records"], r["metrics"]))
    print("  %-48s %10s %8s" % ("encoding", "B/record", "x ours"))
    for k, label in names:
        v = r["bytes_per_record"][k]
        print("  %-48s %10s %8s" % (label, "-" if v is None else "%.2f" % v,
                                     "-" if v is None else "%.1f" % r["ratio_to_ours_end_to_end"][k]))
    print("  (x ours: against ours end to end, MAC and MQTT framing included)")
    i = r["identity"]
    print("  component identity: +%.3f B/record (the part_faults column); a batch carrying a swap"
          " +%d B (two events)" % (i["steady_B_per_record"], i["swap_batch_extra_B"]))
    mp = r["encode_us_per_batch_micropython"]
    print("  encode + MAC per batch: %d us CPython, %s MicroPython unix port (medians)"
          % (r["encode_us_per_batch_cpython"], "%d us" % mp if mp else "micropython not found"))
    print("  stress histograms (ext key 1) in the profiles' batches above: %s B/record"
          % ", ".join("%s %.2f" % (p, v) for p, v in sorted(r["hist_bytes_per_record_by_profile"].items())))
    print_goals('goals:', r["goals"])
    return 0
