# The uplink state machine under MicroPython (and CPython): a window of
# batches in flight, acks in any order freeing only a contiguous prefix, and
# remote config applied or rejected. The peer is the edge of the world: it
# verifies and acks like a collector would, with the device's own codecs.
from uplink_peer import KEY, DEV, SCHEMA, Peer, _setup   # noqa: F401 (the suites share them)


def test_window_and_out_of_order_acks():
    log, peer, up = _setup(20)
    assert len(peer.held) == 3 and len(up.inflight) == 3
    peer.ack(2)
    peer.ack(1)
    up.step(1200000)
    assert log.acked == 0
    peer.ack(0)
    up.step(1200000)
    assert log.acked == 15 and len(peer.held) == 1
    peer.ack(0)
    up.step(1200000)
    assert log.acked == 20 and up.idle()
    assert up.h["sync_ok"] == 4 and up.h["sync_tries"] == 4
    log.close()


def test_remote_config_applied_then_bad_one_rejected():
    log, peer, up = _setup(3)
    peer.config({"v": 1, "version": 2, "window": 5, "batch_max": 9})
    up.step(200000)
    assert up.window == 5 and up.batch_max == 9 and up.config.version == 2
    assert peer.cfgacks[-1]["ok"] is True and peer.cfgacks[-1]["active"] == 2
    peer.config({"v": 1, "version": 3, "window": 99})
    up.step(200000)
    assert up.window == 5 and up.config.version == 2
    a = peer.cfgacks[-1]
    assert a["ok"] is False and a["version"] == 3 and "window=99" in a["reason"]
    n = len(peer.cfgacks)
    peer.config({"v": 1, "version": 2, "window": 5, "batch_max": 9})   # retained, again
    up.step(200000)
    assert len(peer.cfgacks) == n
    log.close()

