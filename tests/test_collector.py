import sqlite3

import cbor2
import pytest

from agent import batch, cose
from agent.collector.store import Collector
from agent.log import RingLog
from hil.flash import EmulatedNOR
from agent.meter import Meter

SCHEMA = [("run_s", "s", 0, "odo"), ("cycles", "count", 0, "odo"), ("tmax", "Cel", -2, "max")]
DEV = "dev-7"
KEY = bytes(range(16))
KEYS = {DEV: KEY}.get


def sealed(payload, dev=DEV, key=KEY):
    return cose.mac0(payload, key, dev)


def new_collector(db=":memory:"):
    return Collector(db, keys=KEYS)


def birth(m, epoch=5, seq0=1, dev=DEV):
    return sealed(cbor2.dumps({"v": 1, "device": dev, "schema_id": m.id, "epoch": epoch,
                               "seq0": seq0, "boot": 1,
                               "schema": [[a, b, c, "odometer" if d == "odo" else "gauge:" + d]
                                          for a, b, c, d in m.schema]}))


def data(recs):
    return sealed(batch.encode(recs))


def records(tmp_path, n, start_wall=1767225600):
    m = Meter(SCHEMA)
    log = RingLog(EmulatedNOR(4096, 8), DEV).open()
    log.epoch = 5
    for i in range(n):
        log.append(m.id, 1, i * 60000, start_wall + i * 60, 3, 60000, [i * 60, i // 3, 2000 + i])
    return m, log.pending(n)


def test_batch_is_stored_once_and_acked_after_commit(tmp_path):
    m, recs = records(tmp_path, 10)
    c = new_collector(str(tmp_path / "ledger.sqlite"))
    assert c.handle("tally/v1/%s/birth" % DEV, birth(m)) == []
    payload = data(recs)
    replies = c.handle("tally/v1/%s/data" % DEV, payload)
    assert len(replies) == 1 and replies[0][0] == "tally/v1/%s/ack" % DEV
    assert cose.verify(replies[0][1], KEY, DEV) == cbor2.dumps([5, 1, 10])   # the ack is MAC'd too
    # a retry is a quiet duplicate, acked again, counted, not stored twice
    assert c.handle("tally/v1/%s/data" % DEV, payload) == replies
    assert c.counter(DEV, "duplicates") == 10
    n = c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    assert n == 10
    s = c.summary(DEV)["epochs"][5]
    assert s["totals"] == {"run_s": 540, "cycles": 3}
    assert s["gaps"] == 0 and s["covered"] == 10
    # durable: a second connection on the same file sees it
    assert sqlite3.connect(str(tmp_path / "ledger.sqlite")).execute(
        "SELECT COUNT(*) FROM records").fetchone()[0] == 10


def test_ledger_books_usage_on_the_day_the_interval_ends(tmp_path):
    m, recs = records(tmp_path, 4, start_wall=1767225600 - 120)   # two before midnight
    c = new_collector()
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, data(recs))
    led = c.ledger()[DEV]
    assert led["2025-12-31"]["run_s"] == 60       # records 1,2 end at 23:59 and 00:00
    assert led["2026-01-01"]["run_s"] == 120
    assert sum(d["run_s"] for d in led.values()) == 180


def test_missing_seqs_show_as_gaps(tmp_path):
    m, recs = records(tmp_path, 10)
    c = new_collector()
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, data(recs[:3]))
    c.handle("tally/v1/%s/data" % DEV, data(recs[6:]))
    s = c.summary(DEV)["epochs"][5]
    assert s["gaps"] == 3 and s["gap_ranges"] == [(4, 6)]
    assert s["totals"]["run_s"] == 540            # odometers: no revenue lost, only resolution


