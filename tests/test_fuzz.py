"""Hostile input at the collector: at least 100,000 mutated and random
payloads, many of them validly MAC'd so they reach the CBOR and batch
decoders. No exception escapes, and nothing malformed reaches the ledger."""
import json
import random

import cbor2

from agent import batch, cose
from agent.collector.store import Collector
from agent.log import RingLog
from agent.meter import Meter
from hil.nor import EmulatedNOR

DEV = "dev-z"
KEY = bytes(range(16))
SCHEMA = [("odo", "count", 0, "odo"), ("g", "x", 0, "max"), ("h", "x", 0, "mean")]


def seeds():
    m = Meter(SCHEMA)
    log = RingLog(EmulatedNOR(4096, 8), DEV).open()
    for i in range(40):
        log.append(m.id, 1, i * 60000 + (i % 3), 1767225600 + i * 60, 3, 60000, [i * 7, -i, 2 ** 40 + i])
    batches = [batch.encode(log.pending(60)[a:b]) for a, b in ((0, 1), (0, 10), (5, 40))]
    birth = cbor2.dumps({"v": 1, "device": DEV, "schema_id": m.id, "epoch": log.epoch, "seq0": 1,
                         "boot": 1, "schema": [[a, b, c, "odometer" if d == "odo" else "gauge:" + d]
                                               for a, b, c, d in SCHEMA]})
    return m, log, batches, birth


def mutate(rnd, data):
    b = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(5)
        if op == 0 and b:
            b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
        elif op == 1 and b:
            b[rnd.randrange(len(b))] = rnd.choice((0, 0x18, 0x1B, 0x5B, 0x7F, 0x9B, 0x9F, 0xBF, 0xFF))
        elif op == 2:
            i = rnd.randrange(len(b) + 1)
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif op == 3 and b:
            del b[rnd.randrange(len(b)):]
        else:
            i = rnd.randrange(len(b) + 1)
            b[i:i] = b"\x9f" * rnd.randint(1, 40) if rnd.random() < 0.5 else b"\x81" * rnd.randint(1, 300)
    return bytes(b)


def test_100k_hostile_payloads_never_raise_and_never_reach_the_ledger():
    rnd = random.Random(2026)
    m, log, batches, birth = seeds()
    c = Collector(keys={DEV: KEY}.get)
    assert c.handle("tally/v1/%s/birth" % DEV, cose.mac0(birth, KEY, DEV)) == []
    good = {r["seq"]: r for b in batches for r in batch.decode(cbor2.loads(b))}
    n = 0
    topics = ["tally/v1/%s/data" % DEV, "tally/v1/%s/birth" % DEV, "tally/v1/x/data", "tally/v1//data",
              "tally/v1/%s/data/extra" % DEV]
    while n < 100000:
        kind = rnd.randrange(10)
        if kind < 5:        # a mutated inner payload, validly MAC'd: reaches the decoders
            inner = mutate(rnd, rnd.choice(batches + [birth]))
            msg = cose.mac0(inner, KEY, DEV)
        elif kind < 8:      # a mutated envelope
            msg = mutate(rnd, cose.mac0(rnd.choice(batches), KEY, DEV))
        else:               # random bytes
            msg = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 200)))
        topic = topics[0] if rnd.random() < 0.9 else rnd.choice(topics)
        c.handle(topic, msg)          # must not raise
        n += 1
    # what reached the ledger is well-formed: integer values of the right width
    rows = c.db.execute("SELECT seq, from_seq, vals FROM records").fetchall()
    for seq, frm, vals in rows:
        v = json.loads(vals)
        assert len(v) == len(SCHEMA) and all(isinstance(x, int) for x in v)
        assert frm <= seq
    assert sum(c.rejects.values()) > 50000
    print("payloads %d, rejects %s, records stored %d" % (n, c.rejects, len(rows)))
