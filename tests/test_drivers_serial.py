"""Serial drivers against their twins: the SDM630 map (Modbus RTU, shared with
the SDM120 through drivers/regmap.py) and the PMS5003 particulate sensor, over
the in-process loopback and over a pseudo-terminal with pyserial. Every fault
the twins inject lands as its typed error, the driver recovers, and a reading
costs the fewest frames the protocol allows."""
import struct

import pytest

from drivers.errors import BusTimeout, CRCError, NackError, RangeError
from drivers.modbus import ModbusRTU
from drivers.pms5003 import PMS5003, SCAN, checksum
from drivers.sdm120 import SDM120
from drivers.sdm630 import SDM630
from hil.twins.pms5003 import PMS5003Model
from hil.twins.sdm630 import SDM630Model
from hil.buses.serial_loop import LoopbackPort


class Three:
    """SDM630 source: ((V1..3), (A1..3), total W, import kWh, export kWh, Hz)."""

    def __init__(self):
        self.value = ((230.5, 231.0, 229.75), (10.5, 11.25, 9.75), 7259.0, 98765.5, 12.25, 50.0)

    def __call__(self):
        return self.value


def _phase_w(v):
    (v1, v2, v3), (a1, a2, a3), w = v[0], v[1], v[2]
    va = (v1 * a1, v2 * a2, v3 * a3)
    return [round(struct.unpack(">f", struct.pack(">f", w * x / sum(va)))[0]) for x in va]


def sdm630_want(v):
    p = _phase_w(v)
    return (2305, 2310, 2298, 10500, 11250, 9750, p[0], p[1], p[2], 7259, 50000,
            98765500, 12250, 98777750)


def sdm630_rig(timeout_ms=50):
    model = SDM630Model(Three())
    port = LoopbackPort(model)
    return model, port, SDM630(ModbusRTU(port, timeout_ms=timeout_ms))


# register maps ------------------------------------------------------------------------

def check_map(blocks, max_count, pairs=True):
    """Problems with a map (empty: fine): a field outside its block or not a
    whole float, a block over max_count registers or, when the meter wants
    register pairs (Eastron), at an odd address or count."""
    bad = []
    for fc, addr, count, fields in blocks:
        if not 1 <= count <= max_count:
            bad.append("block 0x%04x: %d registers" % (addr, count))
        if pairs and (addr | count) & 1:
            bad.append("block 0x%04x: odd address or count" % addr)
        for reg, name, scale, lo, hi in fields:
            if not addr <= reg <= addr + count - 2:
                bad.append("%s @0x%04x outside block 0x%04x" % (name, reg, addr))
    return bad


def test_maps_are_whole_floats_inside_blocks_the_meters_accept():
    assert check_map(SDM630.BLOCKS, 80) == []
    assert check_map(SDM120.BLOCKS, 80) == []
    assert check_map(((4, 0, 4, ((3, "x", 1, 0, 1),)),), 80) == ["x @0x0003 outside block 0x0000"]
    assert check_map(((4, 1, 100, ()),), 80) == ["block 0x0001: 100 registers",
                                                 "block 0x0001: odd address or count"]


def test_sdm630_names_units_and_values():
    model, port, meter = sdm630_rig()
    assert meter.names == ("v1", "v2", "v3", "i1", "i2", "i3", "p1", "p2", "p3", "power",
                           "freq", "import", "export", "energy")
    assert meter.read() == sdm630_want(model.source.value)
    assert meter.name == "SDM630@1"


def test_sdm630_reading_is_two_requests_two_replies():
    model, port, meter = sdm630_rig()
    meter.read()
    assert (model.requests, port.frames_in, port.frames_out) == (2, 2, 2)
    meter.read()
    assert (model.requests, port.frames_in, port.frames_out) == (4, 4, 4)


def test_sdm630_model_accepts_the_scenario_shape():
    # hil/scenario.py BoosterPump.sdm630: (volts, amps, total W, import kWh)
    model = SDM630Model(lambda: ((230.0, 230.0, 230.0), (8.0, 8.0, 8.0), 5520.0, 500.0))
    v = SDM630(ModbusRTU(LoopbackPort(model))).read()
    assert v == (2300, 2300, 2300, 8000, 8000, 8000, 1840, 1840, 1840, 5520, 50000,
                 500000, 0, 500000)


def test_sdm630_model_wants_register_pairs_and_at_most_80():
    mb = ModbusRTU(LoopbackPort(SDM630Model(Three())))
    for addr, count, code in ((0x0001, 2, 2), (0x0000, 3, 3), (0x0000, 82, 3), (0x0120, 2, 2)):
        with pytest.raises(NackError) as ei:
            mb.read_input_registers(1, addr, count)
        assert ei.value.code == code, (addr, count)
    assert len(mb.read_input_registers(1, 0x0000, 80)) == 80


