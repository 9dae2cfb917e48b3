import errno
import os
import subprocess
import sys

import pytest
from hypothesis import assume, given, settings, strategies as st

from drivers.crc import crc8_sensirion
from drivers.errors import (BusError, BusTimeout, CRCError, NackError, RangeError,
                            wrap_oserror)
from drivers.ina219 import INA219
from drivers.sht3x import SHT3x
from hil.i2c import EmulatedI2C
from hil.ina219 import INA219Model
from hil.sht3x import SHT3xModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EREMOTEIO = getattr(errno, "EREMOTEIO", 121)


class Source:
    def __init__(self, *value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def ina_rig(bus_mV=12000, cur_mA=1000, **kw):
    bus = EmulatedI2C()
    src = Source(bus_mV, cur_mA)
    model = INA219Model(src, kw.get("shunt_milliohm", 100))
    bus.attach(0x40, model)
    drv = INA219(bus, 0x40, **kw)
    drv.init()
    return bus, src, model, drv


def sht_rig(t=2500, rh=5000):
    bus = EmulatedI2C()
    src = Source(t, rh)
    model = SHT3xModel(src)
    bus.attach(0x44, model)
    slept = []
    return bus, src, model, SHT3x(bus, sleep_ms=slept.append), slept


# errors -------------------------------------------------------------------------

def test_error_classes_are_oserrors_with_kinds():
    for cls, kind in ((BusError, "bus"), (NackError, "nack"), (CRCError, "crc"),
                      (BusTimeout, "timeout"), (RangeError, "range")):
        e = cls("X@0x10: boom")
        assert isinstance(e, OSError)
        assert isinstance(e, BusError)
        assert e.kind == kind and cls.kind == kind
        assert e.errno is None
        assert "X@0x10: boom" in str(e)


@pytest.mark.parametrize("n", [errno.ENODEV, errno.EIO, EREMOTEIO])
def test_wrap_oserror_nack_keeps_errno(n):
    for plain in (OSError(n, "x"), OSError(n)):       # smbus2 / machine.I2C forms
        e = wrap_oserror(plain, "INA219@0x40")
        assert type(e) is NackError
        assert e.errno == n
        assert "INA219@0x40" in str(e)


def test_wrap_oserror_timeout_and_passthrough():
    e = wrap_oserror(OSError(errno.ETIMEDOUT), "SHT3x@0x44")
    assert type(e) is BusTimeout and e.errno == errno.ETIMEDOUT
    typed = CRCError("already typed")
    assert wrap_oserror(typed, "whoever") is typed


# INA219 -------------------------------------------------------------------------

@pytest.mark.emulator_exact
def test_ina219_init_writes_config_and_calibration_4096():
    bus, src, model, drv = ina_rig()
    assert drv.calibration == 4096
    assert model.cal == 4096
    assert model.config == 0x399F


@pytest.mark.parametrize("shunt, lsb, cal", [
    (100, 100, 4096), (10, 1000, 4096), (50, 50, 16384), (100, 125, 3276), (2, 1000, 20480),
])
def test_ina219_calibration_formula(shunt, lsb, cal):
    # cal = trunc(0.04096 / (lsb[A] * R[ohm])), bit 0 read-only
    assert INA219(EmulatedI2C(), shunt_milliohm=shunt, current_lsb_ua=lsb).calibration == cal


def test_ina219_rejects_impossible_calibration():
    with pytest.raises(ValueError):
        INA219(EmulatedI2C(), shunt_milliohm=1, current_lsb_ua=1)       # 40960000 > 16 bits
    with pytest.raises(ValueError):
        INA219(EmulatedI2C(), shunt_milliohm=100000, current_lsb_ua=1000)   # 0


@pytest.mark.emulator_exact
@pytest.mark.parametrize("bus_mV, cur_mA, power_mW", [
    (12000, 1000, 12000),
    (24000, 2800, 67200),
    (24000, -1234, 29616),       # power register is a magnitude
    (5000, 0, 0),
    (3301, 17, 56),              # bus rounds down to 4 mV: 3300 mV
    (32000, -3200, 102400),
])
def test_ina219_values(bus_mV, cur_mA, power_mW):
    bus, src, model, drv = ina_rig(bus_mV, cur_mA)
    assert drv.read() == (bus_mV // 4 * 4, cur_mA, power_mW)
    assert src.calls == 1        # one conversion per reading
    assert drv.resets == 0


@pytest.mark.emulator_exact
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 32000), st.integers(-3200, 3200),
       st.sampled_from([(100, 100), (100, 125), (50, 100), (10, 1000)]))
