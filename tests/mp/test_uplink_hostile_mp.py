# The uplink refuses what it cannot use, under MicroPython and CPython: acks
# and configs of every wrong shape, all MAC'd with the device's own key, are
# counted (bad_acks, bad_configs), free nothing, change nothing, and never
# raise. (Its own module: with test_sync_mp's code it outgrows the 96K heap.)
import gc

from agent import cbor, cose
from uplink_peer import KEY, DEV, SCHEMA, Peer, _setup   # noqa: F401


def _signed(obj):
    return cose.mac0(cbor.dumps(obj), KEY, DEV)


def test_hostile_acks_are_counted_and_free_nothing():
    log, peer, up = _setup(20)
    up.h["bad_acks"] = 0
    acked = log.acked
    ep = log.epoch
    # all MAC'd with the device's own key: only the shape is wrong
    bad = [up.death(),                                    # its own will, reflected onto .../ack
           _signed({"epoch": ep, "first": 1, "last": 20}),   # a map where the list goes
           _signed([ep, 1]), _signed([ep, 1, 20, 4]),        # wrong lengths
           _signed([ep, "1", 20]), _signed([ep, 1, b"x"]),   # wrong types
           _signed([ep, True, 20]), _signed([ep, 1, None]), _signed([ep, [1], 20]),
           _signed([ep, 1, 1 << 63]),                      # past anything logged
           _signed([1 << 40, 1, 5]),                       # an epoch wider than 32 bits
           _signed([ep, -5, 3]), _signed([ep, 9, 3]),        # negative, backwards
           _signed(cbor.Tag(99, [ep, 1, 20])),
           _signed(7), b"", b"\xff\xff", cbor.dumps([ep, 1, 20]),   # not COSE at all
           cose.mac0(cbor.dumps([ep, 1, 20]), b"x" * 16, DEV)]       # another key
    for p in bad:
        peer.box.append(("tally/v1/%s/ack" % DEV, p))
    up.step(1200000)
    assert up.h["bad_acks"] == len(bad), up.h["bad_acks"]
    assert log.acked == acked
    # and the uplink goes on: the real acks still free the log
    for _ in range(4):
        while peer.held:
            peer.ack(0)
        up.step(1200000)
    assert log.acked == 20 and up.idle()
    log.close()


def test_hostile_configs_are_counted_and_change_nothing():
    log, peer, up = _setup(3)
    peer.config({"v": 1, "version": 2, "window": 5})
    up.step(200000)
    assert up.window == 5 and up.h["bad_configs"] == 0
    bad = [[1, 2, 3], {"v": 1, "version": 3, 7: 1}, {"v": 1, "version": 3, b"window": 4},
           {"v": 1, "version": 3, "window": "4"}, {"v": 1, "version": 3, "window": [4]},
           {"v": 1, "version": 3, "window": {4: 4}}, {"v": 1, "version": 3, "window": True},
           {"v": 1, "version": 3, "window": 1 << 63}, {"v": 1, "version": 1 << 63, "window": 4},
           {"v": 1, "version": "3", "window": 4}, {"v": 1, "version": -3},
           {"v": cbor.Tag(1, 1), "version": 3}, {"v": [1], "version": 3},
           {"v": 1, "version": 3, "x" * 200: 1}, {"v": 1, "version": 1, "window": 4},
           {"v": 1, "version": 3, "window": cbor.Tag(2, b"\x04")}, None, "config"]
    for i, cfg in enumerate(bad):
        gc.collect()
        peer.config(cfg)
        up.step(200000)
        assert up.h["bad_configs"] == i + 1, (i, cfg)
        a = peer.cfgacks[-1]
        assert a["ok"] is False and a["active"] == 2 and len(a["reason"]) <= 120, a
    for p in (b"", b"\xa1", up.death(), cose.mac0(cbor.dumps({"v": 1, "version": 3}), b"y" * 16, DEV)):
        peer.box.append(("tally/v1/%s/config" % DEV, p))
        up.step(200000)
    assert up.h["bad_configs"] == len(bad) + 4
    # a refused message that comes again (retained, every reconnect) is not counted twice
    n = len(peer.cfgacks)
    peer.config(bad[3])
    up.step(200000)
    peer.config(bad[3])
    up.step(200000)
    assert up.h["bad_configs"] == len(bad) + 5 and len(peer.cfgacks) == n + 1
    peer.config(bad[3])
    up.step(200000)
    assert up.h["bad_configs"] == len(bad) + 5 and len(peer.cfgacks) == n + 1
    assert up.window == 5 and up.config.version == 2
    peer.config({"v": 1, "version": 3, "window": 6})
    up.step(200000)
    assert up.window == 6 and peer.cfgacks[-1]["ok"] is True
    log.close()
