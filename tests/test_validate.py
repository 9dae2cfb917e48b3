"""The collector's wire boundary (agent/collector/validate.py and
Collector.handle) against hostile input signed with the device's real key:
every rule refuses its example with one bounded reason, the message is
quarantined (and acked when docs/collector.md says so), nothing reaches the
ledger, an honest device's bill does not move, and the worker goes on. On
a SQLite file and on PostgreSQL (the `ledger` fixture of test_collector)."""
import json
import tracemalloc

import cbor2
import pytest

from agent import batch, cose
from agent.collector import store, validate
from agent.collector.store import Collector
from agent.meter import Meter, schema_hash
from test_collector import KEY, SCHEMA, birth, ledger, records  # noqa: F401 (ledger: a fixture)

EVIL = "dev-evil"
EVIL_KEY = bytes(range(100, 116))
HONEST = "dev-7"
KEYS = {HONEST: KEY, EVIL: EVIL_KEY}.get
TABLES = ("records", "schemas", "epochs", "births", "alarms", "configs", "counters", "quarantine")
WIRE = [["run_s", "s", 0, "odometer"], ["cycles", "count", 0, "odometer"], ["tmax", "Cel", -2, "gauge:max"]]
SID = schema_hash(WIRE)


def signed(obj, kind="data", raw=False):
    return "tally/v1/%s/%s" % (EVIL, kind), cose.mac0(obj if raw else cbor2.dumps(obj), EVIL_KEY, EVIL)


def a_birth(**kw):
    b = {"v": 1, "device": EVIL, "fw": "1.0", "board": "b", "reason": "poweron", "boot": 1,
         "epoch": 5, "seq0": 1, "schema_id": SID, "schema": WIRE, "wall_q": 3, "ival_ms": 60000,
         "config": 0}
    b.update(kw)
    if "schema" in kw and "schema_id" not in kw:
        try:
            b["schema_id"] = validate.schema_id(kw["schema"])
        except Exception:              # not encodable: keep the honest id
            pass
    return b


def with_schema(i, field, value):
    s = [list(m) for m in WIRE]
    s[i][field] = value
    return a_birth(schema=s)


def header(**kw):
    h = dict(v=1, sid=SID, epoch=5, seq=1, frm=1, flags=0, boot=1, up=0, wall=1767225600, wq=3,
             ival=60000, n=3)
    h.update(kw)
    return [h[k] for k in ("v", "sid", "epoch", "seq", "frm", "flags", "boot", "up", "wall", "wq", "ival", "n")]


def a_batch(cols=None, dt=0, **kw):
    return header(**kw) + [dt] + (cols if cols is not None else [[0, 60, 60], 0, [2000, 1, 1]])


def self_referencing():
    a = []
    a.append(a)
    return cbor2.dumps(a_birth(schema=[["x", "s", 0, "odometer"], a]), value_sharing=True)