def test_failed_write_is_not_acked_and_leaves_no_partial_rows(tmp_path):
    m, recs = records(tmp_path, 10)
    c = new_collector(str(tmp_path / "ledger.sqlite"))
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    # the database refuses the 6th row (a real SQLite failure, mid-transaction)
    c.db.execute("CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.seq = 6 "
                 "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(sqlite3.DatabaseError):
        c.handle("tally/v1/%s/data" % DEV, data(recs))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    c.db.execute("DROP TRIGGER boom")
    # the retry is metered exactly once (no dedupe key claimed by the failed try)
    assert c.handle("tally/v1/%s/data" % DEV, data(recs))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 10
    assert c.counter(DEV, "duplicates") == 0


@pytest.mark.parametrize("topic,payload,reason", [
    ("tally/v1/%s/data" % DEV, b"\xff\x00garbage", "bad tag"),
    ("tally/v1/%s/data" % DEV, cbor2.dumps([1, 2, 3]), "bad tag"),
    ("tally/v1/%s/data" % DEV, sealed(b"\xff\x00garbage"), "malformed"),
    ("tally/v1/%s/data" % DEV, sealed(cbor2.dumps({"not": "a batch"})), "malformed"),
    ("tally/v1/%s/data" % DEV, sealed(cbor2.dumps([1, 2, 3])), "malformed"),
    ("tally/v1/%s/data" % DEV, sealed(cbor2.dumps([1]), key=bytes(16)), "bad tag"),
    ("tally/v1/other/data", sealed(cbor2.dumps([1]), dev="other"), "unknown device"),
    ("tally/v1/%s/data" % DEV, b"\x00" * (70 * 1024), "oversized"),
    ("tally/x/%s/data" % DEV, b"", "topic"),
    ("tally/v1/%s/birth" % DEV, sealed(cbor2.dumps([1])), "malformed"),
])
def test_bad_messages_are_counted_not_raised(topic, payload, reason):
    c = new_collector()
    assert c.handle(topic, payload) == []
    assert sum(c.rejects.values()) == 1
    assert any(k.startswith(reason) for k in c.rejects), c.rejects


def test_data_with_unknown_schema_is_not_acked(tmp_path):
    m, recs = records(tmp_path, 3)
    c = new_collector()
    assert c.handle("tally/v1/%s/data" % DEV, data(recs)) == []
    assert "unknown schema" in c.rejects
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    assert c.handle("tally/v1/%s/data" % DEV, data(recs))


def test_a_device_cannot_speak_for_another(tmp_path):
    m, recs = records(tmp_path, 3)
    c = Collector(keys={DEV: KEY, "dev-8": bytes(16)}.get)
    # dev-8 publishes a batch on dev-7's topic with its own key: the MAC binds the device id
    assert c.handle("tally/v1/%s/data" % DEV, sealed(batch.encode(recs), dev="dev-8", key=bytes(16))) == []
    assert "bad tag" in c.rejects
    # a birth that names another device than its topic is refused
    assert c.handle("tally/v1/%s/birth" % DEV, birth(m, dev="dev-8")) == []
    assert "topic/device mismatch" in c.rejects
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_replay_with_other_content_raises_an_alarm_and_keeps_the_first(tmp_path):
    m, recs = records(tmp_path, 5)
    c = new_collector()
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, data(recs))
    c.handle("tally/v1/%s/data" % DEV, data(recs))            # same content: quiet
    assert c.counter(DEV, "conflicts") == 0
    forged = [r[:] for r in recs]
    forged[2][10] = [999999, 9, 9]
    c.handle("tally/v1/%s/data" % DEV, data(forged))          # same keys, other content
    assert c.counter(DEV, "conflicts") == 1
    assert c.db.execute("SELECT seq FROM alarms").fetchall() == [(3,)]
    assert c.summary(DEV)["epochs"][5]["totals"]["run_s"] == 240   # the ledger kept the first


def test_a_new_epoch_restarts_odometers_at_zero_in_the_ledger(tmp_path):
    m = Meter(SCHEMA)
    log = RingLog(EmulatedNOR(4096, 8), DEV).open()
    e1 = log.epoch
    for i in range(5):
        log.append(m.id, 1, i * 60000, 1767225600 + i * 60, 3, 60000, [(i + 1) * 60, i, 2000])
    first = log.pending(10)
    log.new_epoch()                                   # e.g. a firmware with a new schema
    e2 = log.epoch
    for i in range(3):
        log.append(m.id, 2, i * 60000, 1767226000 + i * 60, 3, 60000, [(i + 1) * 30, 0, 2000])
    second = [r for r in log.pending(10) if r[3] == e2]
    c = new_collector()
    c.handle("tally/v1/%s/birth" % DEV, birth(m, epoch=e1))
    assert c.handle("tally/v1/%s/data" % DEV, data(first))
    assert c.handle("tally/v1/%s/data" % DEV, data(second))
    ep = c.summary(DEV)["epochs"]
    assert ep[e1]["totals"]["run_s"] == 300 and ep[e2]["totals"]["run_s"] == 90
    assert sum(d["run_s"] for d in c.ledger(DEV)[DEV].values()) == 390