def test_ina219_tracks_source(bus_mV, cur_mA, cfg):
    shunt, lsb = cfg
    if cur_mA * shunt > 320000:          # beyond the +-320 mV PGA range
        cur_mA = 320000 // shunt
    if cur_mA * shunt < -320000:
        cur_mA = -320000 // shunt
    bus, src, model, drv = ina_rig(bus_mV, cur_mA, shunt_milliohm=shunt, current_lsb_ua=lsb)
    v, i, p = drv.read()
    assert v == bus_mV - bus_mV % 4
    # shunt register resolution (10 uV), current LSB, calibration truncation
    err_i = 10 // shunt + lsb // 1000 + 1 + abs(cur_mA) // 2000
    assert abs(i - cur_mA) <= err_i
    true_mW = abs(cur_mA) * bus_mV // 1000
    err_p = 20 * lsb // 1000 + 1 + 4 * abs(cur_mA) // 1000 + bus_mV * err_i // 1000
    assert abs(p - true_mW) <= err_p


@pytest.mark.emulator_exact
def test_ina219_overflow_is_range_error_then_recovers():
    bus, src, model, drv = ina_rig()
    model.overflow = True
    with pytest.raises(RangeError) as ei:
        drv.read()
    assert isinstance(ei.value, OSError) and ei.value.kind == "range"
    assert "INA219@0x40" in str(ei.value)
    model.overflow = False
    assert drv.read() == (12000, 1000, 12000)


@pytest.mark.emulator_exact
@pytest.mark.parametrize("err, cls", [(errno.EIO, NackError), (EREMOTEIO, NackError),
                                      (errno.ETIMEDOUT, BusTimeout)])
def test_ina219_bus_faults_are_typed_then_recover(err, cls):
    bus, src, model, drv = ina_rig()
    bus.fail_next(0x40, 1, err)
    with pytest.raises(cls) as ei:
        drv.read()
    assert isinstance(ei.value, OSError)
    assert ei.value.errno == err
    assert drv.read() == (12000, 1000, 12000)


@pytest.mark.emulator_exact
def test_ina219_absent_is_nack_enodev():
    bus, src, model, drv = ina_rig()
    bus.absent(0x40)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV and ei.value.kind == "nack"
    bus.absent(0x40, False)
    assert drv.read() == (12000, 1000, 12000)


@pytest.mark.emulator_exact
def test_ina219_failure_midway_leaves_driver_usable():
    bus, src, model, drv = ina_rig(24000, 2000)
    before = bus.transactions
    drv.read()
    per_read = bus.transactions - before
    assert per_read == 4                     # cal, bus, current, power
    for k in range(per_read):                # fail each transaction in turn
        calls = []
        orig = bus.readfrom_mem_into

        def flaky(addr, reg, buf, addrsize=8):
            calls.append(reg)
            if len(calls) == k + 1:
                raise OSError(errno.EIO)
            return orig(addr, reg, buf, addrsize)
        bus.readfrom_mem_into = flaky
        with pytest.raises(NackError):
            drv.read()
        bus.readfrom_mem_into = orig
        assert drv.read() == (24000, 2000, 48000)


