"""Every payload the system produces validates against docs/wire.cddl
(RFC 8610, checked with cddl-verifier), batches round-trip exactly,
including wide and negative integers, and docs/wire.md's byte-level claims
(the COSE_Mac0 head and tag, the batch header positions, each column form,
the ack) hold for the bytes the code writes."""
import os

import cbor2
import pytest
from hypothesis import given, settings, strategies as st

from agent import batch, cose
from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector.store import Collector
from agent.log import RingLog
from boards.emulated import Emulation
from hil.nor import EmulatedNOR
from hil.loopback import Hub

cv = pytest.importorskip("cddl_verifier")
from conftest import ROOT

V = cv.Validator(open(os.path.join(ROOT, "docs", "wire.cddl")).read())
KEY = bytes(range(16))


def valid(data, rule):
    r = V.validate(data, rule)
    assert r.valid, [str(d) for d in r.diagnostics]


class Capturing(Collector):
    def __init__(self):
        Collector.__init__(self, keys={"dev-w": KEY}.get)
        self.seen = []

    def handle(self, topic, payload):
        replies = Collector.handle(self, topic, payload)
        self.seen.append((topic, payload))
        self.seen.extend(replies)
        return replies


def test_every_message_of_a_running_agent_validates():
    clock = VirtualClock()
    col = Capturing()
    hub = Hub(col)
    ag = Agent("dev-w", Emulation(clock, seed=2).channels(), RingLog(EmulatedNOR(4096, 16), "dev-w"),
               clock, transport=hub.transport("dev-w"), interval_ms=60000, sample_ms=10000,
               uplink_opts={"key": KEY}).start()
    for _ in range(6 * 180):
        clock.advance_ms(10000)
        ag.tick()
    kinds = {}
    rules = {"birth": "birth", "data": "data-batch", "ack": "ack"}
    for topic, msg in col.seen + [("tally/v1/dev-w/death", ag.uplink.death())]:
        kind = topic.rsplit("/", 1)[1]
        valid(msg, "cose-mac0")
        inner = cose.verify(msg, KEY, "dev-w")
        valid(inner, rules.get(kind, kind))
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds["birth"] >= 1 and kinds["data"] >= 3 and kinds["ack"] >= 3 and kinds["death"] == 1


def test_config_example_validates_and_bad_ones_do_not():
    valid(cbor2.dumps({"v": 1, "version": 4, "interval_s": 300, "batch_max": 30}), "config")
    for bad in ({"v": 1}, {"v": 1, "version": 2, "interval_s": 0}, {"v": 2, "version": 1}):
        assert not V.validate(cbor2.dumps(bad), "config").valid


def test_malformed_batches_do_not_validate():
    ok = [1, 9, 5, 1, 1, 0, 1, 0, 0, 0, 60000, 2, 0, [3, 1]]
    valid(cbor2.dumps(ok), "data-batch")
    for bad in (ok[:5], ok[:12] + [[0, 0], [1.5, 2]], [3] + ok[1:], ok[:9] + [7] + ok[10:],
                ok[:5] + [8] + ok[6:], ok[:2] + [1 << 32] + ok[3:], ok[:11] + [1025] + ok[12:],
                ok[:10] + [0] + ok[11:]):                  # flags 8, epoch 2^32, count 1025, ival 0
        assert not V.validate(cbor2.dumps(bad), "data-batch").valid


def test_the_cddl_says_the_birth_limits_the_collector_checks():
    from agent.collector import validate
    wire = [["run_s", "s", 0, "odometer"]]
    ok = {"v": 1, "device": "d", "fw": "1", "board": "b", "reason": "poweron", "boot": 1, "epoch": 2,
          "seq0": 1, "schema_id": validate.schema_id(wire), "schema": wire, "wall_q": 2, "ival_ms": 0,
          "config": 0, "later": [1]}
    valid(cbor2.dumps(ok), "birth")
    validate.birth(ok, "d")
    for k, v in (("schema", [["=x", "s", 0, "odometer"]]), ("schema", [["x", "s", 10, "odometer"]]),
                 ("schema", [["x", "s", 0, "odo"]]), ("schema", []), ("epoch", 1 << 32), ("wall_q", 4)):
        bad = dict(ok, **{k: v})
        assert not V.validate(cbor2.dumps(bad), "birth").valid, (k, v)
        with pytest.raises(validate.Invalid):
            validate.birth(bad, "d")


ints = st.integers(min_value=-(2 ** 62), max_value=2 ** 62)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ints, min_size=4, max_size=4), min_size=1, max_size=60),
       st.lists(st.integers(-5000, 5000), min_size=60, max_size=60))
