"""Every payload the system produces validates against docs/wire.cddl
(RFC 8610, checked with cddl-verifier), and batches round-trip exactly,
including wide and negative integers."""
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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    for bad in (ok[:5], ok[:12] + [[0, 0], [1.5, 2]], [2] + ok[1:], ok[:9] + [7] + ok[10:],
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
    bad = dev.offer(cose.mac0(cbor2.dumps(dict(cfg, version=3, window=0)), key, "d"), key, "d")
    valid(bad["ack"], "cfgack")
    assert cbor2.loads(bad["ack"])["reason"] == "window=0 is not an integer in 1..32"
    garbled = dev.offer(b"\x00not cose", key, "d")
    valid(garbled["ack"], "cfgack")
    with pytest.raises(AssertionError):
        valid(cbor2.dumps(dict(cfg, window=0)), "config")
