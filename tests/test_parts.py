"""Component identity, ID EEPROM passports and swap events (issue 15 items
2-5): identity reads in the drivers against their twins, the ID EEPROM
drivers and their page writes, the passport at its documented offsets, and
swaps of an emulated part through power cuts and lost, replayed messages
booked exactly once in the ledger's part_events."""
import os
import re

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import cbor, cose
from agent import passport as P
from agent.agent import Agent
from agent.clock import VirtualClock
from agent.collector import parts as ledger
from agent.collector.store import Collector
from agent.log import RingLog, LogError
from agent.partlog import E_KIND, E_COMP, E_SLOT, table
from agent.parts import Parts, Slot, slots_for, lookup, N_CONFIRM, N_VANISH, P_DUE
from boards.emulated import Emulation
from drivers.eeprom24 import AT24CS02, M24AA02E48, EEPROM24
from drivers.errors import BusTimeout, CRCError
from drivers.sht3x import SHT3x
from drivers.sht4x import SHT4x
from hil.buses.i2c import EmulatedI2C
from hil.loopback import Hub
from hil.nor import EmulatedNOR, PowerCut, TEARS
from hil.rng import Rng
from hil.scripted import joined
from hil.twins.eeprom24 import AT24CS02Model, M24AA02E48Model
from hil.twins.sht3x import SHT3xModel
from hil.twins.sht4x import SHT4xModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = bytes(range(16))
SLOT = "sht4x@0x44"


def nosleep(ms):
    pass


# -- identity reads in the drivers ------------------------------------------------------

def test_sht3x_serial_two_words_with_crc_and_the_clock_stretching_command_as_fallback():
    bus = EmulatedI2C()
    m = SHT3xModel(lambda: (2000, 5000), serial=0xDEADBEEF)
    bus.attach(0x44, m)
    d = SHT3x(bus, sleep_ms=nosleep)
    assert d.ident() == "sht3x-deadbeef"
    m.serial = 0x00000001
    assert d.serial() == 1

    class NoPlain(SHT3xModel):            # a part that only knows 0x3682
        def write(self, data):
            if bytes(data) == b"\x37\x80":
                raise OSError(5, "EIO")
            SHT3xModel.write(self, data)
    bus.attach(0x45, NoPlain(lambda: (0, 0), serial=0x12345678))
    assert SHT3x(bus, 0x45, sleep_ms=nosleep).ident() == "sht3x-12345678"
    m.corrupt_crc_next = "rh"              # the low word's CRC
    with pytest.raises(CRCError, match="serial low"):
        d.serial()


def test_model_ids_where_there_is_no_serial_and_the_meter_serial_over_modbus():
    from drivers.bme280 import BME280
    from drivers.ina226 import INA226
    from drivers.modbus import ModbusRTU
    from drivers.sdm630 import SDM630
    from hil.twins.bme280 import BME280Model
    from hil.twins.ina226 import INA226Model
    from hil.twins.sdm630 import SDM630Model
    from hil.twins.sdm120 import LoopbackPort
    bus = EmulatedI2C()
    bus.attach(0x40, INA226Model(lambda: (12000, 800)))
    bus.attach(0x76, BME280Model())
    assert INA226(bus).ident() == "ina226-model-2260"
    assert BME280(bus, 0x76).ident() == "bme280-model-60"
    model = SDM630Model(lambda: ((230.0, 231.0, 229.0), (1.0, 1.0, 1.0), 690.0, 10.0), serial=21000123)
    meter = SDM630(ModbusRTU(LoopbackPort(model)))
    assert meter.ident() == "sdm630-21000123"
    model.serial = 0xFFFFFFFF                    # never programmed: not an identity
    with pytest.raises(OSError, match="not programmed"):
        meter.ident()


def test_node_id_from_the_device_tree_or_cpuinfo(tmp_path):
    from agent.port import cpython
    assert cpython.node_id(str(tmp_path)) is None               # a PC: neither file
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nHardware\t: BCM2835\n"
                                               "Serial\t\t: 10000000ABCDEF01\nModel\t: Pi\n")
    assert cpython.node_id(str(tmp_path)) == "rpi-10000000abcdef01"
    dt = tmp_path / "sys" / "firmware" / "devicetree" / "base"
    dt.mkdir(parents=True)
    (dt / "serial-number").write_bytes(b"00000000c0ffee42\x00")
    assert cpython.node_id(str(tmp_path)) == "rpi-00000000c0ffee42"
    assert cpython.parse_cpuinfo("Serial : 0000000000000000\n") is None


