# The uplink's peer for the MicroPython uplink suites (test_sync_mp,
# test_uplink_hostile_mp): it verifies and acks like a collector would, with
# the device's own codecs, and _setup gives a log of n records in flight.
from agent import batch, cbor, cose
from agent.log import RingLog
from agent.meter import Meter
from agent.sync import Uplink
from hil.nor import EmulatedNOR
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
