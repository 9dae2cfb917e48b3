"""The device's sync state machine against a real collector: a bounded window
of batches in flight, acks in any order freeing only a contiguous prefix, a
byte-rate limit on the drain, failures counted by cause, and remote config
applied or rejected with the reason sent upstream."""
import cbor2
import pytest

from agent import cose
from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector.store import Collector
from agent.log import file_log, R_IVAL
from boards.emulated import Emulation
from hil.loopback import Hub
from hil.scripted import ScriptedBroker

KEY = bytes(range(32))
DEV = "dev-s"


def HeldBroker(collector):
    return ScriptedBroker(collector.handle)


def make(tmp_path, transport, **opts):
    clock = VirtualClock()
    log = file_log(str(tmp_path / "log.bin"), DEV, capacity=256 * 1024)
    ag = Agent(DEV, Emulation(clock, seed=5).channels(), log, clock, transport=transport,
               interval_ms=60000, sample_ms=60000, uplink_opts=dict(key=KEY, **opts)).start()
    return clock, ag


def run(clock, ag, minutes, step_s=60):
    for _ in range(minutes * 60 // step_s):
        clock.advance_ms(step_s * 1000)
        ag.tick()


def reconnect(br, clock, ag):
    """Connect after a time offline (past the longest backoff), then birth
    and fill the window, without logging anything new."""
    br.refuse = False
    clock.advance_ms(300000)
    ag.uplink.step(clock.uptime_ms())
    ag.uplink.step(clock.uptime_ms())


def collector():
    return Collector(keys=lambda d: KEY if d == DEV else None)


def test_window_bounds_batches_in_flight_and_acks_free_only_a_prefix(tmp_path):
    col = collector()
    br = HeldBroker(col)
    br.refuse = True
    clock, ag = make(tmp_path, br, window=3, batch_max=10)
    run(clock, ag, 100)                      # 100 records logged while offline
    reconnect(br, clock, ag)
    up = ag.uplink
    assert len(br.held) == 3 and len(up.inflight) == 3
    assert [b[1] for b in up.inflight] == [1, 11, 21]
    ag.uplink.step(clock.uptime_ms())
    assert len(br.held) == 3                 # the window is full: nothing more goes out
    # the collector acks the second and third batches first (two workers)
    br.release(2)
    br.release(1)
    up.step(clock.uptime_ms())
    assert ag.log.acked == 0 and len(up.inflight) == 3   # a hole at the front: nothing freed
    br.release(0)
    up.step(clock.uptime_ms())
    assert ag.log.acked == 30                # the whole prefix at once
    assert len(up.inflight) == 3 and [b[1] for b in up.inflight] == [31, 41, 51]
    while br.held:
        br.release(0)
        up.step(clock.uptime_ms())
    assert ag.log.acked == 100 and up.inflight == []
    assert up.h["sync_ok"] == 10 and up.h["sync_tries"] == 10 and up.h["republished"] == 0
    assert col.summary(DEV)["epochs"][ag.log.epoch]["covered"] == 100


def test_ack_timeout_republishes_and_counts_the_cause(tmp_path):
    col = collector()
    br = HeldBroker(col)
    br.refuse = True
    clock, ag = make(tmp_path, br, window=2, batch_max=5, ack_timeout_ms=30000)
    run(clock, ag, 10)
    reconnect(br, clock, ag)
    assert len(br.held) == 2
    br.held.clear()                          # both lost on the way
    clock.advance_ms(30000)
    ag.uplink.step(clock.uptime_ms())
    assert len(br.held) == 2 and ag.uplink.h["republished"] == 2
    br.release(1)
    br.release(0)
    ag.uplink.step(clock.uptime_ms())
    assert ag.log.acked == 10
    h = ag.uplink.h
    assert h["sync_tries"] == 4 and h["sync_ok"] == 2 and h["fail_pub"] == 0
    assert h["fail_conn"] >= 5                # refused while offline, each backoff expiry


def test_failures_by_cause_land_in_the_logged_odometers(tmp_path):
    hub = Hub(collector())
    hub.down = True
    clock, ag = make(tmp_path, hub.transport(DEV), backoff_min_ms=1000, backoff_max_ms=4000)
    run(clock, ag, 20, step_s=5)
    offline = dict(zip(ag.meter.names, ag.log.last[10]))
    assert offline["unacked_s"] == 20 * 60   # the oldest interval began 20 minutes ago
    hub.down = False
    # a forged ack: right shape, wrong key
    hub.inboxes[DEV].append(("tally/v1/%s/ack" % DEV,
                             cose.mac0(cbor2.dumps([ag.log.epoch, 1, 20]), bytes(32), DEV)))
    ag.uplink.flush = True
    run(clock, ag, 2, step_s=5)
    vals = dict(zip(ag.meter.names, ag.log.last[10]))
    assert vals["fail_conn"] >= 20           # one per backoff expiry while the broker was down
    assert vals["bad_acks"] == 1
    assert vals["unacked_s"] < 60            # drained
    assert ag.log.depth() <= 1 and ag.uplink.h["sync_ok"] >= 1


def test_drain_rate_limit_holds_bytes_per_second_while_metering_goes_on(tmp_path):
    hub = Hub(collector())
    hub.down = True
    clock, ag = make(tmp_path, hub.transport(DEV), batch_max=60, window=4, drain_bps=25)
    run(clock, ag, 24 * 60)                  # a day offline: 1440 records
    hub.down = False
    while not ag.uplink.h["sync_ok"]:       # wait out the backoff; the first batch goes
        clock.advance_ms(1000)
        ag.tick()
    start_bytes = ag.uplink.h["bytes_sent"]
    t0 = clock.uptime_ms()
    intervals_before = ag.records
    for _ in range(600):                     # ten minutes, stepping every second
        clock.advance_ms(1000)
        ag.tick()
    sent = ag.uplink.h["bytes_sent"] - start_bytes
    secs = (clock.uptime_ms() - t0) // 1000
    biggest = 1000                           # more than any one batch here
    assert ag.log.acked > 0
    # at most the rate times the time, plus one second's burst and one batch
    # of debt, and at least the rate times the time less one batch
    assert 25 * secs - biggest <= sent <= 25 * secs + 25 + biggest
    assert ag.log.depth() > 200              # a day's backlog is ~21 KB: still draining
    assert ag.records - intervals_before == 10          # metering kept its schedule
    ag.uplink.drain_bps = 0                  # lift the limit: a window (240 records) a step
    run(clock, ag, 1, step_s=5)
    assert ag.log.depth() < 60               # the backlog is gone; a live part batch waits,
    assert len(ag.uplink.inflight) <= 1      # or is on its way (when depends on the jittered reconnect)


def send_config(hub, cfg, key=KEY):
    hub.retain("tally/v1/%s/config" % DEV, cose.mac0(cbor2.dumps(cfg), key, DEV))


def test_remote_config_applied_acked_and_kept_across_reconnects(tmp_path):
    col = collector()
    hub = Hub(col)
    clock, ag = make(tmp_path, hub.transport(DEV))
    run(clock, ag, 5)
    send_config(hub, {"v": 1, "version": 3, "interval_s": 300, "batch_max": 12})
    run(clock, ag, 30)
    st = col.config_status(DEV)
    assert st["active"] == 3 and st["ok"] is True
    assert ag.uplink.batch_max == 12 and ag.interval == 300000
    assert ag.log.last[R_IVAL] == 300000       # later records have the new interval
    vals = dict(zip(ag.meter.names, ag.log.last[10]))
    assert vals["config"] == 3
    at = st["answered_s"]
    hub.down = True
    run(clock, ag, 5)
    hub.down = False
    run(clock, ag, 10)                         # retained again on reconnect: no new ack
    assert col.config_status(DEV)["answered_s"] == at and ag.uplink.config.version == 3
    assert hub.retained and ag.uplink.h["sync_ok"] > 0   # and it did reconnect


@pytest.mark.parametrize("cfg,reason", [
    ({"v": 1, "version": 4, "interval_s": 0}, "interval_s=0 is not an integer in 1..86400"),
    ({"v": 1, "version": 4, "speed": 9}, "unknown setting 'speed'"),
    ({"v": 1, "version": 2, "batch_max": 5}, "version 2 is not newer than 3"),
    ({"v": 2, "version": 4}, "unknown config format v=2"),
    ({"v": 1, "version": 4, "interval_s": 60, "sample_ms": 90000}, "sample_ms=90000 is longer"),
    ({"v": 1, "version": 4, "window": True}, "window=True is not an integer"),
    ([1, 2], "config is not a map"),
])
def test_invalid_remote_config_is_rejected_with_reason_and_old_one_kept(tmp_path, cfg, reason):
    col = collector()
    hub = Hub(col)
    clock, ag = make(tmp_path, hub.transport(DEV))
    run(clock, ag, 2)
    send_config(hub, {"v": 1, "version": 3, "interval_s": 120})
    run(clock, ag, 5)
    assert ag.interval == 120000
    send_config(hub, cfg)
    run(clock, ag, 5)
    st = col.config_status(DEV)
    assert st["ok"] is False and reason in st["reason"] and st["active"] == 3
    assert ag.interval == 120000 and ag.uplink.config.version == 3


def test_config_with_a_foreign_mac_is_rejected(tmp_path):
    col = collector()
    hub = Hub(col)
    clock, ag = make(tmp_path, hub.transport(DEV))
    send_config(hub, {"v": 1, "version": 1, "interval_s": 5}, key=bytes(32))
    run(clock, ag, 3)
    st = col.config_status(DEV)
    assert st["ok"] is False and st["reason"].startswith("bad tag")
    assert ag.interval == 60000


def test_shutdown_logs_the_open_interval_and_drains_it(tmp_path):
    col = collector()
    hub = Hub(col)
    clock, ag = make(tmp_path, hub.transport(DEV))
    run(clock, ag, 7)
    clock.advance_ms(20000)                  # a third of an interval in progress
    ag.tick()
    logged = ag.records
    assert ag.log.depth() > 0                # a part batch waiting for its latency
    ag.shutdown(3000)
    assert ag.records == logged + 1 and ag.log.depth() == 0
    assert col.summary(DEV)["epochs"][ag.log.epoch]["covered"] == ag.log.next_seq - 1


def reboot(tmp_path, hub, clock, ag):
    """Power off and on: the same log, uptime from zero, a new connection."""
    ag.stop()
    clock.reboot()
    log = file_log(str(tmp_path / "log.bin"), DEV, capacity=256 * 1024)
    return Agent(DEV, Emulation(clock, seed=5).channels(), log, clock, transport=hub.transport(DEV),
                 interval_ms=60000, sample_ms=60000, reason="deliberate",
                 uplink_opts=dict(key=KEY)).start()


def test_config_version_survives_reboots_and_status_says_what_the_device_reported(tmp_path, capsys):
    from agent.cli import main
    db = str(tmp_path / "ledger.sqlite")
    col = Collector(db, keys=lambda d: KEY if d == DEV else None)
    hub = Hub(col)
    clock, ag = make(tmp_path, hub.transport(DEV))
    run(clock, ag, 2)
    send_config(hub, {"v": 1, "version": 3, "interval_s": 300, "batch_max": 12})
    run(clock, ag, 10)
    assert ag.uplink.config.version == 3 and ag.log.config_version == 3
    answered = col.config_status(DEV)["answered_s"]
    # reboot: the retained config comes again and is applied again (its
    # settings lived in RAM), answered anew
    ag = reboot(tmp_path, hub, clock, ag)
    assert ag.uplink.config.version == 0 and ag.uplink.config.floor == 3
    run(clock, ag, 10)
    assert ag.uplink.config.version == 3 and ag.interval == 300000 and ag.uplink.batch_max == 12
    st = col.config_status(DEV)
    assert st["answered_s"] > answered and st["in_force"] == 3
    # an older config, even retained, is refused after the reboot
    send_config(hub, {"v": 1, "version": 2, "interval_s": 120})
    run(clock, ag, 10)
    assert ag.uplink.config.version == 3 and ag.interval == 300000 and ag.uplink.h["bad_configs"] == 1
    assert "not newer than 3" in col.config_status(DEV)["reason"]
    # the broker restarts without persistence and the device reboots: it runs
    # its local settings, still refuses older versions, and status says so
    hub.retained.clear()
    ag = reboot(tmp_path, hub, clock, ag)
    run(clock, ag, 30)
    assert ag.uplink.config.version == 0 and ag.interval == 60000 and ag.log.config_version == 3
    ag.shutdown(3000)
    st = col.config_status(DEV)
    assert st["in_force"] == 0 and st["reported"][0] == 0, st
    assert col.config_status(DEV)["active"] == 3          # its last answer, older than its records
    capsys.readouterr()
    assert main(["config", "status", DEV, "--db", db, "--master-key", "00" * 16]) == 0
    line = capsys.readouterr().out
    assert line.startswith("%s: in force: its local settings (no remote config) (its latest record, " % DEV)
    assert "last answer" in line and "version 2 REJECTED; in force: 3" in line, line
    send_config(hub, {"v": 1, "version": 2, "interval_s": 120})
    run(clock, ag, 2)
    assert ag.uplink.config.version == 0 and ag.interval == 60000
    # the next push is numbered above everything the device has seen, and applies
    tp, body = col.push_config(DEV, {"interval_s": 120})
    assert cbor2.loads(cose.verify(body, KEY, DEV))["version"] == 4
    hub.retain(tp, body)
    run(clock, ag, 5)
    assert ag.uplink.config.version == 4 and ag.interval == 120000 and ag.log.config_version == 4


def test_the_uplink_backs_off_with_equal_jitter_doubling_on_each_failed_connect(tmp_path):
    """Half to all of the backoff between tries (equal jitter), the backoff
    doubling from backoff_min_ms to backoff_max_ms; agent/backoff.py."""
    from agent.sync import Uplink
    from agent.meter import Meter

    hub = Hub(Collector(keys=lambda d: KEY if d == DEV else None))
    hub.down = True                   # the broker does not answer
    up = Uplink(DEV, hub.transport(DEV), file_log(str(tmp_path / "l.bin"), DEV, capacity=64 * 1024),
                Meter([("odo", "count", 0, "odo")]), key=KEY,
                backoff_min_ms=1000, backoff_max_ms=8000)
    now, gaps = 0, []
    for _ in range(6):
        up.step(now)
        gaps.append(up._next_try - now)
        now = up._next_try
    assert up.failures == 6
    for gap, w in zip(gaps, (1000, 2000, 4000, 8000, 8000, 8000)):
        assert w // 2 <= gap <= w, (gaps, w)


def test_a_birth_goes_out_in_two_pieces_that_join_into_the_signed_birth(tmp_path):
    """The birth is sealed in two buffers the uplink keeps (its fields up to
    the schema in the batch buffer, the schema on in the birth's own): what
    the transport gets joins into the one COSE message the collector
    verifies, and the byte counter counts both pieces."""
    col = collector()
    sent = []
    br = ScriptedBroker(col.handle)
    pub = br.publish

    def publish(topic, payload, retain=False):
        sent.append((topic, payload, bytes(payload[0]) if isinstance(payload, tuple) else None,
                     bytes(payload[1]) if isinstance(payload, tuple) else None))
        return pub(topic, payload, retain)
    br.publish = publish
    clock, ag = make(tmp_path, br)
    run(clock, ag, 3)
    up = ag.uplink
    births = [s for s in sent if s[0].endswith("/birth")]
    assert births, sent
    topic, msg, head, tail = births[0]
    assert isinstance(msg, tuple) and msg[0] is up._buf and msg[1] is up._bmsg
    whole = head + tail
    body = cbor2.loads(cose.verify(whole, KEY, DEV))
    assert body["device"] == DEV and len(body["schema"]) == len(ag.meter.schema)
    assert b"schema" not in head and tail.startswith(b"\x66schema")     # the split is at the schema
    assert whole == up.birth()                                          # the same bytes as one message
    assert up.h["bytes_sent"] >= len(whole)