@pytest.mark.parametrize("i, bad, what", [
    (0, (float("nan"), 230.0, 230.0), "v1"), (0, (230.0, -1.0, 230.0), "v2"),
    (1, (1.0, 1.0, 2e4), "i3"), (3, -0.5, "import"), (5, 1e6, "freq"),
])
def test_sdm630_impossible_values_are_range_errors(i, bad, what):
    model, port, meter = sdm630_rig()
    good = model.source.value
    model.source.value = good[:i] + (bad,) + good[i + 1:]
    with pytest.raises(RangeError) as ei:
        meter.read()
    assert "SDM630@1: %s out of range" % what in str(ei.value)
    model.source.value = good
    assert meter.read() == sdm630_want(good)


# Modbus faults: every kind lands typed, and the next reading is good ----------------------

def inject(model, fault):
    name, _, arg = fault.partition("=")
    setattr(model, name + "_next", int(arg) if arg else True)


MODBUS_FAULTS = [
    ("exception=2", NackError), ("exception=5", NackError), ("exception=6", NackError),
    ("corrupt_crc", CRCError), ("garble", CRCError), ("truncate", BusTimeout),
    ("drop", BusTimeout), ("delay", BusTimeout), ("noise=12", CRCError),
]
NAMES = {2: "illegal data address", 5: "acknowledge", 6: "slave device busy"}


def settle(read, tries):
    """The first good reading within `tries`; failures on the way are typed."""
    for i in range(tries):
        try:
            return read()
        except (CRCError, BusTimeout):
            if i == tries - 1:
                raise


