# The uplink state machine under MicroPython (and CPython): a window of
# batches in flight, acks in any order freeing only a contiguous prefix, and
# remote config applied or rejected. The peer is the edge of the world: it
# verifies and acks like a collector would, with the device's own codecs.
from agent import batch, cbor, cose
from agent.log import RingLog
from agent.meter import Meter
from agent.sync import Uplink
from hil.flash import EmulatedNOR
from hil.scripted import ScriptedBroker

KEY = b"k" * 16
DEV = "dev-mp"
SCHEMA = [("run_s", "s", 0, "odo"), ("sync_ok", "count", 0, "odo"),
          ("sync_tries", "count", 0, "odo"), ("republished", "count", 0, "odo")]


class Peer(ScriptedBroker):
    """Answers like a collector would, with the device's own codecs."""

    def __init__(self):
        ScriptedBroker.__init__(self, self._answer)
        self.cfgacks = []

    def _answer(self, topic, payload):
        if topic.endswith("/data"):
            recs = batch.decode(cbor.loads(cose.verify(payload, KEY, DEV)))
            body = cbor.dumps([recs[0]["epoch"], recs[0]["seq"], recs[-1]["seq"]])
            return [("tally/v1/%s/ack" % DEV, cose.mac0(body, KEY, DEV))]
        if topic.endswith("/cfgack"):
            self.cfgacks.append(cbor.loads(cose.verify(payload, KEY, DEV)))
        return []

    ack = ScriptedBroker.release

    def config(self, cfg):
        self.box.append(("tally/v1/%s/config" % DEV, cose.mac0(cbor.dumps(cfg), KEY, DEV)))


def _setup(n):
    log = RingLog(EmulatedNOR(512, 12), DEV).open()   # 6 KiB: the heap is for the code
    log.start_boot("poweron")
    m = Meter(SCHEMA)
    for i in range(n):
        m.add(0, 60)
        log.append(m.id, log.boot, i * 60000, 0, 0, 60000, m.close())
    peer = Peer()
    up = Uplink(DEV, peer, log, m, key=KEY, batch_max=5, window=3)
    up.step(n * 60000)
    up.step(n * 60000)
    return log, peer, up


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