# -- ID EEPROM drivers against their twins -------------------------------------------------

def test_at24cs02_serial_page_writes_and_acknowledge_polling():
    bus = EmulatedI2C()
    chip = AT24CS02Model(serial=bytes(range(0xA0, 0xB0)), busy_polls=3)
    bus.attach(0x52, chip)
    bus.attach(0x5A, chip.security())
    e = AT24CS02(bus, 0x52, sleep_ms=nosleep)
    assert e.ident() == "at24cs02-" + bytes(range(0xA0, 0xB0)).hex()
    data = bytes(range(1, 21))
    e.write(0x05, data)                       # 0x05-0x07, 0x08-0x0F, 0x10-0x17, 0x18: four pages
    assert chip.writes == 4
    assert e.polls == 12 and chip.polled == 12  # each write cycle NACKed three probes
    assert bytes(chip.mem[0x05:0x19]) == data and chip.mem[0x04] == 0xFF and chip.mem[0x19] == 0xFF
    assert e.read(0x05, 20) == data
    with pytest.raises(ValueError):
        AT24CS02(bus, 0x58)                   # the serial's address is not an array address
    chip.busy_polls = 1000                     # a chip that never finishes its write cycle
    with pytest.raises(BusTimeout):
        e.write(0x00, b"\x01")


def test_the_twin_wraps_a_write_that_crosses_a_page_like_the_chip():
    # (why the driver splits: 10 bytes from 0x06 in one transaction land in
    # 0x06, 0x07, then wrap to 0x00..0x07 of the same page)
    bus = EmulatedI2C()
    chip = AT24CS02Model(busy_polls=0)
    bus.attach(0x50, chip)
    bus.writeto(0x50, bytes([0x06]) + bytes(range(10)))
    assert bytes(chip.mem[0:8]) == bytes([2, 3, 4, 5, 6, 7, 8, 9]) and chip.mem[8] == 0xFF


def test_24aa02e48_eui48_and_its_write_protected_upper_half():
    bus = EmulatedI2C()
    chip = M24AA02E48Model(eui48=bytes.fromhex("0004a3abcdef"))
    bus.attach(0x50, chip)
    e = M24AA02E48(bus, sleep_ms=nosleep)
    assert e.ident() == "24aa02e48-0004a3abcdef"
    with pytest.raises(ValueError):
        e.write(0x7C, b"12345678")            # runs into 0x80
    bus.writeto(0x50, bytes([0xF8]) + b"\x00" * 8)   # straight at the bus: the chip ignores it
    EEPROM24(bus, 0x50, sleep_ms=nosleep).wait()
    assert e.eui48() == bytes.fromhex("0004a3abcdef")
    chip.set_eui(b"\xff" * 6)
    with pytest.raises(CRCError):
        e.ident()


# -- the passport -------------------------------------------------------------------

def _doc_offsets():
    """offset -> (size, field) from the table in docs/passport.md."""
    out = {}
    for line in open(os.path.join(ROOT, "docs", "passport.md")):
        m = re.match(r"\| (\d+) \| (\d+) \| (.+?) \|$", line.strip())
        if m:
            out[int(m.group(1))] = (int(m.group(2)), m.group(3))
    return out


def _tag(model_cls=AT24CS02Model):
    bus = EmulatedI2C()
    chip = model_cls(busy_polls=1)
    bus.attach(0x50, chip)
    if hasattr(chip, "security"):
        bus.attach(0x58, chip.security())
    drv = (AT24CS02 if model_cls is AT24CS02Model else M24AA02E48)(bus, 0x50, sleep_ms=nosleep)
    return bus, chip, drv


def _le(b, o, n):
    return int.from_bytes(bytes(b[o:o + n]), "little")


