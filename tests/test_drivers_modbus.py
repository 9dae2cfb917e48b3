"""Modbus RTU (drivers/modbus.py) and the SDM120 meter (drivers/sdm120.py):
request frames as the datasheet writes them, every kind of bad reply typed
(timeout, CRC, exception = NACK, range), exact float scaling, and the driver
against the SDM120 twin over an in-process loopback and over a real pty. The
scripted ports stand in for the serial line only, the edge of the world."""
import math
import os
import struct
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from drivers.crc import crc16_modbus
from drivers.errors import BusTimeout, CRCError, NackError, RangeError
from drivers.modbus import ModbusRTU
from drivers.sdm120 import SDM120, f32_scaled
from hil.twins.sdm120 import LoopbackPort, SDM120Model


def with_crc(b):
    b = bytes(b)
    c = crc16_modbus(b)
    return b + bytes([c & 0xFF, c >> 8])


class ScriptPort:
    """A serial port that plays back scripted replies, `chunk` bytes per read;
    `none_on_empty` mimics machine.UART (None on timeout); no
    reset_input_buffer (see ResettablePort)."""

    def __init__(self, replies=(), chunk=256, none_on_empty=False):
        self.replies = list(replies)
        self.chunk = chunk
        self.none_on_empty = none_on_empty
        self.written = []
        self.buf = b""

    def write(self, b):
        self.written.append(bytes(b))
        if self.replies:
            self.buf += self.replies.pop(0)
        return len(b)

    def read(self, n=1):
        k = min(n, self.chunk)
        out, self.buf = self.buf[:k], self.buf[k:]
        if not out and self.none_on_empty:
            return None
        return out

    def readinto(self, buf):
        out = self.read(len(buf))       # subclasses override read()
        if not out:
            return None if out is None else 0       # machine.UART / pyserial
        buf[:len(out)] = out
        return len(out)


class ResettablePort(ScriptPort):
    def __init__(self, *a, **kw):
        ScriptPort.__init__(self, *a, **kw)
        self.resets = 0

    def reset_input_buffer(self):
        self.resets += 1
        self.buf = b""


class Meter:
    def __init__(self, v=230.1, a=1.234, w=250.5, kwh=1234.5678):
        self.value = (v, a, w, kwh)

    def __call__(self):
        return self.value


OK = (2301, 1234, 251, 1234568)


# the master against scripted bytes ---------------------------------------------------

def test_request_frame_is_the_datasheet_frame():
    port = ScriptPort([with_crc(b"\x01\x04\x04\x00\x01\x00\x02")])
    assert ModbusRTU(port).read_input_registers(1, 0, 2) == [1, 2]
    assert port.written == [bytes.fromhex("01040000000271cb")]


def test_holding_registers_fc3_and_chunked_reply():
    reply = with_crc(b"\x11\x03\x06\x02\x2b\x00\x00\x00\x64")
    port = ScriptPort([reply], chunk=1)
    assert ModbusRTU(port).read_holding_registers(0x11, 0x006B, 3) == [0x022B, 0, 0x64]
    assert port.written == [with_crc(b"\x11\x03\x00\x6b\x00\x03")]


@pytest.mark.parametrize("reply, cls", [
    (b"", BusTimeout),                                               # silence
    (b"\x01\x04", BusTimeout),                                       # short head
    (with_crc(b"\x01\x04\x04\x00\x01\x00\x02")[:-1], BusTimeout),    # short tail
    (with_crc(b"\x02\x04\x04\x00\x01\x00\x02"), CRCError),           # wrong slave
    (with_crc(b"\x01\x03\x04\x00\x01\x00\x02"), CRCError),           # wrong function
    (with_crc(b"\x01\x04\x02\x00\x01"), CRCError),                   # byte count
    (with_crc(b"\x01\x04\x04\x00\x01\x00\x02")[:-1] + b"\x00", CRCError),
    (with_crc(b"\x01\x84\x02")[:-1] + b"\x00", CRCError),            # exception, bad CRC
    (b"\x01\x84", BusTimeout),
    (b"\x00\xff\x00\xff", CRCError),                                   # stray bytes, silence
    (b"\xff" * 9 + with_crc(b"\x01\x04\x04\x00\x01\x00\x02"), CRCError),  # past RESYNC
])
def test_master_classifies_bad_replies(reply, cls):
    port = ResettablePort([reply, with_crc(b"\x01\x04\x04\x00\x07\x00\x08")])
    mb = ModbusRTU(port, timeout_ms=30)
    with pytest.raises(cls) as ei:
        mb.read_input_registers(1, 0, 2)
    assert isinstance(ei.value, OSError) and ei.value.kind == cls.kind
    assert "slave 1" in str(ei.value)
    assert mb.read_input_registers(1, 0, 2) == [7, 8]


@pytest.mark.parametrize("code, name", [(1, "illegal function"), (2, "illegal data address"),
                                        (3, "illegal data value"), (4, "slave device failure")])
