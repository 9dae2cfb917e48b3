# The agent's footprint, measured on the interpreter that runs it (the
# MicroPython unix port, or the 32-bit WebAssembly port through
# hil/bench/wasm_footprint.mjs, from `tally bench footprint`): the whole steady
# loop with three I2C sensors and one serial sensor on emulated buses, the
# ring log in emulated NOR flash, and the uplink syncing every batch to a
# peer that acks it. Prints "FP <key> <value>" lines.
#
# In phases (load the device's modules, load the emulation's, set up, run
# intervals) so that a driver can return to its host between them: the
# WebAssembly port collects garbage only there.

import gc
import time

KEY = b"footprint-key-16"
DEV = "fp-1"
BOARD = {
    "name": "footprint",
    "buses": {"i2c": {"kind": "i2c", "id": 0},
              "rs485": {"kind": "uart", "port": "emulated", "baud": 9600}},
    "sensors": [
        {"type": "ina219", "bus": "i2c", "addr": 0x40, "rated_w": 80},
        {"type": "sht3x", "bus": "i2c", "addr": 0x44},
        {"type": "bh1750", "bus": "i2c", "addr": 0x23},
        {"type": "sdm120", "bus": "rs485", "slave": 1},
    ],
}
# what the device runs (on a board: flash, frozen or ROMFS) ...
DEVICE = ("boards", "drivers.ina219", "drivers.sht3x", "drivers.bh1750", "drivers.modbus",
          "drivers.sdm120", "agent.agent", "agent.clock", "agent.log", "agent.sync", "agent.remote",
          "agent.stress")
# ... and the world around it, which a board does not carry
EMULATION = ("hil.twins", "hil.twins.ina219", "hil.twins.sht3x", "hil.twins.bh1750", "hil.twins.sdm120", "hil.buses.serial_loop",
             "hil.nor", "hil.scripted")
# with parts=True (component identity, issue 15): the tracker, its log records,
# the passport and the ID EEPROM's driver on the device; the EEPROM's twin
PARTS_DEVICE = ("agent.parts", "agent.partlog", "agent.parttags", "agent.passport", "drivers.eeprom24")
PARTS_EMULATION = ("hil.twins.eeprom24",)
TAG_ADDR = 0x50
TAG_SLOT = "seal"           # a literal, as in a board's tag table (boards/tags.py)
MAC = 0xA0B1C2D3E4F5        # the node's (an ESP32's eFuse base MAC)


def node_id():
    """The node's id as agent/port/micropython.py's node_id() makes it, from
    this board's MAC: device_main hands the tracker the function, not the id."""
    return "esp32-%012x" % MAC


def used():
    gc.collect()
    return gc.mem_alloc()


def load(names):
    for n in names:
        __import__(n)


def tag_twin():
    """The ID EEPROM tag's twin (an AT24CS02), its passport written in copy A:
    part of the world, created apart so its bytes (a 256-byte array, its
    per-byte write counts) are not counted as the agent's."""
    from agent import passport
    from hil.twins.eeprom24 import AT24CS02Model
    chip = AT24CS02Model()
    p = passport.Passport("SEAL-KIT-7", year=2026, month=3, day=14, rated_h=20000, rated_cycles=50000)
    chip.mem[0:passport.COPY] = p.encode(1)
    return chip