def test_passport_bytes_sit_at_the_documented_offsets():
    doc = _doc_offsets()
    assert sorted(doc) == [0, 2, 3, 4, 8, 24, 26, 27, 28, 32, 36, 40, 44, 48, 52, 54, 60]
    assert sum(n for n, _ in doc.values()) == P.COPY
    _, chip, drv = _tag(M24AA02E48Model)
    p = P.Passport("LED-ENG-40W-A", family=7, year=2025, month=11, day=3, rated_h=50000,
                   rated_cycles=100000)
    p.run_s, p.cycles, p.energy_Wh, p.installed_s, p.installs = 3600, 12, 4500, 7200, 2
    assert P.write(drv, p) == 0 and p.seq == 1
    b = chip.mem                             # the bytes the chip holds, read back at the doc's offsets
    assert bytes(b[0:2]) == b"TP" and "magic" in doc[0][1]
    assert b[2] == 1 and "version" in doc[2][1]
    assert b[3] == 7 and "family" in doc[3][1]
    assert _le(b, 4, 4) == 1 and "sequence" in doc[4][1]
    assert bytes(b[8:24]).rstrip(b"\x00") == b"LED-ENG-40W-A" and "part number" in doc[8][1]
    assert (_le(b, 24, 2), b[26], b[27]) == (2025, 11, 3)
    assert "year" in doc[24][1] and "month" in doc[26][1] and "day" in doc[27][1]
    assert _le(b, 28, 4) == 50000 and "hours" in doc[28][1]
    assert _le(b, 32, 4) == 100000 and "cycles" in doc[32][1]
    assert _le(b, 36, 4) == 3600 and "run seconds" in doc[36][1]
    assert _le(b, 40, 4) == 12 and "cycles" in doc[40][1]
    assert _le(b, 44, 4) == 4500 and "Wh" in doc[44][1]
    assert _le(b, 48, 4) == 7200 and "installed" in doc[48][1]
    assert _le(b, 52, 2) == 2 and "installations" in doc[52][1]
    assert bytes(b[54:60]) == b"\xff" * 6
    import zlib
    assert _le(b, 60, 4) == zlib.crc32(bytes(b[0:60])) and "CRC-32" in doc[60][1]
    assert bytes(b[0x40:0x80]) == b"\xff" * 64            # copy B untouched
    p.run_s += 1
    assert P.write(drv, p) == 1 and _le(b, 0x40 + 4, 4) == 2   # the other copy, sequence 2
    q, why = P.read(drv, 7)
    assert why is None and q.seq == 2 and q.run_s == 3601 and q.part == "LED-ENG-40W-A"


def test_blank_corrupt_foreign_and_torn_passports():
    _, chip, drv = _tag()
    assert P.read(drv, 1) == (None, "blank")
    p = P.Passport("FAN-120", family=1)
    P.write(drv, p)
    assert P.read(drv, 2)[1] == "foreign"               # another product family
    chip.mem[10] ^= 0x01
    assert P.read(drv, 1) == (None, "corrupt")
    chip.mem[0] = ord("X")
    assert P.read(drv, 1) == (None, "foreign")          # not our magic at all
    chip.mem[0:64] = P.Passport("FAN-120").encode(5)
    chip.mem[2] = 9                                     # a newer format, CRC fixed up
    chip.mem[60:64] = P.crc(chip.mem[0:64]).to_bytes(4, "little")
    assert P.read(drv, 1) == (None, "version")
    # a power cut in the middle of a write: the other copy is still read
    chip.mem[0:64] = P.Passport("FAN-120").encode(5)
    good, _ = P.read(drv, 1)
    good.run_s = 99
    chip.cut_next_write = 3
    with pytest.raises(OSError):
        P.write(drv, good)
    got, why = P.read(drv, 1)
    assert why is None and got.seq == 5 and got.run_s == 0


# -- swap events on a running agent ----------------------------------------------------

def _agent(world, log, clock, transport=None, **kw):
    chans = world.channels()
    parts = Parts(slots_for(chans), **kw)
    ag = Agent("dev-p", chans + [parts], log, clock, transport=transport, interval_ms=60000,
               sample_ms=5000, uplink_opts={"key": KEY, "ack_timeout_ms": 20000}).start()
    return ag, parts


def _events(log_or_rows, slot=SLOT):
    return [(e[E_KIND], e[E_COMP]) for e in log_or_rows if e[E_SLOT] == slot]


