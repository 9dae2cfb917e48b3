# The agent's footprint, measured on the interpreter that runs it (the
# MicroPython unix port, from `tally bench footprint`): the whole steady loop
# with three I2C sensors and one serial sensor on emulated buses, the ring
# log in emulated NOR flash, and the uplink syncing every batch to a peer that
# acks it. Prints "FP <key> <value>" lines.

import gc
import time

from agent import cbor, cose
from agent.agent import Agent
from agent.clock import VirtualClock
from agent.log import RingLog
from hil.flash import EmulatedNOR
from hil.scripted import ScriptedBroker

KEY = b"footprint-key-16"
DEV = "fp-1"
BOARD = {
    "name": "footprint",
    "buses": {"i2c": {"kind": "i2c", "id": 0},
              "rs485": {"kind": "uart", "port": "emulated", "baud": 9600}},
    "sensors": [
        {"type": "ina219", "bus": "i2c", "addr": 0x40},
        {"type": "sht3x", "bus": "i2c", "addr": 0x44},
        {"type": "bh1750", "bus": "i2c", "addr": 0x23},
        {"type": "sdm120", "bus": "rs485", "slave": 1},
    ],
}


def _ack_all(up, broker):
    """The collector's side, kept off the device's books: every batch in
    flight is acked at once, without decoding it."""
    for b in up.inflight:
        if not b[6]:
            body = cbor.dumps([b[0], b[1], b[2]])
            broker.box.append(("tally/v1/%s/ack" % DEV, cose.mac0(body, KEY, DEV)))


def _used():
    gc.collect()
    return gc.mem_alloc()


def main(intervals=1440, sample_ms=5000):
    # every module first: on this port their code is heap, on a board it is
    # flash (frozen or ROMFS), so what the agent's data takes is counted apart
    import boards
    import drivers.ina219, drivers.sht3x, drivers.bh1750, drivers.modbus, drivers.sdm120  # noqa
    import agent.sync, agent.remote                                                      # noqa
    import hil.ina219, hil.sht3x, hil.bh1750                                             # noqa
    from hil.twins import i2c_buses
    from hil.sdm120 import SDM120Model
    from hil.serial_loop import LoopbackPort
    base = _used()
    clock = VirtualClock()
    bus = i2c_buses(BOARD)["i2c"]
    meter_model = SDM120Model(lambda: (230.0, 4.3, 990.0, 1234.5))
    chans = boards.make_channels(BOARD, bus, lambda port, baud: LoopbackPort(meter_model),
                                 sleep_ms=lambda ms: None)
    flash = EmulatedNOR(1024, 8)      # its 8 KiB image is flash on a device, not heap
    log = RingLog(flash, DEV)
    broker = ScriptedBroker()
    ag = Agent(DEV, chans, log, clock, transport=broker, interval_ms=60000, sample_ms=sample_ms,
               reason="poweron",
               uplink_opts={"key": KEY, "batch_max": 30, "max_latency_ms": 600000}).start()
    print("FP heap_code", base)
    print("FP heap_data_after_setup", _used() - base - len(flash.image))
    ticks = 60000 // sample_ms
    live_early = None
    peak_live = 0
    t0 = time.ticks_us()
    for i in range(intervals):
        for _ in range(ticks):
            clock.advance_ms(sample_ms)
            ag.tick()
            _ack_all(ag.uplink, broker)
            while broker.held:
                broker.held.pop()         # data delivered; the ack comes from _ack_all
        if i % 100 == 99:
            live = _used()
            if live > peak_live:
                peak_live = live
            if live_early is None:
                live_early = live
    dt = time.ticks_diff(time.ticks_us(), t0)
    live_end = _used()
    print("FP intervals", intervals)
    print("FP us_per_interval", dt // intervals)
    img = len(flash.image)
    print("FP heap_data_after_100_intervals", (live_early or live_end) - base - img)
    print("FP heap_data_at_end", live_end - base - img)
    print("FP heap_data_peak", peak_live - base - img)
    print("FP emulated_flash_bytes", len(flash.image))
    print("FP heap_free_idle", gc.mem_free())
    print("FP acked", log.acked, "of", log.next_seq - 1)
    print("FP END")
