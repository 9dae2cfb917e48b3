"""Our own MQTT 3.1.1 client (agent/port/mqtt_mp.py, for MicroPython and
CPython) and the uplink transport on it, against a real mosquitto: round
trips at QoS 0 and 1 with itself and with paho, the will, keepalive pings,
dead links (a broker restart, a peer that swallows packets, nothing
listening) and the uplink syncing through it to the collector service; then
the same client under the MicroPython unix port with a 64 KiB heap."""
import socket
import threading
import time

import pytest

from agent.port.mqtt_mp import MPTransport, MQTTClient, MQTTError
from hil.harness.mosquitto import free_port
from conftest import MP, bundle, mp_run, until  # noqa: F401 (bundle: the compiled fixture)

pytestmark = pytest.mark.broker
HOST = "127.0.0.1"


def client(broker, name, **kw):
    c = MQTTClient(name, HOST, broker.port, **kw)
    c.connect()
    return c


def receive(c, n=1, timeout=10):
    """The next n messages (the client holds MAX_QUEUE at most until they are taken)."""
    got = []

    def take():
        c.check_msg(100)
        got.extend(c.msgs)
        c.msgs = []
    assert until(lambda: len(got) >= n, timeout, take), got
    return got


def check(c, ms):
    """Poll c; False once its link is gone."""
    try:
        c.check_msg(ms)
    except OSError:
        pass
    return c.connected()