def test_exception_reply_is_nack_with_code(code, name):
    port = ScriptPort([with_crc(bytes([1, 0x84, code]))])
    with pytest.raises(NackError) as ei:
        ModbusRTU(port).read_input_registers(1, 0, 2)
    assert ei.value.code == code and name in str(ei.value)
    assert ei.value.kind == "nack"


def test_uart_none_means_timeout():
    port = ScriptPort([b""], none_on_empty=True)
    t0 = time.monotonic()
    with pytest.raises(BusTimeout):
        ModbusRTU(port, timeout_ms=50).read_input_registers(1, 0, 2)
    assert time.monotonic() - t0 >= 0.045     # it waited (ms ticks are floored)


class LatePort(ScriptPort):
    """A non-blocking port (machine.UART with timeout=0): the reply only shows
    up after some empty polls."""

    def __init__(self, replies, empty_polls):
        ScriptPort.__init__(self, replies, chunk=2, none_on_empty=True)
        self.empty_polls = empty_polls

    def read(self, n=1):
        if self.empty_polls:
            self.empty_polls -= 1
            return None
        return ScriptPort.read(self, n)


def test_non_blocking_port_is_polled_until_the_reply_arrives():
    port = LatePort([with_crc(b"\x01\x04\x04\x00\x01\x00\x02")], empty_polls=5)
    assert ModbusRTU(port, timeout_ms=200).read_input_registers(1, 0, 2) == [1, 2]


def test_error_drains_port_without_reset_input_buffer():
    garbage = b"\x01\x04\x09" + b"\xaa" * 40          # bad byte count, junk behind
    port = ScriptPort([garbage, with_crc(b"\x01\x04\x04\x00\x07\x00\x08")], chunk=16)
    mb = ModbusRTU(port)
    with pytest.raises(CRCError):
        mb.read_input_registers(1, 0, 2)
    assert port.buf == b""
    assert mb.read_input_registers(1, 0, 2) == [7, 8]


def test_input_is_reset_before_each_request():
    port = ResettablePort([with_crc(b"\x01\x04\x04\x00\x01\x00\x02")])
    port.buf = b"stale bytes from an earlier timeout"
    assert ModbusRTU(port).read_input_registers(1, 0, 2) == [1, 2]
    assert port.resets == 1


@pytest.mark.parametrize("args", [(0, 0, 1), (248, 0, 1), (1, 0, 0), (1, 0, 126), (1, 0x10000, 1)])
def test_bad_request_arguments(args):
    with pytest.raises(ValueError):
        ModbusRTU(ScriptPort()).read_input_registers(*args)


# float32 decoding -------------------------------------------------------------------

def ref_scaled(x, scale):
    q = Fraction(x) * scale
    r = math.floor(abs(q) + Fraction(1, 2))
    return -r if q < 0 else r


@given(st.floats(width=32, allow_nan=False, allow_infinity=False, max_value=2.0 ** 39, min_value=-2.0 ** 39),
       st.sampled_from([1, 10, 1000]))
def test_f32_scaled_is_exact(x, scale):
    b = struct.pack(">f", x)
    assert f32_scaled(b, 0, scale) == ref_scaled(struct.unpack(">f", b)[0], scale)


@pytest.mark.parametrize("x, scale, want", [
    (2.5, 1, 3), (-2.5, 1, -3), (0.5, 1, 1), (0.49999997, 1, 0), (230.05, 10, 2301),
    (1234.5678, 1000, 1234568), (0.0, 1000, 0), (-0.0, 1000, 0), (1e-45, 1000, 0),
    (16777216.0, 1000, 16777216000),
])
def test_f32_scaled_cases(x, scale, want):
    assert f32_scaled(struct.pack(">f", x), 0, scale) == want


def test_f32_scaled_rejects_nan_inf_and_huge():
    for x in (float("nan"), float("inf"), float("-inf"), 2.0 ** 40, -3e38):
        assert f32_scaled(struct.pack(">f", x), 0, 1) is None
    assert f32_scaled(struct.pack(">f", 2.0 ** 39), 0, 1) == 2 ** 39


# the model ---------------------------------------------------------------------------

def test_model_answers_like_the_meter():
    m = SDM120Model(Meter(), slave=3)
    r = m.handle(with_crc(b"\x03\x04\x00\x00\x00\x02"))
    assert r == with_crc(b"\x03\x04\x04" + struct.pack(">f", 230.1))
    assert m.handle(with_crc(b"\x03\x04\x00\x00\x00\x02")[:-1] + b"\x00") is None   # bad CRC
    assert m.handle(with_crc(b"\x01\x04\x00\x00\x00\x02")) is None                  # other slave
    assert m.handle(with_crc(b"\x00\x04\x00\x00\x00\x02")) is None                  # broadcast
    assert m.handle(with_crc(b"\x03\x06\x00\x00\x00\x02")) == with_crc(b"\x03\x86\x01")
    assert m.handle(with_crc(b"\x03\x04\x01\x00\x00\x02")) == with_crc(b"\x03\x84\x02")
    assert m.handle(with_crc(b"\x03\x04\x00\x00\x00\x00")) == with_crc(b"\x03\x84\x03")
    assert m.requests == 4         # the replies above; silence does not count


