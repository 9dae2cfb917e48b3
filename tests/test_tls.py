"""TLS between devices, broker and collector, through a real mosquitto that
requires client certificates from the fleet CA and enforces Tally's ACL
(hil/harness/pki.py makes the certificates; agent/cli/pki.py the ACL and listener)."""
import os
import subprocess
import sys
import time

import pytest

from agent.cli import pki as agent_pki
from agent.collector.service import CollectorService
from agent.cli.toml_config import ConfigError, validate
from agent.port.mqtt_paho import Client, PahoTransport, check_client_cert, parse_url
from hil.harness.sim import simulate

from conftest import ROOT, until


class Recorder:
    """Stands in for the collector's store: notes what the service hands it."""
    def __init__(self):
        self.seen = []

    def handle(self, topic, payload):
        self.seen.append((topic, bytes(payload)))
        return ()


class Raw:
    """A bare MQTT client with a certificate, to do what Tally's own code never does."""
    def __init__(self, url, name, tls):
        self.got = []
        self.subacks = []
        self.c = Client(name, url, tls, on_connect=lambda *a: None)
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, bytes(m.payload)))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.extend(r.value for r in rcs)
        self.c.connect(self.c.host, self.c.port)
        self.c.loop_start()

    def subscribe(self, *filters):
        n = len(self.subacks) + len(filters)
        self.c.subscribe([(f, 1) for f in filters])
        assert until(lambda: len(self.subacks) >= n), "no SUBACK"

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def refused(url, tls):
    """A device transport that tries url with tls; returns it once the attempt failed."""
    t = PahoTransport("dev-a", url, tls=tls)
    t.connect()
    assert until(lambda: t.last_error is not None), "no error recorded"
    assert not t.connected() and t.connect() is False      # the uplink backs off
    t.close()
    return t.last_error