class _Cuttable:
    """A luminaire with its parts tracked, its ring log on emulated NOR
    flash, that power cuts reboot as a device: tick() runs one 5 s sample;
    a PowerCut in it reboots the flash and the clock, closes the transport
    and starts a new agent on the same log."""

    def __init__(self, seed, transport=None, period_ms=60000):
        self.clock = VirtualClock()
        self.world = Emulation(self.clock, seed=seed, profile="luminaire")
        self.nor = EmulatedNOR(4096, 16, seed=seed)
        self.t = transport
        self.period_ms = period_ms
        self.cuts = 0
        self._start()

    def _start(self):
        self.ag, self.parts = _agent(self.world, RingLog(self.nor, "dev-p"), self.clock, self.t,
                                     period_ms=self.period_ms)

    def cut(self, after_ops, tear):
        self.nor.cut_at = self.nor.ops + after_ops
        self.nor.tear = tear

    def tick(self):
        self.clock.advance_ms(5000)
        try:
            self.ag.tick()
        except PowerCut:
            self.cuts += 1
            self.nor.reboot()
            self.nor.cut_at = None
            self.clock.reboot()
            if self.t is not None:
                self.t.close()
            self._start()


def test_a_swap_at_a_random_moment_is_one_removed_and_one_installed_through_cuts_and_loss():
    for seed in (1, 2, 3, 4):
        rng = Rng(seed)
        col = Collector(":memory:", keys={"dev-p": KEY}.get)
        hub = Hub(col, loss=0.25, seed=seed)
        t = hub.transport("dev-p")
        sent = []
        pub = t.publish

        def publish(topic, payload, retain=False):
            sent.append((topic, joined(payload)))
            return pub(topic, payload, retain)
        t.publish = publish
        dev = _Cuttable(seed, t)
        sht = dev.world.models["sht4x"]
        old = "sht4x-%08x" % sht.serial
        new_serial = 0x5EED0000 + seed
        steps = 3 * 720                               # three hours of 5 s samples
        swap_at = 200 + rng.below(steps - 600)
        for i in range(steps):
            if i == swap_at:
                sht.serial = new_serial
            if rng.chance(0.01):                      # a power cut somewhere in the next few ops
                dev.cut(rng.below(4), TEARS[rng.below(len(TEARS))])
            dev.tick()
        dev.nor.cut_at = None
        hub.loss = 0
        dev.ag.shutdown(within_ms=600000)
        assert dev.ag.uplink.idle()
        for topic, payload in sent:                   # every message again: replays
            col.handle(topic, payload)
        got = _events([[e["seq"], e["idx"], e["kind"], e["slot"], e["component"]]
                       for e in ledger.history(col._b, "dev-p")])
        want = [("installed", old), ("removed", old), ("installed", "sht4x-%08x" % new_serial)]
        assert got == want, (seed, dev.cuts, got)
        assert dev.cuts >= 5, dev.cuts
        rows = ledger.history(col._b, "dev-p")
        swap = [r for r in rows if r["slot"] == SLOT][1:]
        assert swap[0]["odometers"] == swap[1]["odometers"] and "lit_time" in swap[0]["odometers"]
        assert swap[0]["wall_s"] > 0
        col.close()


def test_a_power_cut_between_the_two_events_of_a_swap_still_books_one_of_each():
    # cut at every op of the check that finds the swap, one after another
    for k in range(6):
        dev = _Cuttable(9, period_ms=5000)
        for _ in range(20):
            dev.tick()
        dev.world.models["sht4x"].serial = 0x77
        dev.cut(k, "prefix")
        for _ in range(20):
            dev.tick()
        assert dev.cuts == 1, k
        assert table(dev.ag.log)[SLOT] == "sht4x-00000077"
        evs = _events(dev.ag.log.events)
        assert evs.count(("removed", "sht4x-%08x" % (0x0BADC0DE + 7919 * 9))) == 1, (k, evs)
        assert evs.count(("installed", "sht4x-00000077")) == 1, (k, evs)


def test_a_flickering_serial_is_counted_never_a_swap():
    clock = VirtualClock()
    world = Emulation(clock, seed=3, profile="luminaire")
    sht = world.models["sht4x"]
    first = sht.serial
    ag, parts = _agent(world, RingLog(EmulatedNOR(4096, 16), "dev-p"), clock, period_ms=5000)
    for i in range(200):
        sht.serial = first if i % N_CONFIRM else 0x0F0F0F0F     # another id every third read
        clock.advance_ms(5000)
        ag.tick()
    assert _events(ag.log.events) == [("installed", "sht4x-%08x" % first)]
    assert parts.faults["flicker"] >= 60
    assert ag.meter.values[ag.meter.index("part_faults")] == sum(parts.faults.values())