def test_remaining_length_varint_at_its_boundaries():
    c = MQTTClient("v", HOST)
    c.sock, peer = socket.socketpair()
    with peer:
        for n, size in ((0, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (2097151, 3),
                        (2097152, 4), (268435455, 4)):
            k = c._hdr(0x30, n)
            assert k == 1 + size
            peer.sendall(bytes(c._hb[:k]))
            assert c._u8() == 0x30 and c._length() == n
        with pytest.raises(ValueError):
            c._hdr(0x30, 268435456)
        peer.sendall(b"\xff\xff\xff\xff\x01")                 # a fifth length byte
        with pytest.raises(MQTTError):
            c._length()
    c.close()


def test_two_of_ours_round_trip_at_qos_0_and_1(broker):
    a, b = client(broker, "a"), client(broker, "b")
    a.subscribe(["t/+/x", "t/q1"])
    assert b.publish("t/1/x", b"zero") == 0
    pid = b.publish("t/q1", b"\x00one" * 100, qos=1)      # over 127 bytes: a 2-byte length
    assert pid and pid in b.pend
    b.wait_puback(pid)
    assert not b.pend
    assert receive(a, 2) == [("t/1/x", b"zero"), ("t/q1", b"\x00one" * 100)]
    big = bytes(range(256)) * 80                          # 20 KiB: a 3-byte length
    a.max_msg = len(big)
    b.publish("t/q1", big, qos=1)
    assert receive(a) == [("t/q1", big)]
    a.max_msg = 1000                                      # too big now: read, dropped, link kept
    b.publish("t/q1", big, qos=1)
    b.publish("t/q1", b"after", qos=1)
    assert receive(a) == [("t/q1", b"after")] and a.dropped == 1
    # many QoS 1 publishes in a row: past MAX_PEND the client waits for PUBACKs
    for i in range(30):
        b.publish("t/q1", b"%d" % i, qos=1)
    assert [p for _, p in receive(a, 30)] == [b"%d" % i for i in range(30)]
    assert until(lambda: not b.pend, 10, lambda: b.check_msg(100))
    b.disconnect()
    a.disconnect()
    assert not a.connected() and not b.connected()
    with pytest.raises(OSError):
        a.publish("t/q1", b"x")


def test_round_trip_with_paho_both_ways(broker):
    from agent.port.mqtt_paho import Client
    subscribed = threading.Event()
    got = []
    p = Client("paho-1", broker.url)
    p.on_connect = lambda c, u, f, rc, props=None: c.subscribe("to/paho", 1)
    p.on_subscribe = lambda *a: subscribed.set()
    p.on_message = lambda c, u, m: got.append((m.topic, m.payload, m.qos))
    p.connect(HOST, broker.port, 30)
    p.loop_start()
    try:
        assert subscribed.wait(10)
        ours = client(broker, "ours")
        ours.subscribe(["to/ours"])
        ours.wait_puback(ours.publish("to/paho", b"from ours", qos=1))
        ours.publish("to/paho", b"qos0")
        assert until(lambda: len(got) == 2, 10)
        assert got == [("to/paho", b"from ours", 1), ("to/paho", b"qos0", 0)]
        p.publish("to/ours", b"from paho", qos=1).wait_for_publish(10)
        p.publish("to/ours", b"paho qos0", qos=0)
        assert receive(ours, 2) == [("to/ours", b"from paho"), ("to/ours", b"paho qos0")]
        ours.disconnect()
    finally:
        p.disconnect()
        p.loop_stop()


def test_the_will_goes_out_when_the_socket_dies_and_not_on_a_clean_disconnect(broker):
    watcher = client(broker, "watcher")
    watcher.subscribe(["tally/v1/+/death"])
    clean, dying = MPTransport("dev-c", HOST, broker.port), MPTransport("dev-k", HOST, broker.port)
    for t in (clean, dying):
        t.will = ("tally/v1/%s/death" % t.device_id, b"gone " + t.device_id.encode())
        assert t.connect() and t.connected() and t.session() == 1
    clean.close()                       # DISCONNECT first: the broker drops the will
    dying.c.sock.close()                # no DISCONNECT: a crash, a cut cable
    # the broker handles the clean one first, so had it sent a will it would come first
    assert receive(watcher) == [("tally/v1/dev-k/death", b"gone dev-k")]
    watcher.check_msg(300)
    assert watcher.msgs == []


def test_keepalive_pings_keep_an_idle_link_up_and_a_mute_one_is_dropped(broker):
    live = client(broker, "live", keepalive=2)
    mute = client(broker, "mute", keepalive=2)
    mute.keepalive = 0                  # the broker still expects a packet every 2 s; none come
    t0 = time.monotonic()
    # live polls (and so pings); mute only listens, until the broker drops it
    # (at 1.5 x keepalive = 3 s) and live has been idle at least 4 s
    assert until(lambda: not mute.connected() and time.monotonic() - t0 > 4, 20,
                 lambda: (live.check_msg(50), check(mute, 50)))
    assert time.monotonic() - t0 > 2.5 and mute.pings == 0
    assert live.connected() and live.pings >= 2
    live.subscribe(["still/up"])
    live.publish("still/up", b"yes", qos=1)
    assert receive(live) == [("still/up", b"yes")]
    live.disconnect()


def test_a_broker_restart_drops_the_link_and_connect_works_again(broker):
    t = MPTransport("dev-r", HOST, broker.port, timeout_ms=3000)
    t.will = ("tally/v1/dev-r/death", b"x")
    assert t.connect()
    broker.stop()
    t0 = time.monotonic()
    assert until(lambda: not t.connected(), 3 + 10, t.poll)
    assert time.monotonic() - t0 < 3 + 10
    assert not t.publish("tally/v1/dev-r/data", b"lost")
    t0 = time.monotonic()
    assert not t.connect() and t.last_error
    assert time.monotonic() - t0 < 3 + 10      # refused at once; bounded by the timeout anyway
    broker.start()
    assert t.connect() and t.session() == 2 and t.last_error is None
    assert t.publish("tally/v1/dev-r/ack", b"after")   # to our own ack topic: it comes back
    assert until(lambda: t.c.msgs, 10, lambda: t.c.check_msg(100))
    assert t.poll() == [("tally/v1/dev-r/ack", b"after")]
    t.close()


def test_connect_with_nothing_listening_or_a_silent_listener_fails_in_time():
    t = MPTransport("dev-n", HOST, free_port(), timeout_ms=2000)
    t0 = time.monotonic()
    assert not t.connect() and not t.connected() and t.errors == 1
    assert time.monotonic() - t0 < 2 + 10
    # a listener that never answers: the TCP handshake completes, no CONNACK comes
    with socket.socket() as srv:
        srv.bind((HOST, 0))
        srv.listen(1)
        t = MPTransport("dev-s", HOST, srv.getsockname()[1], timeout_ms=1000)
        t0 = time.monotonic()
        assert not t.connect() and not t.connected()
        assert 0.5 < time.monotonic() - t0 < 1 + 10


class Swallower(threading.Thread):
    """A peer that accepts our CONNECT and SUBSCRIBE, then swallows every
    packet, PINGREQs included: a link dead somewhere past the socket."""

    def __init__(self):
        super().__init__(daemon=True)
        self.srv = socket.socket()
        self.srv.bind((HOST, 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.seen = []

    def run(self):
        conn, _ = self.srv.accept()
        with conn:
            f = conn.makefile("rb")
            while True:
                op = f.read(1)
                if not op:
                    return
                n = sh = 0
                while True:
                    b = f.read(1)[0]
                    n |= (b & 0x7F) << sh
                    sh += 7
                    if b < 0x80:
                        break
                body = f.read(n)
                self.seen.append(op[0] & 0xF0)
                if op[0] == 0x10:
                    conn.sendall(b"\x20\x02\x00\x00")
                elif op[0] == 0x82:
                    conn.sendall(b"\x90\x04" + body[:2] + b"\x01\x01")


def test_no_pingresp_within_the_timeout_marks_the_link_dead():
    peer = Swallower()
    peer.start()
    t = MPTransport("dev-p", HOST, peer.port, keepalive=1, timeout_ms=1000)
    assert t.connect() and t.connected()
    assert until(lambda: not t.connected(), 30, t.poll)
    assert t.c.pings == 1 and "no PINGRESP" in t.last_error
    assert 0xC0 in peer.seen
    peer.srv.close()


def test_an_uplink_over_mptransport_syncs_to_the_collector_service(broker, tmp_path):
    from agent.agent import Agent
    from agent.clock import VirtualClock
    from agent.collector.service import CollectorService
    from agent.collector.store import Collector
    from agent.log import file_log
    from boards.emulated import Emulation
    key, dev = bytes(range(32)), "dev-u"
    col = Collector(keys=lambda d: key if d == dev else None)
    svc = CollectorService(broker.url, col).start()
    try:
        svc.wait_ready(10)
        clock = VirtualClock()
        log = file_log(str(tmp_path / "log.bin"), dev, capacity=256 * 1024)
        t = MPTransport(dev, HOST, broker.port)
        ag = Agent(dev, Emulation(clock, seed=5).channels(), log, clock, transport=t,
                   interval_ms=60000, sample_ms=60000,
                   uplink_opts=dict(key=key, batch_max=10, window=2)).start()
        up = ag.uplink

        def settle():                   # acks come in real time: let them, before time moves on
            assert until(lambda: not up.inflight, 10,
                         lambda: (svc.pump(0.01), up.step(clock.uptime_ms())))
        for _ in range(45):
            clock.advance_ms(60000)
            ag.tick()
            settle()
        clock.advance_ms(30000)
        ag.close_now()                  # a 46th, partial interval
        up.flush = True
        up.step(clock.uptime_ms())
        settle()
        assert up.idle() and log.depth() == 0 and log.acked == log.next_seq - 1 == ag.records
        assert col.summary(dev)["epochs"][log.epoch]["covered"] == ag.records == 46
        assert up.h["fail_conn"] == up.h["fail_pub"] == up.h["bad_acks"] == 0
        assert up.h["republished"] == 0 and up.sent_batches >= 5 and t.session() == 1
        t.close()
        ag.stop()
    finally:
        svc.stop()
        col.close()


@pytest.mark.micropython
@pytest.mark.skipif(not MP, reason="micropython unix port not installed")
def test_the_client_under_micropython_echoes_through_mosquitto_without_allocating(bundle, broker):  # noqa: F811
    r = mp_run(bundle, "import mqtt_echo_mp; mqtt_echo_mp.main(%d)" % broker.port, timeout=120)
    print(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("ECHO ")][-1]
    f = dict(kv.split("=") for kv in line.split()[1:])
    assert f["ok"] == "20/20" and f["session"] == "1"
    # a publish allocates nothing (QoS 0; QoS 1 with its PUBACK polled); nor does an empty poll
    assert f["alloc_qos0"] == f["alloc_qos1"] == f["alloc_poll"] == "0"
    assert 0 < int(f["mem_free_min"]) < 64 * 1024
