"""tally bench payload on what ships: every profile's real schema at its
default settings, measured from the bytes the agent publishes (read back
here with cbor2, hmac and the MQTT 3.1.1 packet a real client writes), and
the reference batch's Sparkplug B row filled."""
import hashlib
import hmac
import socket
import threading

import cbor2
import pytest

from agent import batch, cose
from agent.sync import Uplink
from hil.bench import payload

HOURS = 2.5          # two full batches of 60 one-minute records at the defaults


def test_the_defaults_measured_are_the_agents_and_the_example_configs():
    import inspect
    import tomllib
    from conftest import ROOT
    s = payload.defaults()
    p = inspect.signature(Uplink.__init__).parameters
    assert s["batch_max"] == p["batch_max"].default == 60
    assert s["max_latency_s"] * 1000 == p["max_latency_ms"].default
    ex = tomllib.load(open(ROOT + "/docs/tally.example.toml", "rb"))
    for k in ("interval_s", "sample_ms", "batch_max", "max_latency_s", "window"):
        assert ex[k] == s[k], k           # the example config says what a device runs by default


@pytest.mark.parametrize("profile", payload.PROFILES)
def test_each_profile_is_measured_from_the_bytes_it_publishes(profile):
    sent = []
    f = payload.profile_payload(profile, hours=HOURS, keep=sent)
    device = f["device"]
    key = cose.device_key(b"tally-bench-payload-key", device)
    births = [m for t, m in sent if t.endswith("/birth")]
    schema = cbor2.loads(cose.verify(births[0], key, device))["schema"]
    assert f["metrics"] == len(schema)                  # the schema the agent announces, system metrics too
    names = [m[0] for m in schema]
    assert "sync_ok" in names and "err_nack" in names
    data = [(t, m) for t, m in sent if t.endswith("/data")]
    assert f["batches"] == len(data) == 2
    recs = total = bare = 0
    seqs = []
    for topic, msg in data:
        assert topic == "tally/v1/%s/data" % device
        # COSE_Mac0 read by hand: tag 17, the protected header, the tag over MAC0 structure
        outer = cbor2.loads(msg)
        prot, _, inner, tag = outer.value
        assert outer.tag == 17 and prot == b"\xa1\x01\x04"
        assert tag == hmac.new(key, cbor2.dumps(["MAC0", prot, device.encode(), inner]),
                               hashlib.sha256).digest()[:8]
        b, ext = batch.split_ext(cbor2.loads(inner), len(schema))      # ext: stress histograms
        assert b[0] == 2 and b[11] == 60 and len(b) == 13 + len(schema)
        rows = batch.decode(b)
        seqs += [r["seq"] for r in rows]
        recs += len(rows)
        bare += len(inner)
        total += len(_publish_bytes(topic, msg))
    assert seqs == list(range(seqs[0], seqs[0] + 120))   # every record once, in order
    assert f["records"] == f["unique_records"] == recs == 120
    assert f["bare"] == round(bare / recs, 2)
    assert f["cose_mqtt"] == round(total / recs, 2)      # the bench's framing is the client's
    w = f["where"]
    assert abs(sum(w.values()) - f["cose_mqtt"]) <= 0.05  # every byte is in one place
    assert w["sensors"] > w["system"] > 0 and w["mqtt"] > 0 and w["cose"] > 0


def _publish_bytes(topic, payload):
    """The PUBLISH packet paho-mqtt writes at QoS 1, read off a socket that
    plays the broker (CONNACK, then it reads one packet)."""
    import paho.mqtt.client as mqtt
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got = []

    def broker():
        c, _ = srv.accept()
        c.settimeout(10)

        def packet():
            head = c.recv(1)
            rl, mul, raw = 0, 1, head
            while True:
                x = c.recv(1)
                raw += x
                rl += (x[0] & 127) * mul
                mul *= 128
                if not x[0] & 128:
                    break
            body = b""
            while len(body) < rl:
                body += c.recv(rl - len(body))
            return raw + body
        packet()                                   # CONNECT
        c.sendall(b"\x20\x02\x00\x00")             # CONNACK, accepted
        got.append(packet())                       # the PUBLISH
        c.close()
    t = threading.Thread(target=broker, daemon=True)
    t.start()
    cl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="d", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", srv.getsockname()[1])
    cl.loop_start()
    cl.publish(topic, payload, qos=1)              # no PUBACK comes: the packet is what we read
    t.join(10)
    cl.loop_stop()
    srv.close()
    assert got and got[0][0] >> 4 == 3, "no PUBLISH read"
    return got[0]


def test_the_mqtt_overhead_counted_is_the_packet_a_client_writes():
    for n in (10, 120, 900, 20000):
        topic = "tally/v1/compressor-0042/data"
        pkt = _publish_bytes(topic, b"x" * n)
        assert len(pkt) == payload._mqtt_publish_len(topic, n)
        assert pkt.endswith(b"x" * n) and topic.encode() in pkt


def test_reference_batch_with_the_sparkplug_row_filled():
    pytest.importorskip("google.protobuf", reason="protobuf: make venv installs it for pysparkplug")
    r = payload.bench_payload(hours=HOURS, micropython=False)
    per = r["bytes_per_record"]
    for p in payload.PROFILES:
        assert per[p] == r["profiles"][p]["cose_mqtt"]
    assert per["sparkplug_b_ddata_aliases"] is not None
    assert per["sparkplug_b_ddata_aliases"] > per["ours_cose_mqtt"] > per["ours_bare"]