def test_a_part_that_vanishes_is_one_removal_then_one_install_when_back():
    clock = VirtualClock()
    world = Emulation(clock, seed=4, profile="luminaire")
    ag, parts = _agent(world, RingLog(EmulatedNOR(4096, 16), "dev-p"), clock, period_ms=60000)
    cid = table(ag.log)[SLOT]
    world.i2c.absent(0x44)
    for _ in range(720):                          # an hour without it
        clock.advance_ms(5000)
        ag.tick()
    assert _events(ag.log.events) == [("installed", cid), ("removed", cid)]
    assert SLOT not in table(ag.log) and parts.faults == {}
    world.i2c.absent(0x44, False)
    for _ in range(20):
        clock.advance_ms(5000)
        ag.tick()
    assert _events(ag.log.events) == [("installed", cid), ("removed", cid), ("installed", cid)]


def test_a_bad_crc_on_the_serial_is_a_counted_fault_and_a_burst_triggers_a_read():
    clock = VirtualClock()
    world = Emulation(clock, seed=5, profile="luminaire")
    ag, parts = _agent(world, RingLog(EmulatedNOR(4096, 16), "dev-p"), clock)   # 10 min period
    sht = world.models["sht4x"]
    sht.serial = 0x42
    for _ in range(3):                            # three failed readings: a burst
        world.i2c.fail_next(0x44, 1)
        clock.advance_ms(5000)
        ag.tick()
    for _ in range(N_CONFIRM + 1):
        clock.advance_ms(5000)
        ag.tick()
    assert _events(ag.log.events)[-1] == ("installed", "sht4x-00000042")   # well before 10 min
    assert ag.log.events[-1][7] == "burst"
    n = len(ag.log.events)
    parts.period_ms = 5000
    parts.slots[P_DUE] = 0                        # the shorter period from now on
    for _ in range(5):
        sht.corrupt_crc_next = "temp"             # the measurement is read first, then the serial
        clock.advance_ms(5000)
        ag.tick()
    assert len(ag.log.events) == n and parts.faults.get("crc", 0) >= 1


def test_passports_blank_corrupt_foreign_are_counted_and_checkpoints_are_written():
    for kind in ("blank", "corrupt", "foreign", "good"):
        clock = VirtualClock()
        world = Emulation(clock, seed=6, profile="luminaire")
        chip = AT24CS02Model(busy_polls=1)
        world.i2c.attach(0x50, chip)
        world.i2c.attach(0x58, chip.security())
        drv = AT24CS02(world.i2c, 0x50, sleep_ms=nosleep)
        if kind != "blank":
            chip.mem[0:64] = P.Passport("MOTOR-0.75KW", family=3 if kind == "foreign" else 1,
                                        rated_h=20000).encode(4)
        if kind == "corrupt":
            chip.mem[30] ^= 0xFF
        chans = world.channels()
        parts = Parts(slots_for(chans, tags=[("motor", drv)]), family=1, checkpoint_ms=3600000)
        ag = Agent("dev-p", chans + [parts], RingLog(EmulatedNOR(4096, 16), "dev-p"), clock,
                   interval_ms=60000, sample_ms=5000).start()
        for _ in range(7 * 720):                  # midnight to 7:00: lit from 5:30
            clock.advance_ms(5000)
            ag.tick()
        motor = _events(ag.log.events, "motor")
        assert motor == [("installed", "at24cs02-" + bytes(range(0x10, 0x20)).hex())], kind
        if kind != "good":
            assert parts.faults == {kind: 1} and chip.writes == 0, (kind, parts.faults)
            continue
        assert parts.faults == {}
        assert ag.log.events[-1][7] == "MOTOR-0.75KW"
        p, why = P.read(drv, 1)
        # the install, then one checkpoint an hour: 8 writes of 8 pages
        assert why is None and p.installs == 1 and p.seq == 4 + 8 and chip.writes == 8 * 8
        assert p.installed_s == 7 * 3600
        lit = ag.meter.values[ag.meter.index("run_time")]
        assert 0 < p.run_s == lit                       # the asset's run time since the install
        assert max(chip.cycles) == 4                # each copy four times: the A/B slots alternate