def test_batches_round_trip_wide_and_negative_values(rows, jitter):
    log = RingLog(EmulatedNOR(4096, 64), "d").open()
    up = 0
    for i, vals in enumerate(rows):
        up += 60000 + jitter[i] if i else 0
        log.append(9, 3, up, 1767225600 + i * 60, 2, 60000, vals)
    recs = log.pending(1000)
    run = batch.take_run(recs, 60)
    enc = batch.encode(run)
    valid(enc, "data-batch")
    out = batch.decode(cbor2.loads(enc))
    assert [r["values"] for r in out] == [r[10] for r in run]
    assert [r["uptime_ms"] for r in out] == [r[6] for r in run]
    assert [r["seq"] for r in out] == [r[0] for r in run]


def _shaped(kind, v0, d, n, noise):
    if kind == "const":
        return [v0 + i * d for i in range(n)]
    if kind == "sparse":
        out, v = [], v0
        for i in range(n):
            v += d if noise[i] % 7 == 0 else 0
            out.append(v)
        return out
    out, v = [], v0                                  # steady rate with jitter
    for i in range(n):
        v += d + noise[i] % 5 - 2
        out.append(v)
    return out


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["const", "sparse", "steady"]), st.integers(-2 ** 40, 2 ** 40),
       st.integers(-10 ** 6, 10 ** 6), st.integers(1, 60), st.lists(st.integers(0, 1000), min_size=60, max_size=60))
def test_column_forms_round_trip_and_never_lose_to_plain_deltas(kind, v0, d, n, noise):
    from agent import cbor
    vals = _shaped(kind, v0, d, n, noise)
    buf = bytearray()
    batch._column(buf, vals)
    col = cbor.loads(bytes(buf))
    assert batch._expand(col, n, "x") == vals
    plain = cbor.dumps([vals[0]] + [vals[i] - vals[i - 1] for i in range(1, n)])
    assert len(buf) <= len(plain)


def test_three_record_column_never_takes_the_ambiguous_second_difference_form():
    # Found by hypothesis in CI: at n == 3 the form [v0, d1, [dd]] has the
    # length of the delta form and was decoded as deltas.
    log = RingLog(EmulatedNOR(4096, 64), "d").open()
    for i, vals in enumerate([[0, -1, 0, 0], [0, 0, 0, 0], [0, 65536, 0, 0]]):
        log.append(9, 3, i * 60000, 1767225600 + i * 60, 2, 60000, vals)
    run = batch.take_run(log.pending(10), 60)
    out = batch.decode(cbor2.loads(batch.encode(run)))
    assert [r["values"] for r in out] == [r[10] for r in run]


def test_config_and_cfgack_validate_against_the_cddl():
    from agent import cose, remote
    key = bytes(16)
    cfg = {"v": 1, "version": 2, "interval_s": 300, "window": 8, "drain_bps": 500}
    valid(cbor2.dumps(cfg), "config")
    dev = remote.Config()
    ok = dev.offer(cose.mac0(cbor2.dumps(cfg), key, "d"), key, "d")
    valid(ok["ack"], "cfgack")
    assert cbor2.loads(ok["ack"]) == {"v": 1, "version": 2, "ok": True, "active": 2}      # as wire.md writes it
    bad = dev.offer(cose.mac0(cbor2.dumps(dict(cfg, version=3, window=0)), key, "d"), key, "d")
    valid(bad["ack"], "cfgack")
    assert cbor2.loads(bad["ack"]) == {"v": 1, "version": 3, "ok": False, "active": 2,
                                       "reason": "window=0 is not an integer in 1..32"}
    garbled = dev.offer(b"\x00not cose", key, "d")
    valid(garbled["ack"], "cfgack")
    with pytest.raises(AssertionError):
        valid(cbor2.dumps(dict(cfg, window=0)), "config")


# -- docs/wire.md at its documented places: the bytes the code writes -------------------
# The CDDL above says what shape a message has; these read the real bytes where
# wire.md's prose puts them (the COSE head, the batch header positions, each
# column form, the ack), with cbor2 and hashlib as the independent readers.

def _running_agent_messages():
    clock = VirtualClock()
    col = Capturing()
    ag = Agent("dev-w", Emulation(clock, seed=3).channels(), RingLog(EmulatedNOR(4096, 16), "dev-w"),
               clock, transport=Hub(col).transport("dev-w"), interval_ms=60000, sample_ms=10000,
               uplink_opts={"key": KEY}).start()
    for _ in range(6 * 240):
        clock.advance_ms(10000)
        ag.tick()
    return col.seen + [("tally/v1/dev-w/death", ag.uplink.death())]