# SDM120 over the in-process loopback -------------------------------------------------

def loop_rig(**kw):
    model = SDM120Model(Meter(**kw))
    port = LoopbackPort(model)
    return model, port, SDM120(ModbusRTU(port))


@pytest.mark.emulator_exact
def test_sdm120_values_over_loopback():
    model, port, meter = loop_rig()
    assert meter.read() == OK
    assert model.requests == 2
    model.source.value = (241.35, 12.3456, -2000.5, 99999.99)
    assert meter.read() == (2414, 12346, -2001, 99999992)


@pytest.mark.emulator_exact
@pytest.mark.parametrize("value", [
    (float("nan"), 1.0, 230.0, 5.0), (230.0, float("inf"), 230.0, 5.0),
    (230.0, 1.0, float("-inf"), 5.0), (230.0, 1.0, 230.0, -0.001), (-230.0, 1.0, 230.0, 5.0),
    (230.0, 1.0, 230.0, float("nan")), (1e6, 1.0, 230.0, 5.0),
])
def test_sdm120_impossible_values_are_range_errors(value):
    model, port, meter = loop_rig()
    model.source.value = value
    with pytest.raises(RangeError) as ei:
        meter.read()
    assert isinstance(ei.value, OSError) and "SDM120@1" in str(ei.value)
    model.source.value = Meter().value
    assert meter.read() == OK


def inject(model, fault):
    if fault == "exception":
        model.exception_next = 4
    else:
        setattr(model, fault + "_next", True)


FAULTS = [("exception", NackError), ("corrupt_crc", CRCError), ("garble", CRCError),
          ("drop", BusTimeout)]


@pytest.mark.emulator_exact
@pytest.mark.parametrize("fault, cls", FAULTS)
def test_sdm120_faults_over_loopback(fault, cls):
    model, port, meter = loop_rig()
    inject(model, fault)
    with pytest.raises(cls) as ei:
        meter.read()
    assert isinstance(ei.value, OSError)
    if fault == "exception":
        assert ei.value.code == 4
    assert meter.read() == OK


@pytest.mark.emulator_exact
def test_loopback_resyncs_after_junk():
    model, port, meter = loop_rig()
    port.write(b"\x55\x01\x04")                       # line noise before a request
    assert meter.read() == OK


# SDM120 over a real pseudo-terminal with pyserial ---------------------------------------

@pytest.fixture
def pty_rig():
    pytest.importorskip("serial")
    from hil.harness.pty_serial import PtyServer
    model = SDM120Model(Meter())
    with PtyServer(model) as srv:
        ser = srv.open_serial()
        yield model, srv, ser, SDM120(ModbusRTU(ser))


@pytest.mark.emulator_exact
def test_sdm120_over_pty(pty_rig):
    model, srv, ser, meter = pty_rig
    assert meter.read() == OK
    assert meter.read() == OK
    assert model.requests == 4 and srv.frames == 4 and srv.error is None


@pytest.mark.emulator_exact
def test_sdm120_faults_over_pty(pty_rig):
    model, srv, ser, meter = pty_rig
    for fault, cls in FAULTS:
        inject(model, fault)
        with pytest.raises(cls) as ei:
            meter.read()
        if fault == "exception":
            assert ei.value.code == 4 and "slave device failure" in str(ei.value)
        assert meter.read() == OK, fault
    mb = meter.modbus
    with pytest.raises(NackError) as ei:
        mb.read_input_registers(1, 0x0300, 2)
    assert ei.value.code == 2
    assert mb.read_holding_registers(1, 0x0014, 2) == [0x3F80, 0]       # 1.0: meter id
    assert srv.error is None


@pytest.mark.emulator_exact
def test_pty_server_resyncs_on_junk(pty_rig):
    model, srv, ser, meter = pty_rig
    ser.write(b"\xff\x01\x04\x00")                    # junk, then a real request follows
    assert ModbusRTU(ser).read_input_registers(1, 0x0156, 2) == list(
        struct.unpack(">HH", struct.pack(">f", 1234.5678)))
    assert srv.discarded >= 4


def test_pty_server_stops_cleanly():
    pytest.importorskip("serial")
    from hil.harness.pty_serial import PtyServer
    before = threading.active_count()
    with PtyServer(SDM120Model(Meter())) as srv:
        fds = (srv._master, srv._slave, srv._wake_r, srv._wake_w)
        thread = srv._thread
        assert thread.is_alive() and os.path.exists(srv.port)
    assert not thread.is_alive()
    assert threading.active_count() == before
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    srv.stop()                                        # idempotent