def test_the_log_keeps_at_most_a_few_unacked_events_and_says_so():
    log = RingLog(EmulatedNOR(4096, 16), "d").open()
    for i in range(8):
        log.event("installed", "s%d" % i, "x-%d" % i, 0, {}, "")
    with pytest.raises(LogError):
        log.event("installed", "s9", "x-9", 0, {}, "")
    log.append(1, 1, 0, 0, 0, 1000, [1])
    log.ack(log.epoch, 1)
    assert log.events == [] and log.event("installed", "s9", "x-9", 0, {}, "")[0] == 2
    again = RingLog(log.dev, "d").open()                  # the table and the pending event survive
    assert table(again)["s9"] == "x-9" and len(table(again)) == 9 and len(again.events) == 1


# -- both sides of the wire ------------------------------------------------------------

def test_messages_with_events_validate_against_the_cddl_and_the_collector_checks_them():
    cv = pytest.importorskip("cddl_verifier")
    V = cv.Validator(open(os.path.join(ROOT, "docs", "wire.cddl")).read())
    clock = VirtualClock()
    world = Emulation(clock, seed=7, profile="luminaire")
    col = Collector(":memory:", keys={"dev-p": KEY}.get)
    seen = []
    hub = Hub(col)
    t = hub.transport("dev-p")
    pub = t.publish

    def publish(topic, payload, retain=False):
        seen.append((topic, joined(payload)))
        return pub(topic, payload, retain)
    t.publish = publish
    ag, _ = _agent(world, RingLog(EmulatedNOR(4096, 16), "dev-p"), clock, t, period_ms=5000)
    for i in range(400):
        if i == 100:
            world.models["sht4x"].serial = 0x99
        clock.advance_ms(5000)
        ag.tick()
    ag.shutdown()
    with_ext = 0
    births = 0
    for topic, msg in seen:
        inner = cose.verify(msg, KEY, "dev-p")
        kind = topic.rsplit("/", 1)[1]
        r = V.validate(inner, {"data": "data-batch"}.get(kind, kind))
        assert r.valid, (kind, [str(d) for d in r.diagnostics])
        obj = cbor2.loads(inner)
        if kind == "data" and isinstance(obj[-1], dict):
            with_ext += 1
        if kind == "birth":
            births += 1
            assert obj["parts"][SLOT].startswith("sht4x-")
    assert with_ext >= 1 and births >= 1
    assert [e["kind"] for e in ledger.history(col._b) if e["slot"] == SLOT] == \
        ["installed", "removed", "installed"]
    # a batch whose event lies outside its range is quarantined, nothing booked
    topic, msg = [x for x in seen if x[0].endswith("/data")][-1]
    obj = cbor2.loads(cose.verify(msg, KEY, "dev-p"))
    if isinstance(obj[-1], dict) and len(obj) > 13 + len(ag.meter.schema):
        obj.pop()
    obj.append({2: [[obj[3] + 10 ** 6, 0, "installed", "fan", "fan-1", 0, {}, ""]]})
    obj[3] += 5000                                    # new seqs, so not a duplicate
    col.handle(topic, cose.mac0(cbor2.dumps(obj), KEY, "dev-p"))
    assert "part event seq" in str(col.quarantined("dev-p")) and not [e for e in ledger.history(col._b) if e["slot"] == "fan"]
    col.close()


# -- the MicroPython tier -------------------------------------------------------------

@pytest.mark.micropython
def test_parts_code_runs_under_micropython(bundle):
    # the agent, ring log, a channel, the parts tracker, passport and EEPROM
    # driver AND the twins, as .mpy in RAM on this 64-bit port: 192K, as the
    # simulated day (128K is not enough); 256K since it also runs the emulated
    # luminaire's world (scenario, twins) for its board tags; on a board the code is in flash
    from conftest import MP, mp_run
    if not MP:
        pytest.skip("micropython unix port not installed")
    r = mp_run(bundle, "import runner; runner.main(['test_parts_mp'])", heap="256K")
    print(r.stdout, r.stderr)
    assert r.returncode == 0 and "0 failed" in r.stdout and "FAIL" not in r.stdout