def test_wire_md_cose_mac0_head_tag_and_overhead_are_the_bytes_sent():
    import hashlib
    import hmac
    msgs = _running_agent_messages()
    overheads = {}
    for topic, msg in msgs:
        # #6.17([ h'A10104', {}, payload, tag ]): tag 17, array of 4, bstr(3) A1 01 04, empty map
        assert msg[:7] == b"\xd1\x84\x43\xa1\x01\x04\xa0", (topic, msg[:7].hex())
        outer = cbor2.loads(msg)
        assert outer.tag == 17
        prot, unprot, payload, tag = outer.value
        assert cbor2.loads(prot) == {1: 4} and unprot == {}
        # tag = HMAC-SHA256(key, ["MAC0", h'A10104', device_id, payload])[0:8], the
        # 8 bytes last in the message behind their bstr head 0x48
        want = hmac.new(KEY, cbor2.dumps(["MAC0", b"\xa1\x01\x04", b"dev-w", payload]), hashlib.sha256).digest()[:8]
        assert tag == want and msg[-9:] == b"\x48" + want
        assert msg[7:-9] == cbor2.dumps(payload)
        overheads[len(msg) - len(payload)] = topic.rsplit("/", 1)[1]
    # "19 bytes per message" for a batch (a payload of 256 B..64 KiB: a 3-byte bstr head)
    assert all(len(m) - len(cbor2.loads(m).value[2]) == 19 for t, m in msgs
               if t.endswith("/data") and 256 <= len(cbor2.loads(m).value[2]) < 65536)
    assert 19 in overheads and overheads[19] == "data"
    # 17 for a payload under 24 bytes (a 1-byte bstr head): an ack
    acks = [(m, cbor2.loads(m).value[2]) for t, m in msgs if t.endswith("/ack")]
    assert acks and all(len(p) < 24 and len(m) - len(p) == 17 for m, p in acks)


def test_wire_md_batch_header_positions_and_ack_are_what_the_agent_sends():
    msgs = _running_agent_messages()
    births = [cbor2.loads(cose.verify(m, KEY, "dev-w")) for t, m in msgs if t.endswith("/birth")]
    checked = exts = 0
    for i, (topic, msg) in enumerate(msgs):
        if not topic.endswith("/data"):
            continue
        b = cbor2.loads(cose.verify(msg, KEY, "dev-w"))
        # [2, schema_id, epoch, seq, from_seq, flags, boot, uptime_ms, wall_s, wall_q, ival_ms, count,
        #  dt, column_0, ..., column_(m-1)]
        ver, sid, epoch, seq, from_seq, flags, boot, up, wall, wq, ival, count = b[:12]
        schema = births[-1]["schema"]
        assert ver == 2 and sid == births[-1]["schema_id"] and epoch == births[-1]["epoch"]
        assert boot == births[-1]["boot"] and ival == 60000 == births[-1]["ival_ms"]
        assert flags == 0 and from_seq == seq and 1 <= count <= 60
        assert wq == births[-1]["wall_q"] and (wall == 0) == (wq == 0)
        b, ext = batch.split_ext(b, len(schema))           # then at most one trailing map
        assert len(b) == 13 + len(schema)                  # dt, then one column per metric, in order
        if ext is not None:                                # a stress snapshot of one of its seqs
            assert list(ext) == [1] and seq <= ext[1][1] < seq + count
            exts += 1
        recs = batch.decode(b)
        assert [r["seq"] for r in recs] == list(range(seq, seq + count)) and recs[0]["uptime_ms"] == up
        # dt: each record's uptime jitter against the nominal interval
        ups = [r["uptime_ms"] for r in recs]
        assert batch._expand(b[12], count, "dt")[1:] == [ups[k] - ups[k - 1] - ival for k in range(1, count)]
        # the collector's answer on the ack topic: [epoch, first_seq, last_seq]
        topic_a, ack = msgs[i + 1]
        assert topic_a == "tally/v1/dev-w/ack"
        assert cbor2.loads(cose.verify(ack, KEY, "dev-w")) == [epoch, seq, seq + count - 1]
        checked += 1
    assert checked >= 3 and exts >= 1