@pytest.mark.emulator_exact
def test_ina219_silent_reset_detected_and_reinitialised():
    bus, src, model, drv = ina_rig(24000, 2800)
    assert drv.read() == (24000, 2800, 67200)
    model.silent_reset()
    assert model.cal == 0
    # the very reading that finds the reset is still right (no false 0 mA)
    assert drv.read() == (24000, 2800, 67200)
    assert drv.resets == 1
    assert model.cal == 4096 and model.config == 0x399F
    assert drv.read() == (24000, 2800, 67200)
    assert drv.resets == 1


@pytest.mark.emulator_exact
def test_ina219_reset_with_failing_reinit_is_counted_once():
    bus, src, model, drv = ina_rig(24000, 2800)
    model.silent_reset()
    real = bus.writeto_mem

    def nack(*a, **kw):
        raise OSError(errno.EIO)
    bus.writeto_mem = nack
    with pytest.raises(NackError):
        drv.read()
    assert drv.resets == 0 and model.cal == 0
    bus.writeto_mem = real
    assert drv.read() == (24000, 2800, 67200)
    assert drv.resets == 1 and model.cal == 4096


@pytest.mark.emulator_exact
def test_ina219_model_reset_bit_and_cal_zero_reads_zero():
    bus, src, model, drv = ina_rig(12000, 1000)
    bus.writeto_mem(0x40, 0x00, b"\x80\x00")          # config bit 15: reset
    assert model.cal == 0 and model.config == 0x399F
    raw = bytearray(2)
    bus.readfrom_mem_into(0x40, 0x02, raw)
    assert ((raw[0] << 8 | raw[1]) >> 3) * 4 == 12000
    for reg in (0x04, 0x03):                           # current, power: 0 without cal
        bus.readfrom_mem_into(0x40, reg, raw)
        assert raw == b"\x00\x00"
    bus.readfrom_mem_into(0x40, 0x01, raw)              # shunt: 100 mV = 10000 x 10 uV
    assert (raw[0] << 8 | raw[1]) == 10000


# SHT3x --------------------------------------------------------------------------

@pytest.mark.emulator_exact
def test_sht3x_25C_50RH_and_timing():
    bus, src, model, drv, slept = sht_rig(2500, 5000)
    t, rh = drv.read()
    assert abs(t - 2500) <= 1 and abs(rh - 5000) <= 1
    assert slept == [16]


@pytest.mark.emulator_exact
@settings(max_examples=80, deadline=None)
@given(st.integers(-4500, 13000), st.integers(0, 10000))
def test_sht3x_round_trip_through_model(t, rh):
    assume(not (t == 13000 and rh == 10000))    # both saturated: RangeError by design
    bus, src, model, drv, slept = sht_rig(t, rh)
    got = drv.read()
    assert abs(got[0] - t) <= 1 and abs(got[1] - rh) <= 1


class FrameChip:
    """Answers any measurement with a fixed 6-byte frame."""

    def __init__(self, frame):
        self.frame = bytes(frame)

    def write(self, data):
        pass

    def read(self, n):
        return self.frame[:n]


def with_crc(t_raw, rh_raw):
    return SHT3xModel.frame(t_raw, rh_raw)