class World:
    """The agent on the footprint board, and the collector's side that acks."""

    def __init__(self, sample_ms=5000, stress=True, tag=None):
        """tag: an ID EEPROM twin (tag_twin()): the agent then tracks parts as
        a board with `parts = true` and one tag does: the SHT3x's and the
        meter's serials, the node id and the tag with its passport."""
        import boards
        from agent.agent import Agent
        from agent.clock import VirtualClock
        from agent.log import RingLog
        from hil.nor import EmulatedNOR
        from hil.scripted import ScriptedBroker
        from hil.twins.sdm120 import SDM120Model
        from hil.buses.serial_loop import LoopbackPort
        from hil.twins import i2c_buses
        self.clock = VirtualClock()
        meter_model = SDM120Model(lambda: (230.0, 4.3, 990.0, 1234.5))
        i2c = i2c_buses(BOARD)["i2c"]
        chans = boards.make_channels(BOARD, i2c,
                                     lambda port, baud: LoopbackPort(meter_model), sleep_ms=lambda ms: None)
        if tag is not None:
            from agent.parts import Parts, slots_for
            from agent.parttags import tags
            i2c.attach(TAG_ADDR, tag)
            i2c.attach(TAG_ADDR | 8, tag.security())
            chans.append(Parts(slots_for(chans, tags(["%s=at24cs02@0x%02x" % (TAG_SLOT, TAG_ADDR)], i2c),
                                         node=node_id)))
        self.flash = EmulatedNOR(1024, 8)      # its 8 KiB image is flash on a device, not heap
        self.log = RingLog(self.flash, DEV)
        self.broker = ScriptedBroker()
        self.ticks = 60000 // sample_ms
        self.sample_ms = sample_ms
        self.ag = Agent(DEV, chans, self.log, self.clock, transport=self.broker, interval_ms=60000,
                        sample_ms=sample_ms, reason="poweron", stress=None if stress else False,
                        uplink_opts={"key": KEY, "batch_max": 30, "max_latency_ms": 600000}).start()
        self.parts = chans[-1] if tag is not None else None

    def interval(self):
        ag = self.ag
        broker = self.broker
        for _ in range(self.ticks):
            self.clock.advance_ms(self.sample_ms)
            ag.tick()
            self._ack_all()
            while broker.held:
                broker.held.pop()         # data delivered; the ack comes from _ack_all

    def _ack_all(self):
        """The collector's side, kept off the device's books: every batch in
        flight is acked at once, without decoding it."""
        from agent import cbor, cose
        for b in self.ag.uplink.inflight:
            if not b[6]:
                body = cbor.dumps([b[0], b[1], b[2]])
                self.broker.box.append(("tally/v1/%s/ack" % DEV, cose.mac0(body, KEY, DEV)))


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(intervals=1440, sample_ms=5000, stress=True, parts=False):
    # every module first: on this port their code is heap, on a board it is
    # flash (frozen or ROMFS), so what the agent's data takes is counted apart
    chunk_us = [0] * (intervals // 100 or 1)      # time per 100 intervals, for a median
    start = used()
    load(DEVICE + (PARTS_DEVICE if parts else ()))
    device = used()
    load(EMULATION + (PARTS_EMULATION if parts else ()))
    tag = tag_twin() if parts else None
    base = used()
    w = World(sample_ms, stress, tag)
    img = len(w.flash.image)
    print("FP heap_code", base)
    print("FP heap_code_device", device - start)
    print("FP heap_code_emulation", base - device)
    print("FP heap_data_after_setup", used() - base - img)
    live_early = None
    peak_live = 0
    t0 = time.ticks_us()
    for i in range(intervals):
        w.interval()
        if i % 100 == 99:
            chunk_us[i // 100] = time.ticks_diff(time.ticks_us(), t0)
            live = used()
            if live > peak_live:
                peak_live = live
            if live_early is None:
                live_early = live
            t0 = time.ticks_us()
    if intervals < 100:
        chunk_us[0] = time.ticks_diff(time.ticks_us(), t0)
    live_end = used()
    print("FP intervals", intervals)
    # the median 100-interval stretch (collections in between not counted)
    print("FP us_per_interval", median(chunk_us) // (100 if intervals >= 100 else intervals))
    print("FP heap_data_after_100_intervals", (live_early or live_end) - base - img)
    print("FP heap_data_at_end", live_end - base - img)
    print("FP heap_data_peak", peak_live - base - img)
    print("FP emulated_flash_bytes", img)
    print("FP heap_free_idle", gc.mem_free())
    print("FP acked", w.log.acked, "of", w.log.next_seq - 1)
    print("FP hist_bins", w.ag.stress.n if w.ag.stress else 0)
    print("FP part_slots", w.parts.n if w.parts else 0)
    print("FP part_events", w.parts.events if w.parts else 0)
    print("FP END")
