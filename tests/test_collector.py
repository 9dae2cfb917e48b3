"""The collector's behaviour, the same on both databases: each test that
takes `ledger` runs once on a SQLite file and once on a fresh PostgreSQL
database (conftest's `postgres`; skipped when PostgreSQL is not installed,
except in CI)."""
import json
import os
import threading

import cbor2
import pytest

from agent import batch, cose
from agent.collector.store import DB_ERRORS, Collector, is_postgres_url
from agent.log import RingLog
from hil.nor import EmulatedNOR
from agent.meter import Meter

SCHEMA = [("run_s", "s", 0, "odo"), ("cycles", "count", 0, "odo"), ("tmax", "Cel", -2, "max")]
DEV = "dev-7"
KEY = bytes(range(16))
KEYS = {DEV: KEY}.get


def sealed(payload, dev=DEV, key=KEY):
    return cose.mac0(payload, key, dev)


def new_collector(db=":memory:"):
    return Collector(db, keys=KEYS)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request, tmp_path):
    """Where the test's collector keeps its ledger."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("postgres")


# A real database failure at the 6th row, mid-transaction, and its undoing.
SABOTAGE = {
    False: ("CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.seq = 6 "
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END", "DROP TRIGGER boom"),
    True: ("ALTER TABLE records ADD CONSTRAINT boom CHECK (seq <> 6)",
           "ALTER TABLE records DROP CONSTRAINT boom"),
}


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


def test_batch_is_stored_once_and_acked_after_commit(tmp_path, ledger):
    m, recs = records(tmp_path, 10)
    c = new_collector(ledger)
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
    # committed: a second connection to the same ledger sees it
    other = new_collector(ledger)
    assert other.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 10
    assert other.summary(DEV)["epochs"][5]["totals"] == s["totals"]
    other.close()
    c.close()


def test_ledger_books_usage_on_the_day_the_interval_ends(tmp_path, ledger):
    m, recs = records(tmp_path, 4, start_wall=1767225600 - 120)   # two before midnight
    c = new_collector(ledger)
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, data(recs))
    led = c.ledger()[DEV]
    assert led["2025-12-31"]["run_s"] == 60       # records 1,2 end at 23:59 and 00:00
    assert led["2026-01-01"]["run_s"] == 120
    assert sum(d["run_s"] for d in led.values()) == 180


def test_missing_seqs_show_as_gaps(tmp_path, ledger):
    m, recs = records(tmp_path, 10)
    c = new_collector(ledger)
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, data(recs[:3]))
    c.handle("tally/v1/%s/data" % DEV, data(recs[6:]))
    s = c.summary(DEV)["epochs"][5]
    assert s["gaps"] == 3 and s["gap_ranges"] == [(4, 6)]
    assert s["totals"]["run_s"] == 540            # odometers: no revenue lost, only resolution


def test_an_odometer_that_goes_back_books_no_negative_usage(tmp_path, ledger):
    """A device whose newest record was lost to flash damage after it was
    sent resumes from the record before it: the ledger sees run_s go 540
    (day 1) -> 480, 500 (day 2) and climb to 620 (day 3). Usage is booked
    only above the highest value seen: day 2 books 0, not -40, and day 3 the
    80 past 540, so no day is negative and the epoch total is the same; the
    records that went back are counted as data quality."""
    m = Meter(SCHEMA)
    log = RingLog(EmulatedNOR(4096, 8), DEV).open()
    log.epoch = 5
    t0 = 1767225600 - 9 * 60                                # record 8 ends at midnight
    run = [60, 120, 180, 240, 300, 360, 420, 480, 540,      # sent and ledgered
           480, 500, 560, 620]                              # after the damage: from 480 again
    for i, v in enumerate(run):
        late = 86400 if i >= 11 else 0                      # the climb back a day later
        log.append(m.id, 1, (i * 60 + late) * 1000, t0 + i * 60 + late, 3, 60000, [v, 0, 2000])
    recs = log.pending(len(run))
    c = new_collector(ledger)
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    assert c.handle("tally/v1/%s/data" % DEV, data(recs[:9]))
    assert c.handle("tally/v1/%s/data" % DEV, data(recs[9:]))
    days = c.ledger()[DEV]
    assert {d: u["run_s"] for d, u in days.items()} == {"2025-12-31": 540, "2026-01-01": 0,
                                                        "2026-01-02": 80}
    e = c.summary(DEV)["epochs"][5]
    assert e["totals"]["run_s"] == 620 and e["rewinds"] == 2     # 480 and 500 are below 540
    c.close()


def test_failed_write_is_not_acked_and_leaves_no_partial_rows(tmp_path, ledger):
    m, recs = records(tmp_path, 10)
    c = new_collector(ledger)
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    boom, unboom = SABOTAGE[is_postgres_url(ledger)]
    c.db.execute(boom)              # the database refuses the 6th row
    with pytest.raises(DB_ERRORS):
        c.handle("tally/v1/%s/data" % DEV, data(recs))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    assert c.counter(DEV, "batches") == 0          # the counters rolled back with it
    c.db.execute(unboom)
    # the retry is metered exactly once (no dedupe key claimed by the failed try)
    assert c.handle("tally/v1/%s/data" % DEV, data(recs))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 10
    assert c.counter(DEV, "duplicates") == 0


@pytest.mark.parametrize("topic,payload,reason,signed", [
    ("tally/v1/%s/data" % DEV, b"\xff\x00garbage", "bad tag", False),
    ("tally/v1/%s/data" % DEV, cbor2.dumps([1, 2, 3]), "bad tag", False),
    ("tally/v1/%s/data" % DEV, sealed(b"\xff\x00garbage"), "malformed", True),
    ("tally/v1/%s/data" % DEV, sealed(cbor2.dumps({"not": "a batch"})), "malformed", True),
    ("tally/v1/%s/data" % DEV, sealed(cbor2.dumps([1, 2, 3])), "malformed", True),
    ("tally/v1/%s/data" % DEV, sealed(cbor2.dumps([1]), key=bytes(16)), "bad tag", False),
    ("tally/v1/other/data", sealed(cbor2.dumps([1]), dev="other"), "unknown device", False),
    ("tally/v1/%s/data" % DEV, b"\x00" * (70 * 1024), "oversized", False),
    ("tally/x/%s/data" % DEV, b"", "topic", False),
    ("tally/v1/%s/birth" % DEV, sealed(cbor2.dumps([1])), "malformed", True),
])
def test_bad_messages_are_counted_not_raised(topic, payload, reason, signed, ledger):
    """Signed by the device: counted on it (rejected, rejected:<class>) and
    the message quarantined. Not signed: counted in memory only, no row."""
    c = new_collector(ledger)
    assert c.handle(topic, payload) == []
    assert sum(c.rejects.values()) == 1
    assert any(k.startswith(reason) for k in c.rejects), c.rejects
    assert c.counter(DEV, "rejected") == c.counter(DEV, "rejected:" + reason) == int(signed)
    assert c.db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == int(signed)
    if not signed:
        assert c.db.execute("SELECT COUNT(*) FROM counters").fetchone()[0] == 0


def test_nul_characters_never_reach_the_database(tmp_path, ledger):
    """PostgreSQL text can't hold NUL: a topic with one is refused (MQTT
    forbids it anyway), one in a birth's free text is replaced, so handle()
    never raises on such input, on either database."""
    m, recs = records(tmp_path, 3)
    c = Collector(ledger, keys={DEV: KEY, "dev\x00x": KEY}.get)
    assert c.handle("tally/v1/dev\x00x/data", sealed(b"", dev="dev\x00x")) == []
    assert "topic" in c.rejects
    b = cbor2.loads(cose.verify(birth(m), KEY, DEV))
    b["fw"] = "1.2\x00evil"
    assert c.handle("tally/v1/%s/birth" % DEV, sealed(cbor2.dumps(b))) == []
    assert c.db.execute("SELECT fw FROM births").fetchall() == [("1.2\ufffdevil",)]
    assert c.handle("tally/v1/%s/data" % DEV, data(recs))       # the schema was stored


def test_data_with_unknown_schema_is_not_acked(tmp_path, ledger):
    m, recs = records(tmp_path, 3)
    c = new_collector(ledger)
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


def test_replay_with_other_content_raises_an_alarm_and_keeps_the_first(tmp_path, ledger):
    m, recs = records(tmp_path, 5)
    c = new_collector(ledger)
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
    # a batch overlapping stored records: only the differing old one alarms again
    more = records(tmp_path, 8)[1]
    more[2][10] = [999999, 9, 9]
    assert c.handle("tally/v1/%s/data" % DEV, data(more[1:]))
    assert c.counter(DEV, "conflicts") == 2 and c.counter(DEV, "duplicates") == 5 + 5 + 4
    assert c.db.execute("SELECT seq FROM alarms").fetchall() == [(3,), (3,)]
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 8


def test_a_new_epoch_restarts_odometers_at_zero_in_the_ledger(tmp_path, ledger):
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
    c = new_collector(ledger)
    c.handle("tally/v1/%s/birth" % DEV, birth(m, epoch=e1))
    assert c.handle("tally/v1/%s/data" % DEV, data(first))
    assert c.handle("tally/v1/%s/data" % DEV, data(second))
    ep = c.summary(DEV)["epochs"]
    assert ep[e1]["totals"]["run_s"] == 300 and ep[e2]["totals"]["run_s"] == 90
    assert sum(d["run_s"] for d in c.ledger(DEV)[DEV].values()) == 390


def test_two_workers_ingesting_overlapping_batches_store_each_record_once(tmp_path, ledger):
    """Two collectors on one ledger (two connections, as two workers of a
    shared subscription) get the same device's records at the same time, in
    batches that overlap: each record is stored once, every batch is acked,
    duplicates are counted exactly, nothing deadlocks or raises."""
    m, recs = records(tmp_path, 600)
    work = {"a": [recs[i:i + 60] for i in range(0, 600, 60)],          # 10 batches
            "b": [recs[i:i + 45] for i in range(0, 600, 45)]}          # 14, straddling a's
    workers = {w: new_collector(ledger) for w in work}
    for c in workers.values():                     # births reach every worker
        c.handle("tally/v1/%s/birth" % DEV, birth(m))
    go = threading.Barrier(2)
    acks, errors = {w: 0 for w in work}, []

    def run(w):
        try:
            go.wait(10)
            for part in work[w]:
                acks[w] += len(workers[w].handle("tally/v1/%s/data" % DEV, data(part)))
        except Exception as e:                     # e.g. a deadlock the database broke
            errors.append(e)
    threads = [threading.Thread(target=run, args=(w,)) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and acks == {"a": 10, "b": 14}
    c = workers["a"]
    assert c.db.execute("SELECT COUNT(*), COUNT(DISTINCT seq) FROM records").fetchone() == (600, 600)
    assert c.counter(DEV, "batches") == 24
    assert c.counter(DEV, "duplicates") == 600     # 1200 sent, 600 stored
    assert c.counter(DEV, "conflicts") == 0
    assert c.summary(DEV)["epochs"][5]["totals"] == {"run_s": 599 * 60, "cycles": 599 // 3}
    for w in workers.values():
        w.close()


@pytest.mark.parametrize("dev", ['we"ird,{dev}\\ ü', "NULL"])
def test_any_device_id_round_trips(tmp_path, ledger, dev):
    m, recs = records(tmp_path, 4)
    c = Collector(ledger, keys={dev: KEY}.get)
    c.handle("tally/v1/%s/birth" % dev, sealed(cose.verify(birth(m, dev=dev), KEY, DEV), dev=dev))
    assert c.handle("tally/v1/%s/data" % dev, sealed(batch.encode(recs), dev=dev))
    assert c.devices() == [dev]
    assert c.summary(dev)["epochs"][5]["totals"]["run_s"] == 180


def test_keys_shorter_than_16_bytes_are_refused_everywhere(tmp_path, capsys):
    from agent.cli import collect as cli
    keys = tmp_path / "keys.json"
    for table, err in (({DEV: ""}, "is 0 bytes"), ({DEV: "ab"}, "is 1 bytes"), ({DEV: "zz"}, "not hex"),
                       ({DEV: 7}, "not hex"), ({DEV: "00" * 65}, "is 65 bytes")):
        keys.write_text(json.dumps(table))
        with pytest.raises(ValueError, match=err):
            cli.load_keys(str(keys))
    for short in ("", "ab", "00" * 15):
        with pytest.raises(ValueError):
            cli.load_keys(master_hex=short, environ={}) if short else cli.load_keys(environ={})
        with pytest.raises(ValueError, match="TALLY_MASTER_KEY is"):
            cli.load_keys(environ={"TALLY_MASTER_KEY": short or "0"})
    with pytest.raises(ValueError):
        cose.device_key(b"\x01", DEV)
    # the master key from a file or the environment, the same derived keys; no warning
    master = "5a" * 16
    (tmp_path / "master").write_text(master + "\n")
    capsys.readouterr()
    a = cli.load_keys(master_file=str(tmp_path / "master"), environ={})
    b = cli.load_keys(environ={"TALLY_MASTER_KEY": master})
    assert a(DEV) == b(DEV) == cose.device_key(bytes.fromhex(master), DEV)
    assert capsys.readouterr().err == ""
    # on the command line: works, and says ps shows it
    assert cli.load_keys(master_hex=master, environ={})(DEV) == a(DEV)
    assert "visible to other users (ps)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not both"):
        cli.load_keys(master_hex=master, master_file=str(tmp_path / "master"))
    # the repository's example key works but is named for what it is
    cli.load_keys(environ={"TALLY_MASTER_KEY": "00112233445566778899aabbccddeeff"})
    keys.write_text(json.dumps({DEV: bytes(range(16)).hex()}))
    cli.load_keys(str(keys))
    err = capsys.readouterr().err
    assert err.count("the repository's example key") == 2 and "TALLY_MASTER_KEY" in err


def test_collect_takes_the_master_key_from_a_file_and_refuses_a_short_one(tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "short").write_text("abcd")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "collect", "--broker", "mqtt://127.0.0.1:1",
                        "--db", str(tmp_path / "l.sqlite"), "--master-key-file", str(tmp_path / "short")],
                       cwd=root, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "tally: collect: --master-key-file %s is 2 bytes; a key takes 16 to 64" % (tmp_path / "short")]


def test_a_ledger_from_before_gets_the_new_alarm_columns_and_keeps_its_rows(tmp_path, ledger):
    """alarms had no last_seq/what: opening an old ledger adds them; the old
    rows stay, and new alarms go in."""
    old = Collector(ledger, keys=KEYS)
    old.db.execute("DROP TABLE alarms")
    old.db.execute("CREATE TABLE alarms (device_id TEXT NOT NULL, epoch BIGINT NOT NULL, seq BIGINT NOT NULL, "
                   "stored TEXT NOT NULL, received TEXT NOT NULL, at_s DOUBLE PRECISION NOT NULL)")
    old._b.execute("INSERT INTO alarms VALUES (?,?,?,?,?,?)", (DEV, 5, 2, "[1]", "[2]", 1.0))
    old.close()
    m, recs = records(tmp_path, 4)
    c = Collector(ledger, keys=KEYS)
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, data(recs))
    forged = [r[:] for r in recs]
    forged[3][10] = [1, 2, 3]
    assert c.handle("tally/v1/%s/data" % DEV, data(forged))
    assert c.db.execute("SELECT seq, last_seq, what FROM alarms ORDER BY at_s").fetchall() == [
        (2, None, None), (4, 4, "replay: 1 records differ")]
    c.close()
