import sqlite3

import cbor2
import pytest

from agent import batch
from agent.collector.store import Collector
from agent.log import RingLog
from hil.flash import EmulatedNOR
from agent.meter import Meter

SCHEMA = [("run_s", "s", 0, "odo"), ("cycles", "count", 0, "odo"), ("tmax", "Cel", -2, "max")]
DEV = "dev-7"


def birth(m, epoch=5, seq0=1):
    return cbor2.dumps({"v": 1, "schema_id": m.id, "epoch": epoch, "seq0": seq0, "boot": 1,
                        "schema": [[a, b, c, "odometer" if d == "odo" else "gauge:" + d]
                                   for a, b, c, d in m.schema]})


def records(tmp_path, n, start_wall=1767225600):
    m = Meter(SCHEMA)
    log = RingLog(EmulatedNOR(4096, 8), DEV).open()
    log.epoch = 5
    for i in range(n):
        log.append(m.id, 1, i * 60000, start_wall + i * 60, 3, 60000, [i * 60, i // 3, 2000 + i])
    return m, log.pending(n)


def test_batch_is_stored_once_and_acked_after_commit(tmp_path):
    m, recs = records(tmp_path, 10)
    c = Collector(str(tmp_path / "ledger.sqlite"))
    assert c.handle("tally/v1/%s/birth" % DEV, birth(m)) == []
    payload = batch.encode(recs)
    replies = c.handle("tally/v1/%s/data" % DEV, payload)
    assert replies == [("tally/v1/%s/ack" % DEV, cbor2.dumps([5, 1, 10]))]
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
    c = Collector()
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, batch.encode(recs))
    led = c.ledger()[DEV]
    assert led["2025-12-31"]["run_s"] == 60       # records 1,2 end at 23:59 and 00:00
    assert led["2026-01-01"]["run_s"] == 120
    assert sum(d["run_s"] for d in led.values()) == 180


def test_missing_seqs_show_as_gaps(tmp_path):
    m, recs = records(tmp_path, 10)
    c = Collector()
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, batch.encode(recs[:3]))
    c.handle("tally/v1/%s/data" % DEV, batch.encode(recs[6:]))
    s = c.summary(DEV)["epochs"][5]
    assert s["gaps"] == 3 and s["gap_ranges"] == [(4, 6)]
    assert s["totals"]["run_s"] == 540            # odometers: no revenue lost, only resolution


def test_failed_write_is_not_acked_and_leaves_no_partial_rows(tmp_path):
    m, recs = records(tmp_path, 10)
    c = Collector(str(tmp_path / "ledger.sqlite"))
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    # the database refuses the 6th row (a real SQLite failure, mid-transaction)
    c.db.execute("CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.seq = 6 "
                 "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(sqlite3.DatabaseError):
        c.handle("tally/v1/%s/data" % DEV, batch.encode(recs))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    c.db.execute("DROP TRIGGER boom")
    # the retry is metered exactly once (no dedupe key claimed by the failed try)
    assert c.handle("tally/v1/%s/data" % DEV, batch.encode(recs))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 10
    assert c.counter(DEV, "duplicates") == 0


@pytest.mark.parametrize("topic,payload,reason", [
    ("tally/v1/%s/data" % DEV, b"\xff\x00garbage", "malformed"),
    ("tally/v1/%s/data" % DEV, cbor2.dumps({"not": "a batch"}), "malformed"),
    ("tally/v1/%s/data" % DEV, cbor2.dumps([1, 2, 3]), "malformed"),
    ("tally/v1/%s/data" % DEV, b"\x00" * (70 * 1024), "oversized"),
    ("tally/x/%s/data" % DEV, b"", "topic"),
    ("tally/v1/%s/birth" % DEV, cbor2.dumps([1]), "malformed"),
])
def test_bad_messages_are_counted_not_raised(topic, payload, reason):
    c = Collector()
    assert c.handle(topic, payload) == []
    assert sum(c.rejects.values()) == 1
    assert any(k.startswith(reason) for k in c.rejects), c.rejects


def test_data_with_unknown_schema_is_not_acked(tmp_path):
    m, recs = records(tmp_path, 3)
    c = Collector()
    assert c.handle("tally/v1/%s/data" % DEV, batch.encode(recs)) == []
    assert "unknown schema" in c.rejects
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    assert c.handle("tally/v1/%s/data" % DEV, batch.encode(recs))
