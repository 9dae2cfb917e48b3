"""The collector on PostgreSQL: what only a server database does (go down,
come back, refuse a connection). The behaviour both databases share is
tested in test_collector.py, once on each."""
import json
import time

import cbor2
import pytest

from agent import cli, cose
from agent.collector.store import DB_ERRORS, Collector, display_name
from hil.harness.mosquitto import free_port
from test_collector import DEV, KEY, KEYS, birth, data, records
from conftest import tally


def test_database_down_is_an_error_and_a_restart_is_picked_up(tmp_path, postgres_server, postgres):
    m, recs = records(tmp_path, 30)
    c = Collector(postgres, keys=KEYS)
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    assert c.handle("tally/v1/%s/data" % DEV, data(recs[:10]))
    postgres_server.stop()
    try:
        with pytest.raises(DB_ERRORS) as e:                     # the connection is gone
            c.handle("tally/v1/%s/data" % DEV, data(recs[10:20]))
        assert str(e.value).startswith("PostgreSQL postgresql://tally@127.0.0.1:")
        with pytest.raises(DB_ERRORS) as e:                     # still down: reconnecting fails
            c.handle("tally/v1/%s/data" % DEV, data(recs[10:20]))
        assert "connection" in str(e.value).lower()
    finally:
        postgres_server.start()
    # the same collector, no restart: the device's retry is stored and acked
    replies = c.handle("tally/v1/%s/data" % DEV, data(recs[10:20]))
    assert cose.verify(replies[0][1], KEY, DEV) == cbor2.dumps([5, 11, 20])
    assert c.handle("tally/v1/%s/data" % DEV, data(recs[20:]))
    assert c.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 30
    assert c.counter(DEV, "batches") == 3 and c.counter(DEV, "duplicates") == 0
    c.close()


def test_an_unreachable_database_is_a_clear_error(postgres):
    url = "postgresql://tally@127.0.0.1:%d/nowhere?connect_timeout=3" % free_port()
    with pytest.raises(DB_ERRORS, match="PostgreSQL postgresql://tally@127.0.0.1:.*refused"):
        Collector(url, keys=KEYS)
    with pytest.raises(DB_ERRORS, match='database "nope" does not exist'):
        Collector(postgres.rsplit("/", 1)[0] + "/nope", keys=KEYS)


def test_printed_urls_hide_the_password():
    assert display_name("postgresql://me:s3cret@db.example:5432/ledger") == \
        "postgresql://me:***@db.example:5432/ledger"
    assert display_name("postgres://me@db/ledger") == "postgres://me@db/ledger"
    assert display_name("ledger.sqlite") == "ledger.sqlite"


def test_collect_and_export_take_a_postgresql_url(tmp_path, postgres, capsys):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({DEV: KEY.hex()}))
    # collect opens the ledger (and makes its tables) before it tries the broker
    run = tally("collect", "--broker", "mqtt://127.0.0.1:%d" % free_port(), "--db", postgres,
                "--keys", str(keys), "--connect-timeout", "0.5")
    assert run.returncode == 2 and "no subscription" in run.stderr, run.stderr
    assert Collector(postgres, keys=KEYS).db.execute(
        "SELECT to_regclass('records') IS NOT NULL").fetchone() == (True,)
    m, recs = records(tmp_path, 5)
    c = Collector(postgres, keys=KEYS)
    c.handle("tally/v1/%s/birth" % DEV, birth(m))
    c.handle("tally/v1/%s/data" % DEV, data(recs))
    c.close()
    assert cli.main(["export", "--db", postgres, "--format", "cloudevents"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in events] == ["%s/5/%d" % (DEV, i) for i in range(1, 6)]
    # a database that is not there: one line, no traceback
    run = tally("collect", "--broker", "mqtt://127.0.0.1:1", "--db", postgres.rsplit("/", 1)[0] + "/nope",
                "--keys", str(keys))
    lines = run.stderr.strip().splitlines()     # (KEY is an example key: a warning line first)
    assert run.returncode == 2 and lines[-1].startswith("tally: collect: PostgreSQL"), run.stderr
    assert all(x.startswith("tally: warning: ") for x in lines[:-1])
    assert "Traceback" not in run.stderr and 'database "nope" does not exist' in run.stderr


def test_service_does_not_ack_while_the_database_is_down(tmp_path, broker, postgres_server, postgres):
    from agent.collector.service import CollectorService
    from agent.port.mqtt_paho import PahoTransport
    m, recs = records(tmp_path, 6)
    col = Collector(postgres, keys=KEYS)
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    dev = PahoTransport(DEV, broker.url)
    dev.connect()
    assert dev.wait_connected(10)
    time.sleep(0.3)

    def send_and_wait(payload, until):
        dev.publish("tally/v1/%s/data" % DEV, payload)
        deadline = time.time() + 10
        acks = []
        while not until(acks) and time.time() < deadline:
            svc.pump(0.1)
            acks += [p for t, p in dev.poll() if t.endswith("/ack")]
        return acks
    try:
        dev.publish("tally/v1/%s/birth" % DEV, birth(m), True)
        assert send_and_wait(data(recs[:3]), lambda a: a)
        postgres_server.stop()
        try:
            assert send_and_wait(data(recs[3:]), lambda a: svc.db_errors) == []
            assert svc.db_errors == 1                               # said so, kept serving
        finally:
            postgres_server.start()
        acks = send_and_wait(data(recs[3:]), lambda a: a)           # the device's retry
        assert acks and cbor2.loads(cose.verify(acks[0], KEY, DEV)) == [5, 4, 6]
        assert col.db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 6
    finally:
        dev.close()
        svc.stop()
        col.close()


def test_two_workers_quarantine_the_same_poison_once(postgres):
    """A retained birth goes to every worker (plain subscriptions): two
    workers refusing the same signed message at the same time keep it once,
    raise one alarm, and neither gets a database error."""
    import threading
    from test_validate import EVIL, KEYS as VKEYS, SID, a_birth, signed
    first = Collector(postgres, keys=VKEYS)
    first._b.execute("INSERT INTO schemas VALUES (?,?,?)", (EVIL, SID, '[["x", "s", 0, "odometer"]]'))
    workers = [first, Collector(postgres, keys=VKEYS)]
    topic, msg = signed(a_birth(), "birth")                 # reuses the stored id with other metrics
    go = threading.Barrier(2)
    errors = []

    def run(c):
        try:
            go.wait(10)
            for _ in range(5):
                c.handle(topic, msg)
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=run, args=(c,)) for c in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert first.db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 1
    assert first.db.execute("SELECT COUNT(*) FROM alarms").fetchone()[0] == 1
    assert first.counter(EVIL, "rejected:schema conflict") == 10
    for c in workers:
        c.close()