def check_modbus_fault(model, meter, fault, cls):
    tries = 1
    if fault == "delay":
        # late by half a timeout more than the master waits. A slave answers
        # in order, so the late reply and the one behind it may still land in
        # the next reading's requests (on a loaded machine): allow three.
        fault = "delay=%d" % (meter.modbus.timeout_ms * 3 // 2)
        tries = 3
    inject(model, fault)
    with pytest.raises(cls) as ei:
        meter.read()
    assert isinstance(ei.value, OSError) and ei.value.kind == cls.kind
    if cls is NackError:
        code = int(fault.split("=")[1])
        assert ei.value.code == code and NAMES[code] in str(ei.value)
    want = sdm630_want(model.source.value)
    assert settle(meter.read, tries) == want, fault
    assert meter.read() == want, fault


@pytest.mark.emulator_exact
@pytest.mark.parametrize("fault, cls", MODBUS_FAULTS)
def test_sdm630_faults_over_loopback(fault, cls):
    model, port, meter = sdm630_rig(timeout_ms=50)
    check_modbus_fault(model, meter, fault, cls)


@pytest.mark.emulator_exact
@pytest.mark.parametrize("n", [1, 3, 8])
def test_stray_bytes_before_a_reply_are_skipped(n):
    model, port, meter = sdm630_rig()
    model.noise_next = n
    assert meter.read() == sdm630_want(model.source.value)


class UARTLike(LoopbackPort):
    """machine.UART's shape: any(), no reset_input_buffer."""
    reset_input_buffer = None


@pytest.mark.emulator_exact
def test_stale_input_is_drained_with_any_when_there_is_no_reset():
    model = SDM630Model(Three())
    port = UARTLike(model)
    meter = SDM630(ModbusRTU(port, timeout_ms=30))
    port._out.extend(b"\x01\x04stale")              # left over from an earlier exchange
    assert meter.read() == sdm630_want(model.source.value)
    model.truncate_next = True
    with pytest.raises(BusTimeout):
        meter.read()
    assert port.any() == 0
    assert meter.read() == sdm630_want(model.source.value)


@pytest.fixture
def sdm630_pty():
    pytest.importorskip("serial")
    from hil.harness.pty_serial import PtyServer
    model = SDM630Model(Three())
    with PtyServer(model) as srv:
        yield model, srv, SDM630(ModbusRTU(srv.open_serial(timeout=0.05), timeout_ms=150))


@pytest.mark.emulator_exact
def test_sdm630_over_pty_with_every_fault(sdm630_pty):
    model, srv, meter = sdm630_pty
    want = sdm630_want(model.source.value)
    assert meter.read() == want
    assert srv.frames == 2
    for fault, cls in MODBUS_FAULTS:
        check_modbus_fault(model, meter, fault, cls)
    model.noise_next = 4
    assert meter.read() == want
    assert srv.error is None


# PMS5003 -------------------------------------------------------------------------------

class BytesPort:
    """Answers the first write with fixed bytes; records what is written
    (pyserial's 0 on timeout, no reset_input_buffer, no any())."""

    def __init__(self, reply=b""):
        self.reply = reply
        self.data = bytearray()
        self.written = []

    def write(self, b):
        self.written.append(bytes(b))
        self.data += self.reply
        self.reply = b""
        return len(b)

    def readinto(self, buf):
        k = min(len(buf), len(self.data))
        buf[:k] = self.data[:k]
        del self.data[:k]
        return k


def datasheet_frame(words):
    """The 32-byte frame as the datasheet lays it out, checksum computed here."""
    body = bytes([0x42, 0x4D, 0x00, 0x1C]) + b"".join(struct.pack(">H", w) for w in words)
    return body + struct.pack(">H", sum(body) & 0xFFFF)


PM = (5, 12, 15, 4, 11, 15, 1200, 350, 80, 9, 2, 1)


def test_pms5003_decodes_the_datasheet_frame():
    frame = datasheet_frame(PM + (0x9700,))
    assert len(frame) == 32 and checksum(frame, 0, 30) == struct.unpack(">H", frame[30:])[0]
    port = BytesPort(frame)
    d = PMS5003(port, timeout_ms=20)
    assert d.read() == PM and d.reserved == 0x9700
    assert port.written == [bytes.fromhex("424de200000171")]     # passive: read command


def test_pms5003_command_frames():
    port = BytesPort()
    d = PMS5003(port, passive=False)
    d.init()
    d.set_passive()
    d.sleep()
    d.wake()
    assert port.written == [bytes.fromhex(h) for h in (
        "424de100010171", "424de100000170", "424de400000173", "424de400010174")]


def test_pms5003_skips_noise_and_command_answers_before_a_frame():
    ack = bytes.fromhex("424d0004e1000174")
    junk = b"\x00\x42\x4d\x00\x99\x42" + ack + b"\xff\x42"
    d = PMS5003(BytesPort(junk + datasheet_frame(PM + (0,))), timeout_ms=20)
    assert d.read() == PM


@pytest.mark.parametrize("data, cls", [
    (b"", BusTimeout),
    (datasheet_frame(PM + (0,))[:31], BusTimeout),
    (datasheet_frame(PM + (0,))[:31] + b"\x00", CRCError),
    (bytes(SCAN + 8), CRCError),
    (b"\x42\x4d\x00", BusTimeout),
])
def test_pms5003_bad_input(data, cls):
    d = PMS5003(BytesPort(data), timeout_ms=20)
    with pytest.raises(cls) as ei:
        d.read()
    assert isinstance(ei.value, OSError) and "PMS5003" in str(ei.value)


def pms_rig(passive=True, period_ms=0, timeout_ms=40):
    model = PMS5003Model(lambda: PM, period_ms=period_ms)
    port = LoopbackPort(model)
    d = PMS5003(port, passive=passive, timeout_ms=timeout_ms)
    d.init()
    return model, port, d


@pytest.mark.emulator_exact
def test_pms5003_passive_reading_is_one_command_one_frame():
    model, port, d = pms_rig()
    assert d.read() == PM
    before = (port.frames_in, port.frames_out, model.frames)
    assert d.read() == PM
    assert (port.frames_in - before[0], port.frames_out - before[1], model.frames - before[2]) \
        == (1, 1, 1)


@pytest.mark.emulator_exact
def test_pms5003_active_reading_is_one_frame_and_no_command():
    model, port, d = pms_rig(passive=False)
    assert d.read() == PM
    before = (port.frames_in, model.frames)
    assert d.read() == PM
    assert (port.frames_in - before[0], model.frames - before[1]) == (0, 1)


PMS_FAULTS = [("drop", BusTimeout), ("garble", CRCError), ("truncate", BusTimeout),
              ("bad_checksum", CRCError), ("noise=%d" % (SCAN + 6), CRCError)]


def check_pms_fault(model, d, fault, cls):
    inject(model, fault)
    with pytest.raises(cls) as ei:
        d.read()
    assert isinstance(ei.value, OSError) and ei.value.kind == cls.kind
    assert d.read() == PM, fault


@pytest.mark.emulator_exact
@pytest.mark.parametrize("fault, cls", PMS_FAULTS)
def test_pms5003_faults_over_loopback(fault, cls):
    model, port, d = pms_rig()
    check_pms_fault(model, d, fault, cls)


@pytest.mark.emulator_exact
def test_pms5003_active_mode_faults():
    # active: a cut frame runs into the next one (checksum), noise is skipped
    model, port, d = pms_rig(passive=False)
    model.truncate_next = True
    with pytest.raises(CRCError):
        d.read()
    model.noise_next = 20
    assert d.read() == PM


@pytest.mark.emulator_exact
def test_pms5003_sleep_wake_and_stuck_asleep():
    model, port, d = pms_rig()
    d.sleep()
    assert model.asleep
    with pytest.raises(BusTimeout):
        d.read()
    d.wake()
    assert d.read() == PM
    model.stuck_asleep = True
    d.wake()
    with pytest.raises(BusTimeout):
        d.read()
    model.stuck_asleep = False
    d.wake()
    assert d.read() == PM


@pytest.mark.emulator_exact
def test_pms5003_over_pty():
    pytest.importorskip("serial")
    from hil.harness.pty_serial import PtyServer
    model = PMS5003Model(lambda: PM, period_ms=60)
    with PtyServer(model) as srv:
        d = PMS5003(srv.open_serial(timeout=0.05), passive=False, timeout_ms=300)
        assert d.read() == PM                         # active: the sensor's own frames
        d.set_passive()
        assert d.read() == PM
        n = model.frames
        assert d.read() == PM and model.frames == n + 1
        d.timeout_ms = 80
        for fault, cls in PMS_FAULTS:
            check_pms_fault(model, d, fault, cls)
        assert srv.error is None
