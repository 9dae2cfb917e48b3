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
    out["identity"] = _identity_cost(recs, bare, n)
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
        "identity adds <= 2 B/record": out["identity"]["steady_B_per_record"] <= 2,
        "<= 16 B/record end to end": ours <= 16,
        ">= 7x smaller than SenML-CBOR": per["senml_cbor"] / ours >= 7,
        "stretch: <= 11 B/record": ours <= 11,
    }
    return out


def _identity_cost(recs, bare, n):
    """What component identity (agent/parts.py) adds to the reference batch:
    the part_faults odometer column (zero while nothing is wrong), and a
    batch that carries a swap (a removed and an installed event, ext key 2,
    with the asset's odometers)."""
    from agent import batch
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
    swap = batch.encode(plus, {2: evs})
    return {"steady_B_per_record": round((len(steady) - len(bare)) / n, 3),
            "swap_batch_extra_B": len(swap) - len(steady)}


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
    i = r["identity"]
    print("  component identity: +%.3f B/record (the part_faults column); a batch carrying a swap"
          " +%d B (two events)" % (i["steady_B_per_record"], i["swap_batch_extra_B"]))
    mp = r["encode_us_per_batch_micropython"]
    print("  encode + MAC per batch: %d us CPython, %s MicroPython unix port (medians)"
          % (r["encode_us_per_batch_cpython"], "%d us" % mp if mp else "micropython not found"))
    print_goals('goals:', r["goals"])
    return 0