from conftest import bundle  # noqa: E402,F401  (the compiled device code, a fixture)


def test_power_cuts_at_every_op_keep_component_events_exactly_once():
    # the littlefs-style harness of tests/test_powercut.py with component
    # events in the workload: at every cut point, each event that returned is
    # still pending exactly once until an ack covers it, none appears from
    # nowhere, and the slot table is the one the events left
    from hil import powercut as PC
    res = PC.Result()
    for seed in (11, 12):
        PC.run_snapshots(geometry=(512, 8), n=160, seed=seed, every=2, double_every=10,
                         res=res, events=True)
    assert res.violations == []
    assert res.events >= 6 and res.cuts >= 1900 and res.wraps >= 2     # stress snapshots take some ops too
    print("cut points %d, events %d, violations %d" % (res.cuts, res.events, len(res.violations)))


def _swap_messages(seed=8):
    """The messages of a luminaire whose SHT4x is swapped, as sent."""
    clock = VirtualClock()
    world = Emulation(clock, seed=seed, profile="luminaire")
    col = Collector(":memory:", keys={"dev-p": KEY}.get)
    hub = Hub(col)
    t = hub.transport("dev-p")
    sent = []
    pub = t.publish

    def publish(topic, payload, retain=False):
        sent.append((topic, joined(payload)))
        return pub(topic, payload, retain)
    t.publish = publish
    ag, _ = _agent(world, RingLog(EmulatedNOR(4096, 16), "dev-p"), clock, t, period_ms=5000)
    for i in range(300):
        if i == 150:
            world.models["sht4x"].serial = 0xABCD
        clock.advance_ms(5000)
        ag.tick()
    ag.shutdown()
    want = ledger.history(col._b)
    col.close()
    return sent, want


def test_postgres_books_the_same_events_once_however_often_they_come(postgres):
    sent, want = _swap_messages()
    assert [e["kind"] for e in want if e["slot"] == SLOT] == ["installed", "removed", "installed"]
    col = Collector(postgres, keys={"dev-p": KEY}.get)
    try:
        for _ in range(3):                            # and twice more: replays
            for topic, payload in sent:
                col.handle(topic, payload)
        assert ledger.history(col._b) == want
    finally:
        col.close()


def test_a_batch_with_events_under_a_schema_not_known_yet_waits_for_the_birth():
    sent, want = _swap_messages(seed=10)
    col = Collector(":memory:", keys={"dev-p": KEY}.get)
    data = [(t, p) for t, p in sent if t.endswith("/data")]
    ext = [(t, p) for t, p in data if isinstance(cbor2.loads(cose.verify(p, KEY, "dev-p"))[-1], dict)]
    assert ext
    for t, p in ext:                                   # before any birth: not acked, not quarantined
        assert col.handle(t, p) == []
    assert col.quarantined("dev-p") == [] and col.rejects.get("unknown schema")
    for t, p in sent:
        col.handle(t, p)
    assert ledger.history(col._b) == want
    col.close()


def test_ids_the_ledger_would_refuse_never_reach_the_log():
    clock = VirtualClock()
    world = Emulation(clock, seed=12, profile="luminaire")
    chans = world.channels()
    answers = ["Fan-1A", "fan 2", "", "-x", "fan-1a", "fan-1a"]
    parts = Parts([Slot("fan", lambda: answers.pop(0) if answers else "fan-1a")], period_ms=5000)
    ag = Agent("dev-p", chans + [parts], RingLog(EmulatedNOR(4096, 16), "dev-p"), clock,
               interval_ms=60000, sample_ms=5000).start()
    for _ in range(10):
        clock.advance_ms(5000)
        ag.tick()
    assert _events(ag.log.events, "fan") == [("installed", "fan-1a")]    # lowercased, counted once
    assert parts.faults["garbled"] == 3
    with pytest.raises(ValueError):
        Slot("1fan", lambda: "fan-1")