def test_wire_md_each_column_form_appears_as_the_table_writes_it():
    n = 10
    cols = {
        "zero": [0] * n,                                               # 0
        "deltas": [2150, 2153, 2149, 2160, 2158, 2151, 2163, 2150, 2149, 2155],
        "step": [7 + 60 * k for k in range(n)],                        # [v0, d]
        "second": [0, 100000, 200001, 299999, 400000, 500002, 600001, 700001, 800000, 900002],
        "sparse": [5, 5, 5, 5, 1005, 1005, 1005, 1005, 1005, 1005],    # {0: v0, i: d_i}
    }
    log = RingLog(EmulatedNOR(4096, 64), "d").open()
    for k in range(n):
        log.append(9, 3, k * 60000, 0, 0, 60000, [cols[c][k] for c in cols])
    b = cbor2.loads(batch.encode(batch.take_run(log.pending(100), 60)))
    dt, zero, deltas, step, second, sparse = b[12:]
    assert dt == 0 and zero == 0                                     # every value is zero
    v = cols["deltas"]
    assert deltas == [v[0]] + [v[k] - v[k - 1] for k in range(1, n)]
    assert step == [7, 60]
    v = cols["second"]
    d = [v[k] - v[k - 1] for k in range(1, n)]
    assert second == [0, 100000, [d[k] - d[k - 1] for k in range(1, n - 1)]]
    assert sparse == {0: 5, 4: 1000}
    # and at n = 3 no second-difference form: it would read as three deltas
    log = RingLog(EmulatedNOR(4096, 64), "d").open()
    for k, x in enumerate((0, 100000, 200001)):
        log.append(9, 3, k * 60000, 0, 0, 60000, [x])
    assert cbor2.loads(batch.encode(batch.take_run(log.pending(10), 60)))[13] == [0, 100000, 100001]


def test_wire_md_version_2_forms_appear_as_the_table_writes_them():
    # sparse second differences: a steady rate that resets (unacked_s, run time)
    n = 12
    saw = [60 * (k % 7) for k in range(n)]                           # 0, 60, .., 360, 0, 60, ..
    gauge = [2150, 2190, 2101, 2300, 2280, 2110, 2190, 2260, 2140, 2105, 2230, 2170]
    mx = [g + 37 + k % 2 for k, g in enumerate(gauge)]                # a max beside its mean, same unit
    log = RingLog(EmulatedNOR(4096, 64), "d").open()
    for k in range(n):
        log.append(9, 3, k * 60000, 0, 0, 60000, [saw[k], gauge[k], mx[k]])
    run = batch.take_run(log.pending(100), 60)
    b = cbor2.loads(batch.encode(run, [("a", "s", 0, "max"), ("t", "Cel", -2, "mean"), ("tx", "Cel", -2, "max")]))
    assert b[0] == 2
    d = [saw[k] - saw[k - 1] for k in range(1, n)]
    dd = {k + 1: d[k] - d[k - 1] for k in range(1, n - 1) if d[k] != d[k - 1]}
    assert b[13] == [0, 60, dd] and sorted(dd) == [7, 8]               # [v0, d1, {i: dd_i}]
    assert batch._expand(b[13], n, "x") == saw
    assert b[14] == [gauge[0]] + [gauge[k] - gauge[k - 1] for k in range(1, n)]   # plain
    r = [m - g for m, g in zip(mx, gauge)]                            # [[k], column]: column 1 plus
    assert b[15] == [[1], [r[0]] + [r[k] - r[k - 1] for k in range(1, n)]]
    assert [x["values"] for x in batch.decode(b)] == [[saw[k], gauge[k], mx[k]] for k in range(n)]
    # without the schema no reference is written; another unit is never referenced
    assert cbor2.loads(batch.encode(run))[15][0] == mx[0]
    assert cbor2.loads(batch.encode(run, [("a", "s", 0, "max"), ("t", "Cel", -2, "mean"), ("v", "V", -2, "min")]))[15][0] == mx[0]
    # a version-1 batch (what older firmware sent) still decodes
    v1 = [1, 9, 5, 1, 1, 0, 1, 0, 0, 0, 60000, 4, 0, [3, 1, [0, 2]], {0: 7, 2: 1}]
    assert [x["values"] for x in batch.decode(v1)] == [[3, 7], [4, 7], [5, 8], [8, 8]]
    # a reference to a reference, to itself, or out of range is refused, as the v2 forms in v1
    # (the collector's own checks: tests/test_validate.py); the CDDL takes the v2 forms
    valid(cbor2.dumps(b), "data-batch")
    bad = [2, 9, 5, 1, 1, 0, 1, 0, 0, 0, 60000, 4, 0, [3, 1], [[0], 0], [[1], 0]]
    for cols in ([[3, 1], [[0], 0], [[1], 0]], [[3, 1], [[1], 0]], [[3, 1], [[5], 0]],
                 [[3, 1], [[0], [[0], 0]]]):
        with pytest.raises(batch.BatchError):
            batch.decode(bad[:13] + cols)
    with pytest.raises(batch.BatchError):
        batch.decode([1] + bad[1:13] + [[3, 1], [[0], 0]])
    with pytest.raises(batch.BatchError):
        batch.decode([1] + v1[1:13] + [[3, 1, {2: 2}], 0])
