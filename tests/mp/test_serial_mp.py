# Serial drivers under MicroPython (and CPython): the SDM630 map and the
# PMS5003 decoder against their twins over the in-process loopback, one
# fault each, and the transactions a reading costs.
from drivers.errors import CRCError, NackError, BusTimeout
from drivers.modbus import ModbusRTU
from drivers.sdm630 import SDM630
from drivers.pms5003 import PMS5003
from hil.twins.sdm630 import SDM630Model
from hil.twins.pms5003 import PMS5003Model
from hil.buses.serial_loop import LoopbackPort

SRC = ((230.5, 231.0, 229.75), (10.5, 11.25, 9.75), 7259.0, 98765.5, 12.25, 50.0)
# phase powers are the model's V*A split of 7259 W, as float32, rounded
WANT = (2305, 2310, 2298, 10500, 11250, 9750, 2420, 2599, 2240, 7259, 50000,
        98765500, 12250, 98777750)
PM = (5, 12, 15, 4, 11, 15, 1200, 350, 80, 9, 2, 1)


def _raises(cls, fn):
    try:
        fn()
    except cls as e:
        return e
    raise AssertionError("no %s" % cls.__name__)


def _sdm630():
    model = SDM630Model(lambda: SRC)
    port = LoopbackPort(model)
    return model, port, SDM630(ModbusRTU(port, timeout_ms=30))


def test_sdm630_reads_in_two_requests():
    model, port, meter = _sdm630()
    assert meter.read() == WANT
    assert (model.requests, port.frames_in, port.frames_out) == (2, 2, 2)


def test_sdm630_faults_then_recovers():
    model, port, meter = _sdm630()
    model.exception_next = 6
    e = _raises(NackError, meter.read)
    assert e.code == 6 and "busy" in str(e)
    model.garble_next = True
    _raises(CRCError, meter.read)
    model.noise_next = 3
    assert meter.read() == WANT


def test_pms5003_passive_and_active():
    model = PMS5003Model(lambda: PM, period_ms=0)
    port = LoopbackPort(model)
    d = PMS5003(port, timeout_ms=30)
    d.init()
    assert d.read() == PM
    n = (port.frames_in, model.frames)
    assert d.read() == PM
    assert (port.frames_in - n[0], model.frames - n[1]) == (1, 1)
    d.set_active()
    assert d.read() == PM


def test_pms5003_faults_then_recovers():
    model = PMS5003Model(lambda: PM, period_ms=0)
    d = PMS5003(LoopbackPort(model), timeout_ms=30)
    d.init()
    model.bad_checksum_next = True
    _raises(CRCError, d.read)
    model.drop_next = True
    _raises(BusTimeout, d.read)
    model.noise_next = 10
    assert d.read() == PM