def test_a_log_with_no_room_for_another_event_is_one_fault_until_an_ack_frees_some():
    # offline (nothing acks): eight pending events fill the log's room; the
    # next install is refused once, counted once, not retried at every
    # sample; an ack frees the room and it is logged at the next check
    clock = VirtualClock()
    world = Emulation(clock, seed=13, profile="luminaire")
    fan = ["fan-1"]
    parts = Parts([Slot("fan", lambda: fan[0])], period_ms=5000)
    ag = Agent("dev-p", world.channels() + [parts], RingLog(EmulatedNOR(4096, 16), "dev-p"), clock,
               interval_ms=60000, sample_ms=5000).start()

    def run(n):
        for _ in range(n):
            clock.advance_ms(5000)
            ag.tick()
    for k in range(2, 6):                          # four swaps: 1 + 2 * 4 = 9 events wanted
        fan[0] = "fan-%d" % k
        run(N_CONFIRM + 1)
    assert len(ag.log.events) == 8 and table(ag.log).get("fan") is None        # removed, not yet installed
    run(200)
    assert parts.faults == {"log": 1} and len(ag.log.events) == 8
    ag.log.ack(ag.log.epoch, ag.log.next_seq - 1)
    run(2)
    assert table(ag.log)["fan"] == "fan-5" and _events(ag.log.events, "fan") == [("installed", "fan-5")]
    assert parts.faults == {"log": 1}


def test_a_part_slow_to_answer_at_boot_is_not_a_removal():
    clock = VirtualClock()
    world = Emulation(clock, seed=13, profile="luminaire")
    nor = EmulatedNOR(4096, 16)
    ag, _ = _agent(world, RingLog(nor, "dev-p"), clock)
    n = len(ag.log.events)
    ag.stop()
    clock.reboot()
    world.i2c.fail_next(0x44, 4)                   # the first reads after power-up are NACKed
    ag, parts = _agent(world, RingLog(nor, "dev-p"), clock)
    for _ in range(20):
        clock.advance_ms(5000)
        ag.tick()
    assert len(ag.log.events) == n and table(ag.log)[SLOT].startswith("sht4x-")


def test_part_tags_in_the_config_name_a_slot_a_chip_and_its_address():
    from agent.cli.toml_config import ConfigError, validate
    from agent.parttags import parse_tag, tags
    assert parse_tag("motor=at24cs02@0x51") == ("motor", "at24cs02", 0x51)
    for bad in ("motor=at24cs02@0x58", "motor=24c02@0x50", "=at24cs02@0x50", "motor"):
        with pytest.raises(ValueError):
            parse_tag(bad)
    cfg = validate({"parts": True, "part_tags": ["motor=at24cs02@0x50", "fan=24aa02e48@0x51"]})
    assert cfg["part_tags"] == ["motor=at24cs02@0x50", "fan=24aa02e48@0x51"]
    for bad in (["motor=at24cs02@0x58"], ["m=at24cs02@0x50", "m=at24cs02@0x51"], "motor=at24cs02@0x50"):
        with pytest.raises(ConfigError, match="part_tags"):
            validate({"part_tags": bad})
    bus, chip, _ = _tag()
    (slot, drv), = tags(["motor=at24cs02@0x50"], bus)
    assert slot == "motor" and drv.ident() == "at24cs02-" + bytes(range(0x10, 0x20)).hex()


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.-@:/", min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(tab=st.dictionaries(_NAME, st.text(alphabet="abcdef0123456789-", min_size=3, max_size=64), max_size=30),
       other=_NAME)
def test_lookup_reads_a_slot_from_the_table_bytes_as_the_table_decodes(tab, other):
    """RingLog.parts keeps the slot table as its CBOR map; parts.lookup reads
    one slot in place. For every table (short and long names and ids, maps
    of more than 23 slots with a two-byte head) it answers what the decoded
    table does, for every slot in it, and None for one that is not."""
    raw = cbor.dumps(tab)
    assert cbor2.loads(raw) == tab
    for k, v in tab.items():
        assert lookup(raw, k) == v
    for k in (other, other + "x", other[:-1] or "q"):
        assert lookup(raw, k) == tab.get(k)
    assert lookup(b"", other) is None
    # a slot name or an id past 255 bytes has a 2-byte length head
    big = dict(tab, **{other: "x" * 300, "z" * 260: "y-1"})
    raw = cbor.dumps(big)
    assert lookup(raw, other) == "x" * 300 and lookup(raw, "z" * 260) == "y-1"
