"""`tally bench payload`: our CBOR/COSE batch against JSON, SenML and
Sparkplug B for the same records, and the encode time on both interpreters."""
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


def hist_bytes(profile, days=1.0, seed=7):
    """Extra wire bytes the stress histograms (ext key 1) add per record, for
    one emulated asset run by the real agent at the default batch settings
    (batch_max 60, max_latency 15 min, one-minute intervals, 5 s samples),
    through the in-process collector: (bytes per record, batches, records)."""
    import cbor2
    from agent import batch, cose
    from agent.agent import Agent
    from agent.clock import VirtualClock
    from agent.collector.store import Collector
    from agent.log import RingLog
    from boards.emulated import Emulation
    from hil.loopback import Hub
    from hil.nor import EmulatedNOR
    key = bytes(range(16))
    dev = "hist-" + profile
    col = Collector(keys={dev: key}.get)
    hub = Hub(col)
    extra = [0, 0, 0]
    real = hub.deliver

    def deliver(topic, payload):
        if topic.endswith("/data"):
            obj = cbor2.loads(cose.verify(payload, key, dev))
            ncols = len(ag.meter.schema)
            bare, ext = batch.split_ext(obj, ncols)
            if ext is not None:
                extra[0] += len(cose.verify(payload, key, dev)) - len(cbor2.dumps(bare))
            extra[1] += 1
            extra[2] += obj[11]
        return real(topic, payload)
    hub.deliver = deliver
    clock = VirtualClock()
    ag = Agent(dev, Emulation(clock, seed=seed, profile=profile).channels(),
               RingLog(EmulatedNOR(4096, 64), dev), clock, transport=hub.transport(dev),
               interval_ms=60000, sample_ms=5000, uplink_opts={"key": key}).start()
    for _ in range(int(days * 86400 // 5)):
        clock.advance_ms(5000)
        ag.tick()
    return round(extra[0] / max(1, extra[2]), 2), extra[1], extra[2]


def bench_payload(device="compressor-0042", hist_days=1.0):
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
    # stress histograms: what ext key 1 adds on the wire, per asset profile
    per_profile = {}
    for prof in ("compressor", "luminaire", "pump"):
        b, nb, nr = hist_bytes(prof, hist_days)
        per_profile[prof] = {"bytes_per_record": b, "batches": nb, "records": nr}
    out["hist_bytes_per_record_by_profile"] = per_profile
    out["hist_bytes_per_record"] = max(v["bytes_per_record"] for v in per_profile.values())
    out["hist_days"] = hist_days
    out["goals"] = {
        "<= 16 B/record end to end": ours <= 16,
        "stress histograms <= 2 B/record (issue 15)": out["hist_bytes_per_record"] <= 2,
        ">= 7x smaller than SenML-CBOR": per["senml_cbor"] / ours >= 7,
        "stretch: <= 11 B/record": ours <= 11,
    }
    return out


def report(r):
    """Print bench_payload's figures: the table `tally bench payload` shows (--json prints the
    result itself)"""
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
    print("  stress histograms (ext key 1), %.1f simulated days at the default batch settings:"
          % r["hist_days"])
    for prof, v in sorted(r["hist_bytes_per_record_by_profile"].items()):
        print("    %-12s %5.2f B/record  (%d batches, %d records)"
              % (prof, v["bytes_per_record"], v["batches"], v["records"]))
    print_goals('goals:', r["goals"])
    return 0
