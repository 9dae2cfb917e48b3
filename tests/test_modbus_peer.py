"""Our Modbus master against a real Modbus stack: pymodbus's RTU server
(ModbusSerialServer, in a thread with its own asyncio loop) on one end of a
PtyLink (two pseudo-terminals back to back), our ModbusRTU with the SDM120
and SDM630 maps reading through pyserial on the other. One RS-485 line, two
meters on it: slave 1 holds an SDM120-style map, slave 2 an SDM630-style one
(float32 pairs, big-endian). Needs pymodbus (the test extra): skipped when it
is missing, a failure under CI."""
import asyncio
import os
import struct
import threading

import pytest

from drivers.errors import BusTimeout, NackError
from drivers.modbus import ModbusRTU
from drivers.sdm120 import SDM120
from drivers.sdm630 import SDM630

# values exactly representable as float32, so "what the server holds" and
# what the driver returns (scaled ints) compare without rounding questions
SDM120_REGS = {0x0000: 230.5, 0x0006: 1.25, 0x000C: 288.0, 0x0156: 1234.5}
SDM120_WANT = (2305, 1250, 288, 1234500)
SDM630_REGS = {0x0000: 230.5, 0x0002: 231.0, 0x0004: 229.75,
               0x0006: 10.5, 0x0008: 11.25, 0x000A: 9.75,
               0x000C: 2420.25, 0x000E: 2598.75, 0x0010: 2240.0, 0x0034: 7259.0,
               0x0046: 50.0, 0x0048: 98765.5, 0x004A: 12.25, 0x0156: 98777.75}
SDM630_WANT = (2305, 2310, 2298, 10500, 11250, 9750, 2420, 2599, 2240, 7259, 50000,
               98765500, 12250, 98777750)
BLOCKS = ((0x0000, 0x0050), (0x0156, 0x0158))     # input registers each slave has


def _pymodbus():
    try:
        from pymodbus.server import ModbusSerialServer
        from pymodbus.simulator import DataType, SimData, SimDevice
    except ImportError as e:
        msg = "pymodbus is not installed (pip install -e '.[test]'): %s" % e
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return ModbusSerialServer, DataType, SimData, SimDevice


def _device(pm, slave, regs):
    _, DataType, SimData, SimDevice = pm
    inputs = [SimData(lo, values=[float(regs.get(r, 0.0)) for r in range(lo, hi, 2)],
                      datatype=DataType.FLOAT32) for lo, hi in BLOCKS]
    holding = [SimData(0x0014, values=[float(slave)], datatype=DataType.FLOAT32)]
    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    return SimDevice(id=slave, simdata=(bits, list(bits), holding, inputs))


class PeerServer:
    """pymodbus's RTU server on `port` in a daemon thread; start() returns once
    it listens, stop() shuts it down and joins the thread."""

    def __init__(self, pm, port, devices):
        self.pm = pm
        self.port = port
        self.devices = devices
        self.server = None
        self.error = None
        self._loop = None
        self._ready = threading.Event()
        self._thread = None

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)

        async def main():
            self.server = self.pm[0](self.devices, port=self.port, baudrate=9600,
                                     ignore_missing_devices=True)
            await self.server.serve_forever(background=True)
            self._ready.set()
            await self.server.serving

        try:
            self._loop.run_until_complete(main())
        except Exception as e:               # keep it for the test to see
            self.error = e
        finally:
            self._ready.set()
            self._loop.close()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="pymodbus", daemon=True)
        self._thread.start()
        assert self._ready.wait(5), "pymodbus server did not start"
        assert self.error is None, self.error
        return self

    def stop(self):
        if self.server is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.server.shutdown(), self._loop).result(5)
        self._thread.join(5)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def peer():
    pm = _pymodbus()
    serial = pytest.importorskip("serial")
    from hil.harness.pty_serial import PtyLink
    link = PtyLink().start()
    srv = ser = None
    try:
        srv = PeerServer(pm, link.ports[0], [_device(pm, 1, SDM120_REGS),
                                             _device(pm, 2, SDM630_REGS)]).start()
        ser = serial.Serial(link.ports[1], 9600, timeout=0.2)
        yield ModbusRTU(ser, timeout_ms=1000), srv, link     # no test waits it out
    finally:
        if ser is not None:
            ser.close()
        if srv is not None:
            srv.stop()
        link.stop()


def _words(x):
    return list(struct.unpack(">HH", struct.pack(">f", x)))


def test_registers_are_what_the_server_holds(peer):
    mb, srv, link = peer
    assert mb.read_input_registers(1, 0x0000, 2) == _words(230.5)
    assert mb.read_input_registers(2, 0x0046, 6) == _words(50.0) + _words(98765.5) + _words(12.25)
    assert mb.read_holding_registers(2, 0x0014, 2) == _words(2.0)        # fc 0x03


def test_sdm120_and_sdm630_maps_read_a_real_peer(peer):
    mb, srv, link = peer
    assert SDM120(mb, 1).read() == SDM120_WANT
    assert SDM630(mb, 2).read() == SDM630_WANT
    assert SDM630(mb, 2).read() == SDM630_WANT


def test_illegal_address_is_nack_code_2_from_the_peer(peer):
    mb, srv, link = peer
    with pytest.raises(NackError) as ei:
        mb.read_input_registers(2, 0x0300, 2)
    assert ei.value.code == 2 and ei.value.kind == "nack"
    assert "illegal data address" in str(ei.value)
    assert SDM630(mb, 2).read() == SDM630_WANT                           # and on it goes


def test_absent_slave_then_the_line_goes_on(peer):
    # A real line is silent for an absent slave (BusTimeout). pymodbus 3.16
    # answers it with exception 4 instead: its SimCore raises KeyError, not
    # the NoSuchIdException that ignore_missing_devices looks for.
    mb, srv, link = peer
    with pytest.raises((BusTimeout, NackError)) as ei:
        mb.read_input_registers(7, 0x0000, 2)
    assert isinstance(ei.value, BusTimeout) or ei.value.code == 4
    assert SDM120(mb, 1).read() == SDM120_WANT
    assert srv.error is None and link.error is None