# (name, kind, payload, class, acked): every rule with a hostile example
CASES = [
    # data: shape, ranges, declared sizes; acked when epoch and seqs are readable
    ("not CBOR", "data", b"\xff\x00", "malformed", False),
    ("not an array", "data", {"not": "a batch"}, "malformed", False),
    ("flags beyond 1|2|4", "data", a_batch(flags=8), "malformed", True),
    ("epoch past u32", "data", a_batch(epoch=1 << 32), "malformed", False),
    ("count past the maximum", "data", a_batch(n=validate.MAX_RECORDS + 1), "malformed", False),
    ("seq zero", "data", a_batch(seq=0, frm=0), "malformed", False),
    ("from_seq after seq", "data", a_batch(frm=2), "malformed", True),
    # (a bignum is a CBOR tag: refused as it is read, so no ack range either)
    ("boot a bignum", "data", a_batch(boot=1 << 200), "malformed", False),
    ("ival zero", "data", a_batch(ival=0), "malformed", True),
    ("wall_q 4", "data", a_batch(wq=4), "malformed", True),
    ("schema id past u32", "data", a_batch(sid=1 << 40), "malformed", True),
    ("too few columns", "data", a_batch(cols=[0, 0]), "malformed", True),
    ("too many columns", "data", a_batch(cols=[0, 0, 0, 0]), "malformed", True),
    ("a float in a column", "data", a_batch(cols=[[0, 1.5, 1], 0, 0]), "malformed", True),
    ("NaN in a column", "data", a_batch(cols=[[0, float("nan"), 1], 0, 0]), "malformed", True),
    ("a bool in a column", "data", a_batch(cols=[[0, True, 1], 0, 0]), "malformed", True),
    ("a column past 64 bits", "data", a_batch(cols=[[(1 << 63) - 1, 1, 1], 0, 0]), "malformed", True),
    ("a delta past CBOR's ints", "data", a_batch(cols=[[0, 1 << 70, 0], 0, 0]), "malformed", False),   # a bignum tag: refused as read
    ("a column of the wrong length", "data", a_batch(cols=[[0, 1, 2, 3, 4], 0, 0]), "malformed", True),
    ("a sparse index past count", "data", a_batch(cols=[{0: 1, 7: 1}, 0, 0]), "malformed", True),
    ("a column that is text", "data", a_batch(cols=["abc", 0, 0]), "malformed", True),
    ("a column that is 1", "data", a_batch(cols=[1, 0, 0]), "malformed", True),
    ("a reference to a reference", "data", a_batch(v=2, cols=[[0, 60], [[0], 0], [[1], 0]]), "malformed", True),
    ("a reference to itself", "data", a_batch(v=2, cols=[[0, 60], [[1], 0], 0]), "malformed", True),
    ("a reference past the columns", "data", a_batch(v=2, cols=[[0, 60], [[3], 0], 0]), "malformed", True),
    ("a reference that is not [k]", "data", a_batch(v=2, cols=[[0, 60], [[0, 1], 0], 0]), "malformed", True),
    ("a reference in a version-1 batch", "data", a_batch(cols=[[0, 60], [[0], 0], 0]), "malformed", True),
    ("sparse second differences in version 1", "data", a_batch(n=4, cols=[[0, 60, {2: 1}], 0, 0]),
     "malformed", True),
    ("a second difference index below 2", "data", a_batch(v=2, n=4, cols=[[0, 60, {1: 1}], 0, 0]),
     "malformed", True),
    ("version 3", "data", a_batch(v=3), "malformed", True),
    ("uptime sum past int64", "data", a_batch(up=(1 << 63) - 70000), "malformed", True),
    ("wall time past 2^32", "data", a_batch(wall=(1 << 32) - 10), "malformed", True),
    ("a coalesced span past 2^32", "data", a_batch(seq=1 << 40, frm=1), "malformed", True),
    ("seqs past 2^63", "data", a_batch(seq=(1 << 63) - 2, frm=(1 << 63) - 2), "malformed", False),
    ("records x columns past the maximum", "data",
     a_batch(n=validate.MAX_RECORDS, cols=[0] * (validate.MAX_CELLS // validate.MAX_RECORDS)), "malformed", True),
    # birth: the schema and every field
    ("birth not a map", "birth", [1], "malformed", False),
    ("birth v 2", "birth", a_birth(v=2), "malformed", False),
    ("birth for another device", "birth", a_birth(device=HONEST), "topic/device mismatch", False),
    ("birth schema empty", "birth", a_birth(schema=[]), "malformed", False),
    ("birth scale 10**9", "birth", with_schema(0, 2, 10 ** 9), "malformed", False),
    ("birth scale as text", "birth", with_schema(0, 2, "3"), "malformed", False),
    ("birth scale NaN", "birth", with_schema(0, 2, float("nan")), "malformed", False),
    ("birth scale a bool", "birth", with_schema(0, 2, True), "malformed", False),
    ("birth unit a list", "birth", with_schema(0, 1, ["s"]), "malformed", False),
    ("birth unit not allowed", "birth", with_schema(0, 1, "furlong"), "malformed", False),
    ("birth name bytes", "birth", with_schema(0, 0, b"run_s"), "malformed", False),
    ("birth name a formula", "birth", with_schema(0, 0, "=HYPERLINK(1)"), "malformed", False),
    ("birth name with an escape", "birth", with_schema(0, 0, "run\x1b[2J"), "malformed", False),
    ("birth name too long", "birth", with_schema(0, 0, "n" * 65), "malformed", False),
    ("birth names twice", "birth", with_schema(1, 0, "run_s"), "malformed", False),
    ("birth kind unknown", "birth", with_schema(0, 3, "odo"), "malformed", False),
    ("birth entry a tag", "birth", a_birth(schema=[cbor2.CBORTag(99, ["x", "s", 0, "odometer"])]),
     "malformed", False),
    ("birth entry a set", "birth", a_birth(schema=[frozenset([1, 2])]), "malformed", False),
    ("birth entry undefined", "birth", a_birth(schema=[cbor2.undefined]), "malformed", False),
    ("birth entry short", "birth", a_birth(schema=[["x", "s", 0]]), "malformed", False),
    ("birth self-referencing schema", "birth", self_referencing(), "malformed", False),
    ("birth schema_id a bignum", "birth", a_birth(schema_id=1 << 4000), "malformed", False),
    ("birth epoch past u32", "birth", a_birth(epoch=1 << 32), "malformed", False),
    ("birth fw of 10,000 characters", "birth", a_birth(fw="x" * 10000), "malformed", False),
    ("birth too many metrics", "birth",
     a_birth(schema=[["m%d" % i, "count", 0, "odometer"] for i in range(validate.MAX_METRICS + 1)]),
     "malformed", False),
    ("birth id not its schema's hash", "birth", a_birth(schema_id=SID ^ 1), "schema id", False),
    # death, cfgack
    ("death not a map", "death", [1, 2], "malformed", False),
    ("death boot a bignum", "death", {"v": 1, "boot": 1 << 80, "epoch": 5}, "malformed", False),
    ("cfgack version past int64", "cfgack", {"v": 1, "version": 1 << 70, "ok": True, "active": 1},
     "malformed", False),
    ("cfgack active negative", "cfgack", {"v": 1, "version": 1, "ok": True, "active": -1}, "malformed", False),
    ("cfgack ok not a bool", "cfgack", {"v": 1, "version": 1, "ok": 1, "active": 1}, "malformed", False),
    ("cfgack reason too long", "cfgack", {"v": 1, "version": 1, "ok": False, "active": 0, "reason": "r" * 501},
     "malformed", False),
]


def counts(c):
    return {t: c.db.execute("SELECT COUNT(*) FROM %s" % t).fetchone()[0] for t in TABLES}


def honest_device(tmp_path, c):
    m, recs = records(tmp_path, 10)
    c.handle("tally/v1/%s/birth" % HONEST, birth(m))
    assert c.handle("tally/v1/%s/data" % HONEST, cose.mac0(batch.encode(recs[:6]), KEY, HONEST))
    return recs


def test_every_rule_refuses_its_hostile_example_and_the_worker_goes_on(tmp_path, ledger):
    c = Collector(ledger, keys=KEYS)
    recs = honest_device(tmp_path, c)
    before = (c.ledger(HONEST), c.summary(HONEST))
    assert c.handle(*signed(a_birth(), "birth")) == []            # the evil device's own schema is fine
    seen = []
    c.on_reject = lambda dev, reason: seen.append((dev, reason))
    for i, (name, kind, obj, cls, acked) in enumerate(CASES):
        n = counts(c)
        topic, msg = signed(obj, kind, raw=isinstance(obj, bytes))
        replies = c.handle(topic, msg)
        assert seen[-1][0] == EVIL and seen[-1][1].split(":")[0] == cls, (name, seen[-1:])
        assert len(seen[-1][1]) < 200 and seen[-1][1].isprintable(), name        # bounded, no escapes
        assert len(seen) == i + 1, name
        if acked:          # kept, so acked: the device does not retry it forever
            rng = validate.ack_range(obj)
            assert [cbor2.loads(cose.verify(p, EVIL_KEY, EVIL)) for _, p in replies] == [list(rng)], name
        else:
            assert replies == [], name
        after = counts(c)
        assert after["quarantine"] == n["quarantine"] + 1, name
        assert after["records"] == n["records"] and after["schemas"] == n["schemas"], name
        assert c.escapes == 0, name
    assert c.counter(EVIL, "rejected") == len(CASES)
    assert c.counter(EVIL, "rejected:malformed") == sum(1 for x in CASES if x[3] == "malformed")
    assert c.counter(EVIL, "quarantined") == len(CASES)
    q = c.quarantined(EVIL)
    assert len(q) == len(CASES) and all(t.startswith("tally/v1/dev-evil/") for _, t, _, _, _ in q)
    assert cose.verify(q[0][2], EVIL_KEY, EVIL) == b"\xff\x00"      # the signed bytes, kept whole
    # nothing of it moved the honest device's bill, and the worker goes on
    assert (c.ledger(HONEST), c.summary(HONEST)) == before
    assert c.summary(HONEST)["rejected"] == 0
    assert c.handle("tally/v1/%s/data" % HONEST, cose.mac0(batch.encode(recs[6:]), KEY, HONEST))
    assert c.summary(HONEST)["epochs"][5]["covered"] == 10
    c.close()


def test_unauthenticated_messages_write_no_row_at_all(tmp_path, ledger):
    c = Collector(ledger, keys=KEYS)
    honest_device(tmp_path, c)
    n = counts(c)
    good = cose.mac0(cbor2.dumps(a_batch()), KEY, HONEST)
    flood = [("tally/v1/fresh-%d/data" % i, good) for i in range(300)]             # unknown devices
    flood += [("tally/v1/%s/%s" % (HONEST, k), cose.mac0(b"x", EVIL_KEY, HONEST))     # forged
              for k in ("data", "birth", "death", "cfgack")] * 20
    flood += [("tally/v1/%s/data" % HONEST, good[:-1] + bytes([good[-1] ^ 1]))] * 20  # a bit flipped
    flood += [("tally/v1/%s/data" % HONEST, b"\x00" * (validate.MAX_PAYLOAD + 1))]    # oversized
    flood += [("tally/v2/%s/data" % HONEST, good), ("tally/v1//data", good), ("tally/v1/a\x00b/data", good),
              ("tally/v1/\udc80/data", good), (b"tally/v1/dev-7/data", good)]            # bad topics
    for topic, msg in flood:
        assert c.handle(topic, msg) == []
    assert counts(c) == n                        # not one row, in any table
    assert c.summary(HONEST)["rejected"] == 0    # forged messages are not on the real device's bill
    assert set(c.rejects) == {"unknown device", "bad tag", "oversized", "topic"}
    assert sum(c.rejects.values()) == len(flood) and c.escapes == 0
    c.close()


def test_a_key_store_that_raises_is_an_escape_without_rows(ledger):
    def keys(dev):
        raise LookupError("vault unreachable")
    c = Collector(ledger, keys=keys)
    n = counts(c)
    assert c.handle("tally/v1/x/data", b"\xa0") == []
    assert c.escapes == 1 and c.rejects == {"internal": 1} and counts(c) == n


def test_reject_classes_in_memory_are_bounded():
    c = Collector(keys=KEYS)
    for i in range(store.MAX_REJECT_KEYS * 3):
        c._reject(None, store.Reject("class-%d: x" % i), "t", b"", None)
    assert len(c.rejects) == store.MAX_REJECT_KEYS + 1 and c.rejects["other"] >= store.MAX_REJECT_KEYS


def test_a_batch_of_many_zero_columns_is_refused_before_expansion(ledger):
    """4 KB signed, declaring the most records and thousands of all-zero
    columns: refused on its header, with a few hundred KB at most (expanded
    it would be 1024 x 4000 values, hundreds of MB)."""
    c = Collector(ledger, keys=KEYS)
    c.handle(*signed(a_birth(), "birth"))
    bomb = header(n=validate.MAX_RECORDS) + [0] * 4001
    topic, msg = signed(bomb)
    assert len(msg) < 4200
    tracemalloc.start()
    replies = c.handle(topic, msg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 512 * 1024, peak
    assert len(replies) == 1 and c.counter(EVIL, "rejected:malformed") == 1
    assert "4000 columns, more than 256" in c.quarantined(EVIL)[0][3]
    # the same shape within the column limit, past the records x columns one
    with pytest.raises(batch.BatchError, match="more than 65536 values"):
        batch.decode(header(n=validate.MAX_RECORDS) + [0] * 200)


def test_a_conflicting_replay_writes_one_alarm_row_with_the_seq_range(tmp_path, ledger):
    m, recs = records(tmp_path, 40)
    c = Collector(ledger, keys=KEYS)
    c.handle("tally/v1/%s/birth" % HONEST, birth(m))
    c.handle("tally/v1/%s/data" % HONEST, cose.mac0(batch.encode(recs), KEY, HONEST))
    forged = [r[:] for r in recs]
    for r in forged[5:30]:
        r[10] = [r[10][0] + 1, r[10][1], r[10][2]]
    assert c.handle("tally/v1/%s/data" % HONEST, cose.mac0(batch.encode(forged), KEY, HONEST))
    rows = c.db.execute("SELECT epoch, seq, last_seq, what FROM alarms").fetchall()
    assert rows == [(5, 6, 30, "replay: 25 records differ")]
    assert c.counter(HONEST, "conflicts") == 25


def test_a_birth_reusing_a_stored_id_with_other_content_is_refused_and_alarmed_once(ledger):
    """Ids are hashes, so a reuse is a collision or a ledger from before they
    were: here a stored schema under the id the new one hashes to. The stored
    one stays (past bills do not change), one alarm row however often the
    (retained) birth comes back."""
    c = Collector(ledger, keys=KEYS)
    old = [["run_s", "min", 0, "odometer"]]
    c._b.execute("INSERT INTO schemas VALUES (?,?,?)", (EVIL, SID, json.dumps(old)))
    for _ in range(3):
        assert c.handle(*signed(a_birth(), "birth")) == []
    assert c.schema(EVIL, SID) == old
    assert c.db.execute("SELECT COUNT(*) FROM alarms").fetchone()[0] == 1
    assert c.db.execute("SELECT what FROM alarms").fetchone()[0] == "schema %08x" % SID
    assert c.rejects == {"schema conflict": 3} and len(c.quarantined(EVIL)) == 1
    assert c.counter(EVIL, "rejected:schema conflict") == 3


def test_the_same_birth_again_is_accepted_and_extra_keys_are_ignored(ledger):
    c = Collector(ledger, keys=KEYS)
    for b in (a_birth(), a_birth(config=7, future={"anything": [1, 2.5, None]}, fw="2.0\x1b[31m\u202e")):
        assert c.handle(*signed(b, "birth")) == []
    assert c.rejects == {} and c.schema(EVIL, SID) == WIRE
    assert c.db.execute("SELECT fw FROM births ORDER BY received_s").fetchall() == [("1.0",), ("2.0\ufffd[31m\ufffd",)]


def test_the_quarantine_is_bounded_per_device(ledger, monkeypatch):
    monkeypatch.setattr(store, "MAX_QUARANTINE", 3)
    c = Collector(ledger, keys=KEYS)
    c.handle(*signed(a_birth(), "birth"))
    replies = [c.handle(*signed(a_batch(flags=8, seq=s, frm=s))) for s in range(1, 6)]
    assert [len(r) for r in replies] == [1, 1, 1, 0, 0]     # past the bound: not kept, so not acked
    assert len(c.quarantined(EVIL)) == 3 and c.counter(EVIL, "quarantine_full") == 2
    assert len(c.handle(*signed(a_batch(flags=8, seq=2, frm=2)))) == 1   # one kept already: acked again
    assert len(c.quarantined(EVIL)) == 3


def test_error_texts_never_format_the_hostile_value():
    huge = 1 << 20000                     # repr() of it raises on CPython 3.11+
    for bad in (a_birth(schema_id=huge), with_schema(0, 2, huge), a_birth(fw="\x1b" * 5000)):
        with pytest.raises(validate.Invalid) as e:
            validate.birth(bad, EVIL)
        assert len(str(e.value)) < 200 and str(e.value).isprintable()
    assert validate.show(huge) == "an integer of 20001 bits"
    assert validate.show("a\x1b[2Jb" * 50).startswith("'a?[2Jb") and len(validate.show("x" * 999)) < 50


def test_the_schema_id_is_the_hash_the_device_computes():
    m = Meter(SCHEMA)
    assert m.id == SID == validate.schema_id(WIRE)
    assert validate.schema(WIRE) is WIRE


def test_what_a_message_makes_raise_is_an_escape_kept_in_quarantine(ledger):
    """A ledger from before births were checked may hold a schema that is not
    a list (here the JSON number 5): a batch of that id makes the collector
    raise where no check expected it. The message boundary catches it: one
    escape, the batch quarantined as internal and acked (its bytes are kept),
    and the worker goes on with the next message."""
    c = Collector(ledger, keys=KEYS)
    c._b.execute("INSERT INTO schemas VALUES (?,?,?)", (EVIL, 77, "5"))
    topic, msg = signed(a_batch(sid=77))
    replies = c.handle(topic, msg)
    assert c.escapes == 1 and c.rejects == {"internal": 1}
    assert [cbor2.loads(cose.verify(p, EVIL_KEY, EVIL)) for _, p in replies] == [[5, 1, 3]]
    assert [(r, p) for _, _, p, r, _ in c.quarantined(EVIL)] == [("internal: TypeError", msg)]
    assert c.counter(EVIL, "rejected:internal") == 1
    assert c.handle(*signed(a_birth(), "birth")) == [] and c.handle(*signed(a_batch()))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 3