@pytest.mark.parametrize("t_raw, rh_raw, want", [
    (0x0000, 0x0000, (-4500, 0)),
    (0xFFFF, 0x0000, (13000, 0)),
    (0x0000, 0xFFFF, (-4500, 10000)),
    (0x6666, 0x8000, (-4500 + 17500 * 0x6666 // 65535, 10000 * 0x8000 // 65535)),
])
def test_sht3x_datasheet_conversion(t_raw, rh_raw, want):
    bus = EmulatedI2C()
    bus.attach(0x44, FrameChip(with_crc(t_raw, rh_raw)))
    assert SHT3x(bus, sleep_ms=lambda ms: None).read() == want


def test_sht3x_frame_crc_is_datasheet_crc():
    f = with_crc(0xBEEF, 0xBEEF)
    assert f[2] == 0x92 and f[5] == 0x92 == crc8_sensirion(b"\xbe\xef")


def test_sht3x_floating_bus_and_saturation():
    bus = EmulatedI2C()
    chip = FrameChip(b"\xff" * 6)
    bus.attach(0x44, chip)
    drv = SHT3x(bus, sleep_ms=lambda ms: None)
    with pytest.raises(CRCError, match="0xFF"):
        drv.read()
    chip.frame = bytes(with_crc(0xFFFF, 0xFFFF))
    with pytest.raises(RangeError):
        drv.read()


@pytest.mark.emulator_exact
@pytest.mark.parametrize("which, word", [(True, "temperature"), ("temp", "temperature"),
                                         ("rh", "humidity")])
def test_sht3x_crc_fault_names_word_then_recovers(which, word):
    bus, src, model, drv, slept = sht_rig(2500, 5000)
    model.corrupt_crc_next = which
    with pytest.raises(CRCError) as ei:
        drv.read()
    e = ei.value
    assert isinstance(e, OSError) and e.kind == "crc"
    assert "SHT3x@0x44" in str(e) and word in str(e) and "got 0x" in str(e)
    assert drv.read() == (2500, 5000)


@pytest.mark.emulator_exact
def test_sht3x_read_without_measurement_nacks():
    bus, src, model, drv, slept = sht_rig()
    buf = bytearray(6)
    with pytest.raises(OSError) as ei:
        bus.readfrom_into(0x44, buf)
    assert ei.value.errno == errno.EIO
    bus.writeto(0x44, b"\x24\x00")
    bus.readfrom_into(0x44, buf)
    with pytest.raises(OSError):
        bus.readfrom_into(0x44, buf)          # one read per measurement


@pytest.mark.emulator_exact
def test_sht3x_nack_and_absent_then_recover():
    bus, src, model, drv, slept = sht_rig(-1234, 9999)
    bus.fail_next(0x44, 2)
    for _ in range(2):
        with pytest.raises(NackError) as ei:
            drv.read()
        assert ei.value.errno == errno.EIO
    bus.absent(0x44)
    with pytest.raises(NackError) as ei:
        drv.read()
    assert ei.value.errno == errno.ENODEV
    bus.absent(0x44, False)
    bus.fail_next(0x44, 1, errno.ETIMEDOUT)
    with pytest.raises(BusTimeout):
        drv.read()
    assert drv.read() == (-1234, 9999)


def test_sht3x_default_sleep_is_callable():
    drv = SHT3x(EmulatedI2C())
    drv.sleep_ms(0)


# the same code under MicroPython --------------------------------------------------

SMOKE = r'''
from hil.i2c import EmulatedI2C
from hil.ina219 import INA219Model
from hil.sht3x import SHT3xModel
from hil.sdm120 import SDM120Model, LoopbackPort
from drivers.ina219 import INA219
from drivers.sht3x import SHT3x
from drivers.modbus import ModbusRTU
from drivers.sdm120 import SDM120

def attempt(f):
    try:
        return f()
    except OSError as e:
        return (type(e).__name__, e.kind, e.errno, getattr(e, "code", None), e.msg)

bus = EmulatedI2C()
val = [(12000, 1000)]
ina_m = INA219Model(lambda: val[0])
bus.attach(0x40, ina_m)
ina = INA219(bus)
ina.init()
for v in ((12000, 1000), (24000, -1234), (3301, 17), (32000, 3199)):
    val[0] = v
    print("ina", attempt(ina.read))
ina_m.silent_reset()
print("ina reset", attempt(ina.read), ina.resets, ina_m.cal)
ina_m.overflow = True
print("ina ovf", attempt(ina.read))
ina_m.overflow = False
bus.fail_next(0x40)
print("ina nack", attempt(ina.read))
print("ina ok", attempt(ina.read))

sv = [(2500, 5000)]
sht_m = SHT3xModel(lambda: sv[0])
bus.attach(0x44, sht_m)
sht = SHT3x(bus, sleep_ms=lambda ms: None)
for v in ((2500, 5000), (-4500, 0), (13000, 0), (13000, 10000), (-1, 1), (4321, 8765)):
    sv[0] = v
    print("sht", attempt(sht.read))
sht_m.corrupt_crc_next = "rh"
print("sht crc", attempt(sht.read))
bus.absent(0x44)
print("sht absent", attempt(sht.read))
bus.absent(0x44, False)
print("sht ok", attempt(sht.read), bus.transactions)

mv = [(230.1, 1.234, 250.5, 1234.5678)]
sdm_m = SDM120Model(lambda: mv[0])
mb = ModbusRTU(LoopbackPort(sdm_m), timeout_ms=50)
sdm = SDM120(mb)
for v in ((230.1, 1.234, 250.5, 1234.5678), (0.0, 0.0, 0.0, 0.0), (241.35, 12.3456, -2000.5, 99999.99)):
    mv[0] = v
    print("sdm", attempt(sdm.read))
print("regs", mb.read_input_registers(1, 0, 4), mb.read_holding_registers(1, 0x14, 2))
sdm_m.exception_next = 4
print("sdm exc", attempt(sdm.read))
sdm_m.garble_next = True
print("sdm garble", attempt(sdm.read))
sdm_m.drop_next = True
print("sdm drop", attempt(sdm.read))
sdm_m.corrupt_crc_next = True
print("sdm crc", attempt(sdm.read))
print("sdm addr", attempt(lambda: mb.read_input_registers(1, 0x200, 2)))
mv[0] = (230.0, 1.0, 230.0, -1.0)
print("sdm neg", attempt(sdm.read))
mv[0] = (230.0, 1.0, 230.0, 5.0)
print("sdm ok", attempt(sdm.read))
'''


def micropython_binary():
    p = os.path.join(os.path.dirname(sys.executable), "micropython")
    return p if os.path.exists(p) else None


@pytest.mark.micropython
@pytest.mark.emulator_exact
def test_micropython_runs_drivers_bit_identical(tmp_path):
    mp = micropython_binary()
    if mp is None:
        pytest.skip("micropython unix port not installed next to " + sys.executable)
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    env = dict(os.environ, MICROPYPATH=".", PYTHONPATH=ROOT)
    run = lambda argv: subprocess.run(argv, cwd=ROOT, env=env, capture_output=True,
                                      text=True, timeout=60)
    m = run([mp, "-X", "heapsize=64K", str(script)])
    assert m.returncode == 0, m.stdout + m.stderr
    c = run([sys.executable, str(script)])
    assert c.returncode == 0, c.stderr
    assert m.stdout == c.stdout
    out = c.stdout
    assert "ina (24000, -1234, 29616)" in out
    assert "ina reset (32000, 3199, 102368) 1 4096" in out
    assert "ina ovf ('RangeError', 'range'" in out
    assert "ina nack ('NackError', 'nack', 5" in out
    assert "sht (2500, 5000)" in out and "sht (-4500, 0)" in out and "sht (13000, 0)" in out
    assert "sht ('RangeError', 'range', None, None, 'SHT3x@0x44: both words saturated" in out
    assert "sht crc ('CRCError', 'crc', None, None, 'SHT3x@0x44: CRC mismatch on humidity" in out
    assert "sht absent ('NackError', 'nack', 19" in out
    assert "sdm (2301, 1234, 251, 1234568)" in out
    assert "sdm (2414, 12346, -2001, 99999992)" in out      # float32 of 99999.99
    assert "sdm exc ('NackError', 'nack', None, 4," in out
    assert "sdm garble ('CRCError'" in out and "sdm crc ('CRCError'" in out
    assert "sdm drop ('BusTimeout'" in out
    assert "sdm addr ('NackError', 'nack', None, 2," in out
    assert "sdm neg ('RangeError'" in out
    assert "sdm ok (2300, 1000, 230, 5000)" in out
