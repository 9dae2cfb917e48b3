# The messages a device and its collector exchange, built the same way on
# CPython and under MicroPython, for the check that both runtimes encode them
# to the same bytes (tests/test_cbor.py). Run as
#   micropython -c "import cbor_msgs; cbor_msgs.main()"
# it prints one "name hex" line per message.
from agent import batch, cbor, cose
from agent.channels import ERROR_METRICS, PowerChannel, ClimateChannel
from agent.log import RingLog
from agent.meter import Meter
from agent.remote import Config
from agent.sync import Uplink
from hil.nor import EmulatedNOR

KEY = b"k" * 16
DEV = "dev-cbor"


def messages():
    out = []
    m = Meter(ERROR_METRICS + PowerChannel.metrics + ClimateChannel.metrics)
    log = RingLog(EmulatedNOR(512, 12), DEV).open()
    log.start_boot("poweron")
    log.epoch = 0x5EEDF00D              # (a new log draws a random epoch)
    for i in range(8):
        m.add(m.index("run_time"), 60)
        m.add(m.index("energy"), 1000 + i * 7)
        m.observe(m.index("temp_max"), 2100 + (i % 3) * 11)
        log.append(m.id, log.boot, i * 60000, 0, 0, 60000, m.close())
    up = Uplink(DEV, None, log, m, board="test-board", key=KEY)
    up.ival_ms = 60000
    # a birth exactly as agent.sync builds it (the COSE body), and the death
    out.append(("birth", cose.verify(up.birth(), KEY, DEV)))
    out.append(("death", cose.verify(up.death(), KEY, DEV)))
    # a batch from agent.batch.encode, and its data message
    recs = log.pending(100)
    out.append(("batch", batch.encode(recs)))
    out.append(("data", cose.mac0(batch.encode(recs), KEY, DEV)))
    # a config as a collector sends it, the device's config acks, a data ack
    cfg = {"version": 7, "v": 1, "sample_ms": 1000, "interval_s": 60}
    out.append(("config", cbor.dumps(cfg)))
    c = Config()
    for body in (cfg, {"v": 1, "version": 8, "interval_s": 0}):
        ack = c.offer(cose.mac0(cbor.dumps(body), KEY, DEV), KEY, DEV)
        out.append(("cfgack%d" % body["version"], ack["ack"]))
    out.append(("ack", cbor.dumps([log.epoch, 0, 7])))
    # maps whose keys are ints and texts of different lengths and signs
    out.append(("mixed", cbor.dumps({"zz": 1, 1000: 2, "a": 3, -1: 4, 24: 5, 0: 6, -1000: 7,
                                     "": 8, "b" * 30: 9, b"k": 10, 23: {"y": 1, "x": [1, {2: 0, 1: 0}]}})))
    out.append(("rfc8949", cbor.dumps({False: 8, (-1,): 7, (100,): 6, "aa": 5, "z": 4, -1: 3,
                                       100: 2, 10: 1})))
    return out


def _hex(b):
    return "".join("%02x" % x for x in b)


def main():
    for name, b in messages():
        print(name, _hex(b))
