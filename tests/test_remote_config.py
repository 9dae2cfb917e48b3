"""Remote config end to end through a real mosquitto: `tally config push`
signs and publishes a retained config, the device applies it and answers on
cfgack, the collector records the answer, and `tally config status` shows it;
a config the device's rules refuse never leaves the CLI."""
import time

from agent import cose
from agent.agent import Agent
from agent.cli import main
from agent.clock import VirtualClock
from agent.collector.service import CollectorService
from agent.collector.store import Collector
from agent.log import file_log
from agent.port.mqtt_paho import PahoTransport
from boards.emulated import Emulation

MASTER = "00112233445566778899aabbccddeeff"
DEV = "cfg-dev"


def test_config_push_applied_and_reported(broker, tmp_path, capsys):
    db = str(tmp_path / "ledger.sqlite")
    key = cose.device_key(bytes.fromhex(MASTER), DEV)
    col = Collector(db, keys=lambda d: cose.device_key(bytes.fromhex(MASTER), d))
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    clock = VirtualClock()
    t = PahoTransport(DEV, broker.url)
    ag = Agent(DEV, Emulation(clock, seed=2).channels(), file_log(str(tmp_path / "l.bin"), DEV),
               clock, transport=t, interval_ms=60000, sample_ms=60000,
               uplink_opts=dict(key=key)).start()

    def until(cond, secs=10):
        end = time.monotonic() + secs
        while time.monotonic() < end and not cond():
            clock.advance_ms(1000)
            ag.tick()
            svc.pump(0.01)
        return cond()

    try:
        assert until(lambda: t.connected() and ag.uplink._session is not None)
        assert main(["config", "push", DEV, "--broker", broker.url, "--db", db,
                     "--master-key", MASTER, "--set", "interval_s=120", "--set", "window=6"]) == 0
        assert until(lambda: (col.config_status(DEV) or {}).get("ok") is True)
        assert ag.uplink.window == 6 and ag.uplink.config.version == 1
        assert until(lambda: ag.interval == 120000)
        capsys.readouterr()
        assert main(["config", "status", DEV, "--db", db, "--master-key", MASTER]) == 0
        assert "version 1 applied; in force: 1" in capsys.readouterr().out
        # out of range: the CLI refuses it with the device's own rule, nothing is published
        assert main(["config", "push", DEV, "--broker", broker.url, "--db", db,
                     "--master-key", MASTER, "--set", "window=0"]) == 2
        assert "window=0 is not an integer in 1..32" in capsys.readouterr().err
        assert main(["config", "push", DEV, "--broker", broker.url, "--db", db,
                     "--master-key", MASTER, "--set", "interval_s=fast"]) == 2
        assert "'fast' is not an integer" in capsys.readouterr().err
        until(lambda: False, 1)
        assert ag.uplink.config.version == 1 and ag.uplink.window == 6
    finally:
        t.close()
        svc.stop()
        col.close()


def _publish_retained(url, msgs):
    from agent.port.mqtt_paho import Client
    c = Client("tally-test-%d" % time.monotonic_ns(), url, None)
    c.connect(c.host, c.port, 30)
    c.loop_start()
    try:
        for tp, body in msgs:
            c.publish(tp, body, qos=1, retain=True).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_retained_hostile_config_and_ack_are_counted_on_every_reconnect_and_metering_goes_on(broker, tmp_path):
    import cbor2
    db = str(tmp_path / "ledger.sqlite")
    key = cose.device_key(bytes.fromhex(MASTER), DEV)
    col = Collector(db, keys=lambda d: cose.device_key(bytes.fromhex(MASTER), d))
    svc = CollectorService(broker.url, col).start()
    svc.wait_ready(10)
    clock = VirtualClock()
    t = PahoTransport(DEV, broker.url)
    ag = Agent(DEV, Emulation(clock, seed=2).channels(), file_log(str(tmp_path / "l.bin"), DEV),
               clock, transport=t, interval_ms=60000, sample_ms=60000,
               uplink_opts=dict(key=key, batch_max=5)).start()
    # Signed with the device's own key (a stolen key, a buggy collector): the
    # device's own will reflected onto its ack topic, and a config whose
    # settings have the wrong types; both retained, so every (re)connect
    # delivers them again.
    _publish_retained(broker.url, [
        ("tally/v1/%s/ack" % DEV, ag.uplink.death()),
        ("tally/v1/%s/config" % DEV, cose.mac0(cbor2.dumps(
            {"v": 1, "version": 5, "window": "six", "interval_s": [60]}), key, DEV))])
    up = ag.uplink

    def until(cond, secs=10):
        end = time.monotonic() + secs
        while time.monotonic() < end and not cond():
            clock.advance_ms(1000)
            ag.tick()
            svc.pump(0.01)
        return cond()

    try:
        assert until(lambda: up.h["bad_acks"] == 1 and up.h["bad_configs"] == 1)
        st = col.config_status(DEV)
        assert until(lambda: (col.config_status(DEV) or {}).get("ok") is False), st
        assert "window" in col.config_status(DEV)["reason"]
        sess = t.session()
        broker.restart()                       # retained messages persist: both come again
        assert until(lambda: t.session() > sess and up.h["bad_acks"] == 2, 20)
        # the same refused config again is not answered or counted twice; the agent meters on
        assert up.h["bad_configs"] == 1 and up.config.version == 0 and up.window == 4
        before = ag.records
        assert until(lambda: ag.records >= before + 12 and ag.log.depth() == 0, 30)
        tot = col.summary(DEV)["epochs"][ag.log.epoch]["totals"]
        assert tot["bad_configs"] == 1 and tot["bad_acks"] == 2, tot
    finally:
        t.close()
        svc.stop()
        col.close()


def test_config_push_needs_the_ledger_and_records_nothing_it_did_not_publish(tmp_path, capsys):
    from hil.harness.mosquitto import free_port
    keyfile = tmp_path / "master.key"         # not the example key, not on the command line: no warnings
    keyfile.write_text("f0e1d2c3b4a5968778695a4b3c2d1e0f\n")
    args = ["config", "push", DEV, "--master-key-file", str(keyfile), "--set", "window=5"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give the collector's ledger with --db" in err
    missing = tmp_path / "nothing.sqlite"
    assert main(args + ["--db", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no ledger at %s" % missing in err
    assert not missing.exists()                     # and none was made
    db = str(tmp_path / "ledger.sqlite")
    Collector(db, keys=lambda d: None).close()
    down = "mqtt://127.0.0.1:%d" % free_port()      # nothing listens there
    assert main(args + ["--db", db, "--broker", down]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing published, no version recorded" in err, err
    col = Collector(db, keys=lambda d: None)
    assert col.db.execute("SELECT COUNT(*) FROM configs").fetchone()[0] == 0
    assert col.config_status(DEV) is None
    col.close()
    capsys.readouterr()
    assert main(["config", "status", DEV, "--db", db, "--master-key", MASTER]) == 0
    assert "the device has reported no config yet" in capsys.readouterr().out