def run_agent(tmp_path, device_id, url, key, tls, seconds):
    """`tally run` on the emulated board with [tls] in its config."""
    cfg = tmp_path / "tally.toml"
    cfg.write_text('device_id = "%s"\ninterval_s = 1\nsample_ms = 100\nlog_path = "%s"\n'
                   'broker = "%s"\nserial = "loopback"\nkey = "%s"\n[tls]\nca = "%s"\ncert = "%s"\n'
                   'key = "%s"\n' % (device_id, tmp_path / "log.bin", url, key, tls["ca"], tls["cert"],
                                     tls["key"]))
    return subprocess.run([sys.executable, "-m", "agent.cli", "run", "--board", "emulated",
                           "--config", str(cfg), "--duration", str(seconds)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


# -- through the broker ----------------------------------------------------------------

def test_fleet_over_tls_reconciles(tls_broker, pki):
    """Devices with their own certificates publish through the uplink; the
    collector, with its certificate, ledgers and acks every record."""
    rep = simulate(devices=2, days=0.25, broker=tls_broker.url, tls=pki.tls_for)
    assert rep["reconciled"], rep["devices"]
    assert all(d["records_in_ledger"] == 360 for d in rep["devices"])


def test_device_cannot_publish_under_another_id(tls_broker, pki):
    rec = Recorder()
    svc = CollectorService(tls_broker.url, rec, tls=pki.collector_tls).start()
    svc.wait_ready(10)
    a = Raw(tls_broker.url, "dev-a", pki.device_tls("dev-a"))
    try:
        for kind in ("data", "birth", "death"):
            a.publish("tally/v1/dev-b/%s" % kind, b"forged")   # PUBACKed, then dropped
        a.publish("tally/v1/dev-a/data", b"mine")
        assert until(lambda: (svc.pump(0.05) or True) and ("tally/v1/dev-a/data", b"mine") in rec.seen)
        svc.pump(0.3)
        assert rec.seen == [("tally/v1/dev-a/data", b"mine")]
    finally:
        a.close()
        svc.stop()


def test_device_cannot_read_or_forge_another_devices_acks(tls_broker, pki):
    """mosquitto 2's acl_file grants every SUBSCRIBE, shared or not, and checks
    read access per message on delivery: dev-a's subscriptions to dev-b's ack
    topic succeed but carry nothing; dev-a's forged ack never reaches dev-b."""
    col = Raw(tls_broker.url, "collector", pki.collector_tls)
    a = Raw(tls_broker.url, "dev-a", pki.device_tls("dev-a"))
    b = Raw(tls_broker.url, "dev-b", pki.device_tls("dev-b"))
    try:
        a.subscribe("tally/v1/dev-b/ack", "tally/v1/+/ack", "$share/x/tally/v1/dev-b/ack",
                    "tally/#", "tally/v1/dev-a/ack")
        b.subscribe("tally/v1/dev-b/ack")
        a.publish("tally/v1/dev-b/ack", b"forged")
        col.publish("tally/v1/dev-b/ack", b"for b")
        col.publish("tally/v1/dev-a/ack", b"for a")
        assert until(lambda: ("tally/v1/dev-a/ack", b"for a") in a.got)
        assert until(lambda: ("tally/v1/dev-b/ack", b"for b") in b.got)
        time.sleep(0.3)
        assert all(t == "tally/v1/dev-a/ack" and p == b"for a" for t, p in a.got), a.got
        assert b.got == [("tally/v1/dev-b/ack", b"for b")]
        assert set(a.subacks) <= {1, 0x80}     # granted today; a denial would do as well
    finally:
        for c in (col, a, b):
            c.close()


def test_collector_reads_data_only_through_its_acl(tls_broker, pki):
    """The collector's data arrives on its shared subscription under a plain
    `topic read tally/v1/+/data` rule; it may not forge device data."""
    rec = Recorder()
    svc = CollectorService(tls_broker.url, rec, tls=pki.collector_tls).start()
    svc.wait_ready(10)
    col = Raw(tls_broker.url, "collector", pki.collector_tls)
    a = Raw(tls_broker.url, "dev-a", pki.device_tls("dev-a"))
    try:
        col.publish("tally/v1/dev-a/data", b"forged by the collector")
        a.publish("tally/v1/dev-a/birth", b"b")
        a.publish("tally/v1/dev-a/data", b"d")
        a.publish("tally/v1/dev-a/cfgack", b"c")
        assert until(lambda: (svc.pump(0.05) or True) and len(rec.seen) >= 3)
        svc.pump(0.3)
        assert sorted(rec.seen) == [("tally/v1/dev-a/birth", b"b"), ("tally/v1/dev-a/cfgack", b"c"),
                                    ("tally/v1/dev-a/data", b"d")]
    finally:
        col.close()
        a.close()
        svc.stop()


def test_foreign_ca_certificate_is_refused_and_named(tls_broker, pki):
    err = refused(tls_broker.url, pki.foreign_tls("dev-a"))
    assert "refused our client certificate" in err and "unknown CA" in err, err


def test_expired_certificate_is_refused_and_named(tls_broker, pki):
    err = refused(tls_broker.url, pki.expired_tls("dev-a"))
    assert "refused our client certificate" in err and "expired" in err, err


def test_broker_certificate_from_an_untrusted_ca_fails_verification(tls_broker, pki):
    err = refused(tls_broker.url, dict(pki.device_tls("dev-a"), ca=pki.foreign_ca()))
    assert "certificate verify failed" in err and "broker's certificate" in err, err


def test_no_client_certificate_is_refused(tls_broker, pki):
    err = refused(tls_broker.url, {"ca": pki.ca})
    assert "client certificate" in err, err


def test_plain_tcp_cannot_use_the_tls_port(tls_broker):
    err = refused("mqtt://127.0.0.1:%d" % tls_broker.port, None)
    assert "closed the connection before accepting it" in err and "mqtts://" in err, err


def test_tls_cannot_use_a_plain_port(broker, pki):
    err = refused("mqtts://127.0.0.1:%d" % broker.port, pki.device_tls("dev-a"))
    assert "during the TLS handshake" in err, err


def test_collector_says_why_it_cannot_subscribe(tls_broker, pki):
    svc = CollectorService(tls_broker.url, Recorder(), tls=pki.expired_tls("collector")).start()
    try:
        with pytest.raises(ConnectionError, match="expired"):
            svc.wait_ready(3)
    finally:
        svc.stop()


def test_run_and_collect_over_tls_as_separate_processes(tls_broker, pki, tmp_path):
    """`tally run` with [tls] in its config, `tally collect --ca --cert --key`."""
    import sqlite3
    key = "00112233445566778899aabbccddeeff"
    (tmp_path / "keys.json").write_text('{"pi-9": "%s"}' % key)
    db = tmp_path / "ledger.sqlite"
    ct = pki.collector_tls
    col = subprocess.Popen([sys.executable, "-m", "agent.cli", "collect", "--broker", tls_broker.url,
                            "--db", str(db), "--keys", str(tmp_path / "keys.json"), "--duration", "20",
                            "--ca", ct["ca"], "--cert", ct["cert"], "--key", ct["key"]], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    run = run_agent(tmp_path, "pi-9", tls_broker.url, key, pki.device_tls("pi-9"), 5)
    col.terminate()
    out, err = col.communicate(timeout=20)
    assert run.returncode == 0, run.stderr
    assert "0 unacked in the log" in run.stdout, run.stdout + run.stderr
    assert "collecting from mqtts://" in out, err
    n = sqlite3.connect(str(db)).execute("SELECT COUNT(*) FROM records WHERE device_id='pi-9'").fetchone()[0]
    assert n >= 3


def test_run_logs_the_cause_of_a_refused_connection_once(tls_broker, pki, tmp_path):
    run = run_agent(tmp_path, "pi-8", tls_broker.url, "ab" * 16, pki.expired_tls("pi-8"), 4)
    assert run.returncode == 0, run.stderr
    said = [x for x in run.stderr.splitlines() if x.startswith("tally: broker: ")]
    assert len(said) == 1 and "expired" in said[0], run.stderr


# -- without a broker ------------------------------------------------------------------

def test_a_silent_refusal_is_diagnosed_from_our_own_certificate(pki):
    """A TLS 1.3 broker that refuses a client certificate may just close the
    connection; the transport then checks its certificate against its CA."""
    assert check_client_cert(**pki.device_tls("dev-a")) is None
    eof = OSError("EOF occurred in violation of protocol (_ssl.c:2427)")
    for tls, needle in ((pki.foreign_tls("dev-a"), "unknown CA"), (pki.expired_tls("dev-a"), "expired")):
        assert needle in Client("dev-a", "mqtts://127.0.0.1:1", tls).describe(eof)


def test_the_acl_lets_through_every_topic_tally_uses():
    """A topic kind added to the wire must be added to the ACL too."""
    subs = []

    class Fake:
        def subscribe(self, filters):
            subs.extend(f for f, qos in filters)
    CollectorService("mqtt://127.0.0.1:1", Recorder())._on_connect(Fake(), None, None, 0)
    PahoTransport("dev-a", "mqtt://127.0.0.1:1")._on_connect(Fake(), None, None, 0)
    collector_reads = {f.rsplit("/", 1)[1] for f in subs if "/+/" in f}
    device_reads = {f.rsplit("/", 1)[1] for f in subs if "/dev-a/" in f}
    assert collector_reads == set(agent_pki.DEVICE_WRITES)
    assert device_reads == set(agent_pki.COLLECTOR_WRITES)


def test_urls_and_tls_settings_are_checked(pki, tmp_path):
    assert parse_url("mqtts://broker.example") == ("broker.example", 8883, True)
    assert parse_url("mqtt://broker.example") == ("broker.example", 1883, False)
    with pytest.raises(ValueError, match="mqtts://"):
        PahoTransport("dev-a", "mqtt://127.0.0.1:1883", tls=pki.device_tls("dev-a"))
    with pytest.raises(ValueError, match="no such file"):
        PahoTransport("dev-a", "mqtts://127.0.0.1", tls={"ca": str(tmp_path / "nope.crt")})
    with pytest.raises(ValueError, match="needs its key"):
        PahoTransport("dev-a", "mqtts://127.0.0.1", tls={"cert": pki.device_tls("dev-a")["cert"]})
    other = pki.device_tls("dev-b")
    with pytest.raises(ValueError, match="certificate .* with key"):
        PahoTransport("dev-a", "mqtts://127.0.0.1", tls=dict(pki.device_tls("dev-a"), key=other["key"]))


@pytest.mark.parametrize("tls,broker,needle", [
    ({"ca": "/nonexistent/ca.crt"}, "mqtts://b:8883", "key 'tls.ca' must be the CA certificate file"),
    ({"cafile": "x"}, "mqtts://b:8883", "unknown key 'tls.cafile'"),
    ({"cert": "CERT"}, "mqtts://b:8883", "'tls.cert' and 'tls.key' go together"),
    ({"ca": "CA"}, "mqtt://b:1883", "[tls] needs an mqtts:// broker URL"),
    ("ca.crt", "mqtts://b:8883", "[tls] must be a table"),
])
def test_config_tls_is_validated_with_the_key_named(pki, tls, broker, needle):
    d = pki.device_tls("dev-a")
    if isinstance(tls, dict):
        tls = {k: {"CA": d["ca"], "CERT": d["cert"]}.get(v, v) for k, v in tls.items()}
    raw = {"device_id": "dev-a", "broker": broker, "key": "ab" * 16, "tls": tls}
    with pytest.raises(ConfigError) as e:
        validate(raw)
    assert needle in str(e.value)
    raw["broker"], raw["tls"] = "mqtts://b:8883", d
    assert validate(raw)["tls"] == d


def test_pki_cli_makes_a_fleet_and_refuses_what_it_should(tmp_path):
    def tally(*args):
        return subprocess.run([sys.executable, "-m", "agent.cli", "pki"] + list(args), cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
    d = str(tmp_path / "fleet")
    r = tally("init", d, "--host", "broker.example", "--host", "10.0.0.5")
    assert r.returncode == 0, r.stderr
    for f in ("ca.crt", "server.crt", "collector.crt", "mosquitto/acl", "mosquitto/tally.conf"):
        assert os.path.exists(os.path.join(d, f)), f
    assert os.stat(os.path.join(d, "ca.key")).st_mode & 0o077 == 0
    r = tally("device", d, "compressor-0042")
    assert r.returncode == 0 and "[tls]" in r.stdout, r.stderr
    dev = {"ca": os.path.join(d, "ca.crt"), "cert": os.path.join(d, "devices", "compressor-0042.crt"),
           "key": os.path.join(d, "devices", "compressor-0042.key")}
    assert check_client_cert(**dev) is None
    for args, needle in ((("init", d), "already holds a CA"),
                         (("device", d, "collector"), "reserved for the collector"),
                         (("device", d, "a/b"), "no / + #"),
                         (("device", str(tmp_path / "none"), "x"), "tally pki init")):
        r = tally(*args)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_security_doc_shows_the_acl_and_listener_the_tests_use():
    with open(os.path.join(ROOT, "docs", "security.md")) as f:
        doc = f.read()
    assert agent_pki.mosquitto_acl() in doc
    conf = agent_pki.mosquitto_tls_conf(8883, "/etc/mosquitto/tally/ca.crt",
                                        "/etc/mosquitto/tally/server.crt",
                                        "/etc/mosquitto/tally/server.key", "/etc/mosquitto/tally/acl")
    assert conf in doc
